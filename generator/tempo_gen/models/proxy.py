"""The reverse proxy in front of Tempo: which one, where it runs, how it does TLS, headers and limits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tempo_gen.models.base import (
    AbsPath,
    CspSource,
    Email,
    HeaderValue,
    HostAddress,
    ImageRef,
    Port,
    StrictModel,
    Url,
    VersionNumber,
    version_tuple,
)
from tempo_gen.policy.tls import CONFIGURATIONS, NGINX_MIN_VERSION

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
TLS_DIR = "/var/lib/tempo-tls"
"""Default home of the pair the proxy reads (<TLS_DIR>/<domain>/): outside /etc, so a container mounts only it."""


class Certificate(StrictModel):
    """Where the certificate and its key come from (paths on the host; a proxy container mounts them read-only)."""

    source: Literal["acme", "files", "self-signed"] = Field(
        "acme",
        description=(
            "`acme`: Let's Encrypt over http-01: for nginx certbot --webroot, installed by "
            "proxy/certbot-deploy-hook.sh; for traefik its own ACME client, storing account and "
            "certificates in the proxy_acme volume (host: /var/lib/traefik). `files`: a pair you "
            "provide; `self-signed`: a pair made by proxy/self-signed-cert.sh (environment: "
            "development only)."
        ),
    )
    cert_file: AbsPath | None = Field(
        None,
        description=(
            "Certificate chain the proxy reads (not used by traefik with acme). Default (acme, "
            "self-signed): /var/lib/tempo-tls/<domain>/fullchain.pem."
        ),
    )
    key_file: AbsPath | None = Field(
        None,
        description=(
            "Private key the proxy reads (not used by traefik with acme). Default (acme, "
            "self-signed): /var/lib/tempo-tls/<domain>/privkey.pem."
        ),
    )
    acme_webroot: AbsPath = Field(
        "/var/www/_letsencrypt",
        description=(
            "nginx: folder certbot --webroot writes challenge tokens to; port 80 serves "
            "/.well-known/acme-challenge/ from it."
        ),
    )
    acme_email: Email | None = Field(
        None, description=("ACME account e-mail (`tempo-gen cert issue` for nginx, or Traefik's resolver).")
    )
    acme_directory: Url = Field(
        LETS_ENCRYPT,
        description=(
            "ACME directory URL: Let's Encrypt production by default; its staging directory "
            f"({LETS_ENCRYPT_STAGING}) for a first dry run, or a private CA. https only in production. "
            "certbot's --server, Traefik's caServer."
        ),
    )
    acme_ca_bundle: AbsPath | None = Field(
        None,
        description=(
            "PEM file on the host with the CA certificates to trust for acme_directory (a private CA); "
            "default: the system's. certbot gets it as REQUESTS_CA_BUNDLE, Traefik as "
            "LEGO_CA_CERTIFICATES (mounted read-only into a container)."
        ),
    )

    @model_validator(mode="after")
    def _files_need_paths(self) -> Certificate:
        if self.source == "files" and not (self.cert_file and self.key_file):
            raise ValueError("source: files needs cert_file and key_file (absolute paths on the host)")
        return self

    def paths(self, domain: str) -> tuple[str, str]:
        """(certificate chain, private key) as the proxy reads them."""
        folder = f"{TLS_DIR}/{domain}"
        return self.cert_file or f"{folder}/fullchain.pem", self.key_file or f"{folder}/privkey.pem"

    def mounts(self, domain: str) -> list[str]:
        """Host paths a proxy container mounts read-only at the same place: the pair's folder when
        tempo-gen's scripts write it (renewals replace files, which a file mount would not see), else the files."""
        pair = self.paths(domain)
        if self.source == "files":
            return list(pair)
        folders = [str(PurePosixPath(path).parent) for path in pair]
        webroot = [self.acme_webroot] if self.source == "acme" else []
        return list(dict.fromkeys(webroot + folders))


class Tls(StrictModel):
    profile: Literal["modern", "intermediate"] = Field(
        "intermediate",
        description=(
            "Mozilla guidelines 6.0 configuration: `modern` is TLS 1.3 only; `intermediate` adds TLS "
            "1.2 with AEAD ciphers."
        ),
    )
    certificate: Certificate = Certificate()
    ocsp_stapling: bool = Field(
        False,
        description=(
            "Opt-in: Let's Encrypt no longer runs OCSP responders; enable only for a CA that still publishes OCSP."
        ),
    )
    ocsp_resolvers: list[HostAddress] = Field(
        [],
        description=(
            "DNS resolvers nginx uses to reach the OCSP responder. Default in a container: Docker's "
            "127.0.0.11. Traefik uses the system resolver and ignores this."
        ),
    )


class Hsts(StrictModel):
    """Strict-Transport-Security; max-age is the TLS profile's (two years)."""

    include_subdomains: bool = Field(
        True, description="Add includeSubDomains: every subdomain of the domain is HTTPS-only too."
    )
    preload: bool = Field(False, description="Opt-in only: preload lists are hard to leave (hstspreload.org).")

    @model_validator(mode="after")
    def _preload_needs_subdomains(self) -> Hsts:
        if self.preload and not self.include_subdomains:
            raise ValueError("preload requires include_subdomains (the preload list refuses the site otherwise)")
        return self


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
