"""proxy/traefik/: Traefik v3 in front of Tempo, with the nginx target's promises (TLS table, headers, routes, limits).

Static configuration in traefik.yml, the dynamic rest in dynamic/, one file
per concern, read by the file provider only: no Docker provider, no Docker
socket. As for nginx, a Runtime says where the config runs (container, host,
or a test's temporary root), so tests render the same templates.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.errors import RenderError
from tempo_gen.models.profile import Profile
from tempo_gen.models.proxy import Proxy
from tempo_gen.policy import tls as tls_policy
from tempo_gen.policy.access_log import proxy_log_path
from tempo_gen.policy.placement import (
    Placement,
    ProxyRuntime,
    key_owner,
    placement_for,
    site_headers,
)
from tempo_gen.policy.ports import IMPORT_PORT
from tempo_gen.policy.releases import FIRST_CHUNKED
from tempo_gen.policy.routes import (
    API_PREFIX,
    RouteView,
    Size,
    body_limits,
    body_size,
    import_port_route,
    rate_limits_for,
    routes_for,
)
from tempo_gen.targets.base import TargetInput, proxy_image

CONF_DIR = "proxy/traefik"
DYNAMIC = ("routers", "middlewares", "tls")
"""dynamic/<name>.yml files: which request goes where, what happens on the way, TLS."""
ACME_RESOLVER = "acme"
SITE_ENTRY_POINT = "websecure"
IMPORT_ENTRY_POINT = "imports"
"""The import port's entry point (policy.routes.import_port_route): its one router and nothing else."""
STATE_DIR = "/var/lib/traefik"
"""ACME account and certificates (acme.json); in the container a named volume."""
TEMP_DIR = "/var/cache/traefik"
"""The container's TMPDIR: request bodies above MEMORY_BODY are spooled here, so it is a disk volume."""
MEMORY_BODY = Size(1, "MiB")
"""How much of a request body Traefik's buffering middleware keeps in memory (memRequestBodyBytes' default)."""


@dataclass(frozen=True, kw_only=True)
class Runtime(ProxyRuntime):
    """Where the rendered Traefik runs: entry point addresses, upstreams, paths."""

    web: str
    websecure: str
    ping: str | None
    """Loopback entry point for `traefik healthcheck`; None: no ping endpoint."""
    imports: str | None = None
    """The import port's entry point address; None: the release has none."""
    conf_dir: str = "/etc/traefik"
    acme_ca_server: str | None = None
    """Tests point ACME at a local address; None: the profile's acme_directory."""
    access_log: str | None = None
    """File of the JSON access log; None: stdout."""


def runtime_for(profile: Profile) -> Runtime:
    place = placement_for(profile)
    return Runtime(
        web=_address(place, place.http_port),
        websecure=_address(place, place.https_port),
        ping=place.health,
        frontend=place.frontend,
        api=place.api,
        imports=_address(place, place.import_port) if place.import_port else None,
        access_log=proxy_log_path(profile),
    )


def _address(place: Placement, port: int) -> str:
    # The model allows at most one address for a host Traefik (an entry point has one).
    return (place.bind(port) or (f":{port}",))[0]


