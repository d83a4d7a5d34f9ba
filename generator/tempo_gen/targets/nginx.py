"""proxy/nginx/: the hardened TLS reverse proxy in front of Tempo, one file per concern (nginxconfig.io layout).

The profile decides policy; a Runtime says where the config runs (container,
host, or a test's temporary root), so tests render the same templates for
loopback ports and throwaway paths instead of editing the output.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.models.base import version_tuple
from tempo_gen.models.profile import Profile
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
    body_size,
    import_port_route,
    rate_limits_for,
    routes_for,
    strip_regex,
)
from tempo_gen.targets.base import TargetInput, proxy_image

CONF_DIR = "proxy/nginx"
HOST_CONF = "/etc/nginx/nginx.conf"
"""Where a host nginx reads the rendered nginx.conf (proxy/nginx/ copied to /etc/nginx/)."""
# In the container: the compose file mounts a disk volume here (request bodies must not fill RAM).
CONTAINER_TEMP_DIR = "/var/cache/nginx"
# Snippets under tempo-gen/, included by paths relative to nginx.conf so the tree works wherever it is mounted.
SNIPPETS = ("tls", "security", "proxy", "api", "letsencrypt", "log")
DOCKER_DNS = "127.0.0.11"
"""Docker's embedded DNS, in every container: Compose service names resolve to the container's current address."""
RESOLVER_VALID = "5s"
"""How long nginx keeps an upstream's address: a recreated container is followed within this."""
RATE_ZONE_MEMORY = "10m"
"""Shared memory per limit_req zone: about 160,000 client addresses."""
UPSTREAM_ZONE_MEMORY = "64k"
"""Shared memory per re-resolved upstream block: its few servers and their state."""


@dataclass(frozen=True, kw_only=True)
class Runtime(ProxyRuntime):
    """Where the rendered nginx runs: listeners, upstreams, its user and writable paths."""

    http_listen: tuple[str, ...]
    https_listen: tuple[str, ...]
    user: str | None
    """Worker user when the master starts as root (host); None in the non-root container."""
    pid: str
    temp_dir: str
    """Parent of every temp path; request bodies and buffered responses land here, so it must be disk."""
    error_log: str
    access_log: str
    health_listen: str | None
    resolver: str | None = None
    """DNS server that upstream names are re-resolved through (container: Docker's); None: fixed addresses."""
    import_listen: tuple[str, ...] = ()
    """The import port's listeners (policy.routes.import_port_route); empty: the release has none."""
    health_checks_upstreams: bool = False
    """The health listener answers only while the frontend and the API do (Swarm replaces an unhealthy task;
    Compose would only mark it)."""

    def path(self, path: str) -> str:
        # stderr and /dev/ are the same in any root.
        return path if path == "stderr" or path.startswith("/dev/") else self.root + path


def runtime_for(profile: Profile) -> Runtime:
    place = placement_for(profile)
    log_file = proxy_log_path(profile)
    if place.container:
        return Runtime(
            http_listen=(str(place.http_port),),
            https_listen=(str(place.https_port),),
            user=None,
            pid="/tmp/nginx.pid",
            temp_dir=CONTAINER_TEMP_DIR,
            error_log="stderr",
            access_log=log_file or "/dev/stdout",
            frontend=place.frontend,
            api=place.api,
            health_listen=place.health,
            resolver=DOCKER_DNS,
            import_listen=(str(place.import_port),) if place.import_port else (),
            health_checks_upstreams=profile.deploy.mode == "swarm",
        )
    return Runtime(
        http_listen=_listen(place, place.http_port),
        https_listen=_listen(place, place.https_port),
        user="www-data",
        pid="/run/nginx.pid",  # what Debian's nginx.service expects
        temp_dir="/var/lib/nginx",
        error_log="/var/log/nginx/error.log",
        access_log=log_file or "/var/log/nginx/access.log",
        frontend=place.frontend,
        api=place.api,
        health_listen=place.health,
        import_listen=_listen(place, place.import_port) if place.import_port else (),
    )


