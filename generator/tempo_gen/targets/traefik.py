"""proxy/traefik/: Traefik v3 in front of Tempo, with the nginx target's promises (TLS table, headers, routes, limits).

Static configuration in traefik.yml, the dynamic rest in dynamic/, one file
per concern, read by the file provider only: no Docker provider, no Docker
socket. As for nginx, a Runtime says where the config runs (container, host,
or a test's temporary root), so tests render the same templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.errors import RenderError
from tempo_gen.models.profile import Profile
from tempo_gen.models.proxy import Proxy
from tempo_gen.policy import tls as tls_policy
from tempo_gen.policy.routes import API_PREFIX, API_ROUTES, BodyLimit, body_max_bytes
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.compose import API_PORT, FRONTEND_PORT, HOST_FRONTEND_PORT

name = "traefik"

CONF_DIR = "proxy/traefik"
DYNAMIC = ("routers", "middlewares", "tls")
"""dynamic/<name>.yml files: which request goes where, what happens on the way, TLS."""
ACME_RESOLVER = "acme"
STATE_DIR = "/var/lib/traefik"
"""ACME account and certificates (acme.json); in the container a named volume."""
TEMP_DIR = "/var/cache/traefik"
"""The container's TMPDIR: request bodies above 1 MiB are spooled here, so it is a disk volume."""


@dataclass(frozen=True)
class Runtime:
    """Where the rendered Traefik runs: entry point addresses, upstreams, paths."""

    web: str
    websecure: str
    ping: str | None
    """Loopback entry point for `traefik healthcheck`; None: no ping endpoint."""
    frontend: str
    api: str
    conf_dir: str = "/etc/traefik"
    acme_ca_server: str | None = None
    """Tests point ACME at a local address; None: Let's Encrypt's production CA (Traefik's default)."""
    root: str = ""
    """Prefix for every absolute path: tests render into a temporary root."""

    def path(self, path: str) -> str:
        return self.root + path


def runtime_for(profile: Profile) -> Runtime:
    proxy = profile.proxy
    if proxy.placement == "container":
        return Runtime(
            web=f":{Proxy.CONTAINER_HTTP_PORT}",
            websecure=f":{Proxy.CONTAINER_HTTPS_PORT}",
            ping=f"127.0.0.1:{Proxy.CONTAINER_HEALTH_PORT}",
            frontend=f"frontend:{FRONTEND_PORT}",
            api=f"api:{API_PORT}",
        )
    return Runtime(
        web=_address(proxy, proxy.http_port),
        websecure=_address(proxy, proxy.https_port),
        ping=None,
        frontend=f"127.0.0.1:{HOST_FRONTEND_PORT}",
        api=f"127.0.0.1:{API_PORT}",
    )


def _address(proxy: Proxy, port: int) -> str:
    # The model allows at most one address for a host Traefik (an entry point has one).
    if not proxy.publish_addresses:
        return f":{port}"
    address = proxy.publish_addresses[0]
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def security_headers(proxy: Proxy) -> tuple[dict[str, object], dict[str, str]]:
    """The headers middleware for proxy.security_headers(), the set nginx sends: (native fields,
    customResponseHeaders). Headers Traefik has a field for use it; the rest are custom, and
    an empty value removes what the upstreams leak. Never browserXssFilter: it sends `1; mode=block`."""
    wanted = proxy.security_headers()
    frame = wanted.pop("X-Frame-Options")
    for native in ("Strict-Transport-Security", "X-Content-Type-Options"):  # the sts* and nosniff fields
        del wanted[native]
    fields: dict[str, object] = {
        "stsSeconds": tls_policy.PROFILES[proxy.tls.profile].hsts_min_age,
        "stsIncludeSubdomains": proxy.hsts.include_subdomains,
        "stsPreload": proxy.hsts.preload,
        **({"frameDeny": True} if frame == "DENY" else {"customFrameOptionsValue": frame}),
        "contentTypeNosniff": True,
        "referrerPolicy": wanted.pop("Referrer-Policy"),
        "permissionsPolicy": wanted.pop("Permissions-Policy"),
        "contentSecurityPolicy": wanted.pop("Content-Security-Policy"),
    }
    return fields, {**wanted, "Server": "", "X-Powered-By": ""}


@dataclass(frozen=True)
class Router:
    name: str
    rule: str
    service: str
    middlewares: tuple[str, ...]
    priority: int


def routers(profile: Profile) -> list[Router]:
    """The shared route table as Traefik routers, most specific (highest priority) first."""
    domain = profile.domain
    if "`" in domain:  # the model refuses it; a backtick would end the rule's string
        raise RenderError(f"refusing to put {domain!r} into a Traefik rule")
    host = f"Host(`{domain}`)"
    # The rate limit first, so a refused client's body is never read; the prefix is stripped last.
    api = ("strip-api-prefix", "api-request")
    result = [
        Router(
            route.name,
            f"{host} && PathRegexp(`{route.pattern}`)",
            "api",
            (f"ratelimit-{route.rate}", f"body-{route.body}", *api),
            30,
        )
        for route in API_ROUTES
    ]
    return result + [
        Router("api", f"{host} && PathPrefix(`{API_PREFIX}/`)", "api", ("ratelimit-api", "body-default", *api), 20),
        Router("frontend", host, "frontend", ("body-default",), 10),
    ]


def files_for(target_input: TargetInput, runtime: Runtime | None = None) -> list[RenderedFile]:
    profile = target_input.profile
    proxy = profile.proxy
    if proxy.kind != "traefik":
        return []
    runtime = runtime or runtime_for(profile)
    cert = proxy.tls.certificate
    cert_file, key_file = cert.paths(profile.domain)
    header_fields, custom_headers = security_headers(proxy)
    values = dict(
        runtime=runtime,
        tls=tls_policy.for_traefik(proxy.tls.profile),
        guidelines=f"{tls_policy.GUIDELINES_VERSION} ({tls_policy.GUIDELINES_HREF})",
        headers=proxy.security_headers(),
        header_fields=header_fields,
        custom_headers=custom_headers,
        routers=routers(profile),
        body_limits={body: body_max_bytes(profile, body) for body in get_args(BodyLimit)},
        acme=cert.source == "acme",
        resolver=ACME_RESOLVER,
        acme_storage=runtime.path(f"{STATE_DIR}/acme.json"),
        temp_dir=TEMP_DIR,
        state_dir=STATE_DIR,
        cert_file=runtime.path(cert_file),
        key_file=runtime.path(key_file),
    )
    files = [
        target_input.file(f"{CONF_DIR}/traefik.yml", "traefik/traefik.yml.j2", values),
        target_input.file("proxy/README.md", "traefik/README.md.j2", values),
    ]
    files += [
        target_input.file(f"{CONF_DIR}/dynamic/{part}.yml", f"traefik/dynamic/{part}.yml.j2", values)
        for part in DYNAMIC
    ]
    if proxy.placement == "container":
        files.append(
            target_input.file(
                "proxy/traefik.Dockerfile",
                "traefik/traefik.Dockerfile.j2",
                {**values, "uid": profile.containers.users.proxy},
            )
        )
    if cert.source == "self-signed":
        # Key owner: the container's uid, or root for a host Traefik.
        owner = profile.containers.users.proxy if proxy.placement == "container" else 0
        files.append(
            target_input.file(
                "proxy/self-signed-cert.sh", "proxy/self-signed-cert.sh.j2", {**values, "key_owner": owner}, mode=0o755
            )
        )
    return files
