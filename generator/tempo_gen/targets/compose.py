"""compose.yaml: Postgres, the API and the frontend (plus the proxy container), hardened."""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.models.base import size_bytes
from tempo_gen.models.profile import Profile
from tempo_gen.models.proxy import Proxy
from tempo_gen.policy import access_log
from tempo_gen.policy.placement import host_api_port
from tempo_gen.policy.ports import API_PORT, API_TEMP, FRONTEND_PORT, HOST_FRONTEND_PORT, IMPORT_PORT, MEDIA_ROOT
from tempo_gen.policy.releases import IMAGE_VARIABLES, SETTING_VARIABLES
from tempo_gen.policy.routes import body_size, import_port_route
from tempo_gen.targets import nginx, traefik
from tempo_gen.targets.base import TargetInput


@dataclass(frozen=True)
class Publish:
    address: str
    host_port: int
    container_port: int

    def __str__(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{address}:{self.host_port}:{self.container_port}"


def published_ports(profile: Profile) -> dict[str, list[Publish]]:
    """What each service publishes on the host, and where: nothing beyond what the proxy needs."""
    proxy = profile.proxy
    if proxy.kind != "none" and proxy.placement == "container":
        listeners = [(proxy.http_port, Proxy.CONTAINER_HTTP_PORT), (proxy.https_port, Proxy.CONTAINER_HTTPS_PORT)]
        if import_port_route(profile):  # where the release's browser sends bulk imports
            listeners.append((IMPORT_PORT, Proxy.CONTAINER_IMPORT_PORT))
        return {"proxy": [Publish(str(a), port, inner) for a in proxy.publish_addresses for port, inner in listeners]}
    ports = {"frontend": [Publish("127.0.0.1", HOST_FRONTEND_PORT, FRONTEND_PORT)]}
    if proxy.kind != "none":
        # A proxy on the host routes /api straight to the API (no 10 MB Next.js body cap on imports).
        ports["api"] = [Publish("127.0.0.1", host_api_port(profile), API_PORT)]
    return ports


def networks(profile: Profile) -> dict[str, list[str]]:
    """Networks of each service. `db` and `app` are internal (no route out); only `edge`/`egress` reach the host."""
    ports = published_ports(profile)
    result = {"postgres": ["db"], "api": ["db", "app"], "frontend": ["app"]}
    if profile.tempo.outbound_internet:
        result["api"].append("egress")
    if "proxy" in ports:
        result["proxy"] = ["app", "edge"]
    for service in ports:
        if service != "proxy":
            result[service].append("edge")
    return result


def api_settings(profile: Profile) -> dict[str, str]:
    """The API's optional settings the profile sets, as environment variables; on releases that echo
    them at /version, the image references the bundle builds from."""
    tempo = profile.tempo
    variables = {SETTING_VARIABLES[setting]: str(value) for setting, value in tempo.settings().items()}
    if "image-version" in tempo.release.settings:
        variables.update({name: tempo.image(service) for service, name in IMAGE_VARIABLES.items()})
    return variables


def _proxy_mounts(profile: Profile) -> dict[str, object]:
    """The proxy target's folders, as the compose proxy service mounts them."""
    logs = access_log.host_log_dir(profile) if access_log.proxy_log_path(profile) else None
    if profile.proxy.kind == "traefik":
        return {
            "logs": logs,
            "conf_dir": traefik.CONF_DIR,
            "temp_dir": traefik.TEMP_DIR,
            "state_dir": traefik.STATE_DIR,
            "memory_body": traefik.MEMORY_BODY,
            "ca_bundle": profile.proxy.tls.certificate.acme_ca_bundle,
        }
    return {"logs": logs, "conf_dir": nginx.CONF_DIR, "temp_dir": nginx.CONTAINER_TEMP_DIR}


def files_for(target_input: TargetInput) -> list[RenderedFile]:
    profile = target_input.profile
    service_networks = networks(profile)
    used = sorted({n for names in service_networks.values() for n in names})
    return [
        target_input.file(
            "compose.yaml",
            "compose/compose.yaml.j2",
            {
                "ports": published_ports(profile),
                "service_networks": service_networks,
                "networks": used,
                "media_max_bytes": body_size(profile, "media").bytes,
                "api_settings": api_settings(profile),
                "media_root": MEDIA_ROOT,
                "api_temp": API_TEMP,
                "frontend_health": "/health" if profile.tempo.release.frontend_health else "/",
                "proxy_mounts": _proxy_mounts(profile),
                "container_log_dir": access_log.CONTAINER_LOG_DIR,
                "size_bytes": size_bytes,
                "api_port": API_PORT,
                "frontend_port": FRONTEND_PORT,
            },
        )
    ]