def security_headers(proxy: Proxy, headers: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """The headers middleware for `headers` (placement.site_headers), the set nginx sends: (native fields,
    customResponseHeaders). Headers Traefik has a field for use it; the rest are custom, and
    an empty value removes what the upstreams leak. Never browserXssFilter: it sends `1; mode=block`."""
    wanted = dict(headers)
    frame = wanted.pop("X-Frame-Options")
    for native in ("Strict-Transport-Security", "X-Content-Type-Options"):  # the sts* and nosniff fields
        del wanted[native]
    fields: dict[str, object] = {
        "stsSeconds": tls_policy.CONFIGURATIONS[proxy.tls.profile].hsts_min_age,
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
    route: RouteView
    """What the router serves, for the comments."""
    entry_point: str = SITE_ENTRY_POINT


def routers(profile: Profile, imports: bool = True) -> list[Router]:
    """The shared route table as Traefik routers, most specific (highest priority) first; then, with
    `imports` (the runtime has the entry point), the import port's router."""
    domain = profile.domain
    if "`" in domain:  # the model refuses it; a backtick would end the rule's string
        raise RenderError(f"refusing to put {domain!r} into a Traefik rule")
    host = f"Host(`{domain}`)"
    result = [_router(route, host) for route in routes_for(profile)]
    if imports and (route := import_port_route(profile)):
        result.append(_router(route, host, IMPORT_ENTRY_POINT))
    return result


def _router(route: RouteView, host: str, entry_point: str = SITE_ENTRY_POINT) -> Router:
    if route.regex:
        rule = f"{host} && PathRegexp(`{route.regex}`)"
    elif route.prefix != "/":
        rule = f"{host} && PathPrefix(`{route.prefix}`)"
    else:
        rule = host
    if route.methods:
        rule += " && (" + " || ".join(f"Method(`{method}`)" for method in route.methods) + ")"
    # The rate limit first, so a refused client's body is never read; the prefix is stripped last.
    middlewares = (
        *((f"ratelimit-{route.rate.name}",) if route.rate else ()),
        f"body-{route.body}",
        *(("strip-api-prefix",) if route.strip_prefix else ()),
        *(("api-request",) if route.upstream == "api" else ()),
    )
    return Router(route.name, rule, route.upstream, middlewares, route.priority, route, entry_point)


def files_for(target_input: TargetInput, runtime: Runtime | None = None) -> list[RenderedFile]:
    profile = target_input.profile
    proxy = profile.proxy
    if proxy.kind != "traefik":
        return []
    runtime = runtime or runtime_for(profile)
    cert = proxy.tls.certificate
    cert_file, key_file = cert.paths(profile.domain)
    headers = site_headers(profile)
    header_fields, custom_headers = security_headers(proxy, headers)
    values = {
        "runtime": runtime,
        "tls": tls_policy.for_traefik(proxy.tls.profile),
        "guidelines": f"{tls_policy.GUIDELINES_VERSION} ({tls_policy.GUIDELINES_HREF})",
        "headers": headers,
        "header_fields": header_fields,
        "custom_headers": custom_headers,
        "routers": routers(profile, imports=runtime.imports is not None),
        "import_route": import_port_route(profile) if runtime.imports else None,
        "import_port": IMPORT_PORT,
        "first_chunked": FIRST_CHUNKED,
        "entry_points": {SITE_ENTRY_POINT: runtime.websecure, IMPORT_ENTRY_POINT: runtime.imports},
        "routes": routes_for(profile),
        "rate_limits": rate_limits_for(profile),
        "api_prefix": API_PREFIX,
        "body_limits": body_limits(profile),
        "default_body": body_size(profile, "default"),
        "acme": cert.source == "acme",
        "resolver": ACME_RESOLVER,
        "acme_storage": runtime.path(f"{STATE_DIR}/acme.json"),
        "acme_ca_server": runtime.acme_ca_server or cert.acme_directory,
        "temp_dir": TEMP_DIR,
        "memory_body": MEMORY_BODY,
        "state_dir": STATE_DIR,
        "cert_file": runtime.path(cert_file),
        "key_file": runtime.path(key_file),
    }
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
            proxy_image(
                target_input,
                "traefik",
                title="Traefik",
                folders=(TEMP_DIR, STATE_DIR),
                writes="its spooled request bodies (TMPDIR) and its ACME account and certificates",
                tmpdir=TEMP_DIR,
            )
        )
    if cert.source == "self-signed":
        owner = key_owner(profile)  # the container's uid, or root for a host Traefik
        files.append(
            target_input.file(
                "proxy/self-signed-cert.sh", "proxy/self-signed-cert.sh.j2", {**values, "key_owner": owner}, mode=0o755
            )
        )
    return files
