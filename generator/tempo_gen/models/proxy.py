"""The reverse proxy in front of Tempo: which one, where it runs, how it does TLS, headers and limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tempo_gen.models.base import (
    CspSource,
    HeaderValue,
    HostAddress,
    ImageRef,
    Port,
    StrictModel,
    VersionNumber,
    version_tuple,
)
from tempo_gen.models.tls import Hsts, Tls
from tempo_gen.policy.tls import CONFIGURATIONS, NGINX_MIN_VERSION

CspDirective = Literal[
    "default-src",
    "script-src",
    "style-src",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "worker-src",
    "manifest-src",
    "frame-src",
    "child-src",
    "object-src",
    "base-uri",
    "form-action",
]


# A policy is one response header on every answer; browsers and proxies cap header sizes near 8 KB.
MAX_CSP_SOURCES = 32


class CspSources(StrictModel):
    """Sources added to one CSP directive."""

    directive: CspDirective
    sources: list[CspSource] = Field(min_length=1, max_length=MAX_CSP_SOURCES)


class Csp(StrictModel):
    """Content-Security-Policy. Next.js hydrates from inline scripts, so a proxy-set policy
    needs 'unsafe-inline' for scripts and styles; everything else stays same-origin."""

    map_sources: list[CspSource] = Field(
        [
            "https://basemaps.cartocdn.com",
            "https://*.basemaps.cartocdn.com",
            "https://*.tile.openstreetmap.org",
            "https://cdnjs.cloudflare.com",
        ],
        max_length=MAX_CSP_SOURCES,
        description=(
            "Map tile and marker hosts allowed in img-src and connect-src: CARTO basemaps (later "
            "Tempo releases), OpenStreetMap tiles and the Leaflet marker icons on cdnjs (2.1.0)."
        ),
    )
    extra_sources: list[CspSources] = Field(
        [],
        max_length=MAX_CSP_SOURCES,
        description=("Sources added to directives, e.g. [{directive: connect-src, sources: [https://example.org]}]."),
    )
    override: HeaderValue | None = Field(
        None, description=("A complete policy replacing the generated one (to tighten it).")
    )

    def policy(self, frame_ancestors: str, connect: Sequence[str] = ()) -> str:
        """The policy; `connect`: origins the bundle itself serves beside the site (connect-src)."""
        if self.override:
            return self.override
        maps = list(self.map_sources)
        directives: dict[str, list[str]] = {
            "default-src": ["'self'"],
            "script-src": ["'self'", "'unsafe-inline'"],
            "style-src": ["'self'", "'unsafe-inline'"],
            "img-src": ["'self'", "data:", "blob:", *maps],
            "font-src": ["'self'", "data:"],
            "connect-src": ["'self'", *connect, *maps],
            "media-src": ["'self'", "blob:"],
            "worker-src": ["'self'", "blob:"],
            "object-src": ["'none'"],
            "base-uri": ["'self'"],
            "form-action": ["'self'"],
        }
        for extra in self.extra_sources:
            current = directives.setdefault(extra.directive, [])
            current += [s for s in extra.sources if s not in current]
        parts = [f"{name} {' '.join(sources)}" for name, sources in directives.items()]
        return "; ".join([*parts, f"frame-ancestors {frame_ancestors}", "upgrade-insecure-requests"])


class Headers(StrictModel):
    """Security headers added to every response, errors included."""

    x_xss_protection: Literal["0", "1; mode=block"] = Field(
        "0",
        description=(
            "OWASP: `0` (the old XSS auditor caused leaks and is gone from browsers); Tempo's "
            "security guide asks for `1; mode=block`."
        ),
    )
    frame_options: Literal["SAMEORIGIN", "DENY"] = Field(
        "SAMEORIGIN",
        description=("X-Frame-Options (Tempo's security guide: SAMEORIGIN); CSP frame-ancestors follows it."),
    )
    referrer_policy: Literal["strict-origin-when-cross-origin", "no-referrer", "same-origin", "strict-origin"] = Field(
        "strict-origin-when-cross-origin",
        description="Referrer-Policy: how much of the page address other sites see when Tempo links or loads them.",
    )
    permissions_policy: HeaderValue = Field(
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
        description="Browser features Tempo never uses are denied.",
    )
    csp: Csp = Csp()


class RateLimits(StrictModel):
    """Per client IP; above them the proxy answers 429."""

    login_per_minute: int = Field(default=5, ge=1, le=600, description="Login and register attempts per minute.")
    login_burst: int = Field(
        default=5, ge=0, le=100, description=("Attempts allowed at once above the rate (0: none, strictly paced).")
    )
    api_per_second: int = Field(
        default=20, ge=1, le=10000, description=("Requests per second to /api/ (a dashboard load makes a dozen).")
    )
    api_burst: int = Field(
        default=50, ge=0, le=10000, description="Requests to /api/ allowed at once above the rate (0: none)."
    )
    import_chunks_per_second: int = Field(
        default=20,
        ge=1,
        le=10000,
        description=(
            "Bulk import chunk uploads per second, a limit of their own; its burst is the number of chunks in "
            "the largest import (tempo.import_max_mb), so one upload at any speed never gets a 429."
        ),
    )


class Proxy(StrictModel):
    """Where TLS terminates. `none` means you terminate TLS elsewhere (audit reports it)."""

    # What the unprivileged proxy container listens on (published as http_port/https_port).
    CONTAINER_HTTP_PORT: ClassVar[int] = 8080
    CONTAINER_HTTPS_PORT: ClassVar[int] = 8443
    # The import listener of releases whose browser posts bulk imports to <host>:5001 (published as 5001).
    CONTAINER_IMPORT_PORT: ClassVar[int] = 8444
    # Loopback-only listener inside the container for its healthcheck.
    CONTAINER_HEALTH_PORT: ClassVar[int] = 8081

    kind: Literal["nginx", "traefik", "none"] = Field(
        "nginx",
        description=(
            "Reverse proxy that terminates TLS: `nginx`, `traefik`, or `none` when you terminate TLS "
            "elsewhere (audit reports it)."
        ),
    )
    placement: Literal["container", "host"] = Field(
        "container",
        description=(
            "`container`: the proxy is a service in compose.yaml and the only one published publicly. "
            "`host`: the proxy runs on the host; compose publishes the frontend and API on 127.0.0.1 "
            "only."
        ),
    )
    publish_addresses: list[HostAddress] = Field(
        [],
        description=(
            "Host addresses the proxy publishes (container) or listens (host) 80/443 on (and 5001, where "
            "Tempo 2.1.x-2.6.x browsers send bulk imports), e.g. the server's public IP. Required for a "
            "production container proxy; 0.0.0.0 or :: is allowed but audit reports it. Empty with placement "
            "host: every address."
        ),
    )
    http_port: Port = Field(
        80, description="Host port for plain HTTP (only the ACME challenge and the redirect to https)."
    )
    https_port: Port = Field(443, description="Host port for HTTPS.")
    image: ImageRef | None = Field(
        None,
        description=(
            "Proxy image for `placement: container`; default: the unprivileged nginx image (uid 101, "
            "ports 8080/8443), or traefik:v3.7 (the config needs a Traefik release with "
            "accessLog.fields.queryParameters, e.g. 3.7.15)."
        ),
    )
    nginx_version: VersionNumber = Field(
        "1.28",
        description=(
            "nginx version the config is written for (syntax differs across 1.25.1). Default: the "
            "default image's; Debian 12's nginx is 1.22. Ignored by traefik."
        ),
    )
    openssl_version: VersionNumber = Field(
        "3.0",
        description=(
            "OpenSSL nginx links. From 3.5 the post-quantum group X25519MLKEM768 is offered; older "
            "builds refuse it. Ignored by traefik (Go's TLS always offers it)."
        ),
    )
    tls: Tls = Tls()
    hsts: Hsts = Hsts()
    headers: Headers = Headers()
    rate_limits: RateLimits = RateLimits()
    body_max_kb: int = Field(
        default=1024,
        ge=1,
        le=1048576,
        description=(
            "Largest request body on every route without its own limit (imports and media uploads have theirs), in KiB."
        ),
    )

    @model_validator(mode="after")
    def _proxy_rules(self) -> Proxy:
        if version_tuple(self.nginx_version) < NGINX_MIN_VERSION:
            raise ValueError(
                f"nginx_version {self.nginx_version} is older than {'.'.join(map(str, NGINX_MIN_VERSION))}, "
                "the oldest supported"
            )
        if version_tuple(self.openssl_version) < (3, 0):
            raise ValueError(f"openssl_version {self.openssl_version} is older than 3.0, the oldest supported")
        if self.kind == "nginx" and self.tls.ocsp_stapling and self.placement == "host" and not self.tls.ocsp_resolvers:
            raise ValueError(
                "tls.ocsp_stapling on the host needs tls.ocsp_resolvers (nginx resolves the OCSP responder itself)"
            )
        if self.kind == "traefik" and self.placement == "host" and len(self.publish_addresses) > 1:
            raise ValueError(
                "a traefik entry point listens on one address: give one publish_addresses entry, "
                "or none for every address"
            )
        return self

    def image_ref(self) -> str | None:
        if self.kind == "none" or self.placement == "host":
            return None
        return self.image or DEFAULT_IMAGES[self.kind]

    def hsts_value(self) -> str:
        parts = [f"max-age={CONFIGURATIONS[self.tls.profile].hsts_min_age}"]
        parts += ["includeSubDomains"] * self.hsts.include_subdomains + ["preload"] * self.hsts.preload
        return "; ".join(parts)

    def security_headers(self, connect: Sequence[str] = ()) -> dict[str, str]:
        """Every header the proxy adds to every response, by name (any proxy target renders this);
        `connect`: origins beside the site that the browser calls (CSP connect-src), from the caller's policy."""
        headers = self.headers
        return {
            "Strict-Transport-Security": self.hsts_value(),
            "X-Frame-Options": headers.frame_options,
            "X-Content-Type-Options": "nosniff",
            "X-XSS-Protection": headers.x_xss_protection,
            "Referrer-Policy": headers.referrer_policy,
            "Content-Security-Policy": headers.csp.policy(
                "'self'" if headers.frame_options == "SAMEORIGIN" else "'none'", connect
            ),
            "Permissions-Policy": headers.permissions_policy,
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "X-Permitted-Cross-Domain-Policies": "none",
        }


DEFAULT_IMAGES = {
    "nginx": "nginxinc/nginx-unprivileged:1.28-alpine",
    "traefik": "traefik:v3.7",
}