@dataclass(frozen=True)
class Upstreams:
    """How proxy_pass reaches the frontend and the API, resolved from the Runtime and the nginx version."""

    resolver: str | None
    """Names are re-resolved through this server every RESOLVER_VALID; None: addresses fixed at start."""
    resolve_param: bool
    """nginx >= 1.27.3: `server name resolve` in an upstream with a zone (keepalive kept)."""
    valid: str = RESOLVER_VALID

    @property
    def variable(self) -> bool:
        """Older nginx re-resolves only a proxy_pass with a variable: no upstream block, no keepalive."""
        return self.resolver is not None and not self.resolve_param

    def proxy_pass(self, upstream: str) -> str:
        return f"http://$tempo_{upstream}" if self.variable else f"http://tempo_{upstream}"


def upstreams_for(runtime: Runtime, nginx_version: tuple[int, ...]) -> Upstreams:
    return Upstreams(
        resolver=runtime.resolver,
        resolve_param=runtime.resolver is not None and nginx_version >= tls_policy.NGINX_UPSTREAM_RESOLVE,
    )


def _listen(place: Placement, port: int) -> tuple[str, ...]:
    return place.bind(port) or (str(port), f"[::]:{port}")


def files_for(target_input: TargetInput, runtime: Runtime | None = None) -> list[RenderedFile]:
    profile = target_input.profile
    proxy = profile.proxy
    if proxy.kind != "nginx":
        return []
    runtime = runtime or runtime_for(profile)
    cert = proxy.tls.certificate
    cert_file, key_file = cert.paths(profile.domain)
    site = f"sites-available/{profile.domain}.conf"
    values = {
        "runtime": runtime,
        "tls": tls_policy.for_nginx(
            proxy.tls.profile, version_tuple(proxy.nginx_version), version_tuple(proxy.openssl_version)
        ),
        "guidelines": f"{tls_policy.GUIDELINES_VERSION} ({tls_policy.GUIDELINES_HREF})",
        "headers": site_headers(profile),
        "upstreams": upstreams_for(runtime, version_tuple(proxy.nginx_version)),
        "routes": routes_for(profile),
        "import_route": import_port_route(profile) if runtime.import_listen else None,
        "import_port": IMPORT_PORT,
        "first_chunked": FIRST_CHUNKED,
        "rate_limits": rate_limits_for(profile),
        "rate_zone_memory": RATE_ZONE_MEMORY,
        "upstream_zone_memory": UPSTREAM_ZONE_MEMORY,
        "api_prefix": API_PREFIX,
        "strip_regex": strip_regex,
        "default_body": body_size(profile, "default"),
        "site": site,
        "acme": cert.source == "acme",
        "cert_file": runtime.path(cert_file),
        "key_file": runtime.path(key_file),
        "ocsp_resolvers": [f"[{a}]" if a.version == 6 else str(a) for a in proxy.tls.ocsp_resolvers] or [DOCKER_DNS],
        "https_suffix": "" if proxy.https_port == 443 else f":{proxy.https_port}",
    }
    files = [
        target_input.file(f"{CONF_DIR}/nginx.conf", "nginx/nginx.conf.j2", values),
        target_input.file(f"{CONF_DIR}/{site}", "nginx/sites-available/site.conf.j2", values),
        target_input.file("proxy/README.md", "nginx/README.md.j2", values),
    ]
    for snippet in SNIPPETS:
        if snippet != "letsencrypt" or values["acme"]:
            files.append(
                target_input.file(f"{CONF_DIR}/tempo-gen/{snippet}.conf", f"nginx/tempo-gen/{snippet}.conf.j2", values)
            )
    if proxy.placement == "container":
        files.append(
            proxy_image(
                target_input,
                "nginx",
                title="nginx",
                folders=(runtime.temp_dir,),
                writes="its temp files (request bodies, buffered responses)",
            )
        )
    # Key owner: the container's uid, or root for a host nginx (its master reads keys before dropping privileges).
    owner = key_owner(profile)
    if cert.source in ("acme", "self-signed"):  # acme needs a first pair before nginx can answer the challenge
        files.append(
            target_input.file(
                "proxy/self-signed-cert.sh", "proxy/self-signed-cert.sh.j2", {**values, "key_owner": owner}, mode=0o755
            )
        )
    if cert.source == "acme":
        files.append(
            target_input.file(
                "proxy/certbot-deploy-hook.sh",
                "nginx/certbot-deploy-hook.sh.j2",
                {**values, "key_owner": owner, "nginx_conf": runtime.path(HOST_CONF)},
                mode=0o755,
            )
        )
    return files
