"""Where a proxy runs, as every proxy target sees it: listen addresses, upstreams, health, key owner.

nginx and Traefik differ only in how they spell a listener; which ports and
addresses they bind, where the frontend and the API answer, the loopback
health listener of a container and who owns the private key are decided
here once. Each target's Runtime extends ProxyRuntime with its own extras.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.models.profile import Profile
from tempo_gen.models.proxy import Proxy
from tempo_gen.policy.ports import API_PORT, FRONTEND_PORT, HOST_API_PORT, HOST_FRONTEND_PORT, IMPORT_PORT
from tempo_gen.policy.routes import import_origin, import_port_route


@dataclass(frozen=True, kw_only=True)
class ProxyRuntime:
    """What every proxy Runtime has: its upstreams and the root its absolute paths live under."""

    frontend: str
    api: str
    root: str = ""
    """Prefix for every absolute path: tests render into a temporary root."""

    def path(self, path: str) -> str:
        return self.root + path


@dataclass(frozen=True)
class Placement:
    """One profile's proxy placement, before a target spells it."""

    container: bool
    http_port: int
    """The port the proxy binds for http (inside the container, or on the host)."""
    https_port: int
    import_port: int | None
    """The port the proxy binds for the import listener (policy.routes.import_port_route); None: no listener."""
    addresses: tuple[str, ...]
    """Host placement: the published addresses, ready for `address:port`; empty: every address."""
    frontend: str
    api: str
    health: str | None
    """The container's loopback health listener; None on the host."""
    key_owner: int
    """Owner of the private key: the container's uid, or root for a host proxy (it reads keys as root)."""

    def bind(self, port: int) -> tuple[str, ...]:
        """`address:port` for every published address; empty when the proxy binds every address."""
        return tuple(f"{address}:{port}" for address in self.addresses)


def placement_for(profile: Profile) -> Placement:
    proxy = profile.proxy
    imports = import_port_route(profile) is not None
    if proxy.placement == "container":
        return Placement(
            container=True,
            http_port=Proxy.CONTAINER_HTTP_PORT,
            https_port=Proxy.CONTAINER_HTTPS_PORT,
            import_port=Proxy.CONTAINER_IMPORT_PORT if imports else None,
            addresses=(),
            frontend=f"frontend:{FRONTEND_PORT}",
            api=f"api:{API_PORT}",
            health=f"127.0.0.1:{Proxy.CONTAINER_HEALTH_PORT}",
            key_owner=profile.containers.users.proxy,
        )
    return Placement(
        container=False,
        http_port=proxy.http_port,
        https_port=proxy.https_port,
        import_port=IMPORT_PORT if imports else None,
        addresses=tuple(f"[{a}]" if a.version == 6 else str(a) for a in proxy.publish_addresses),
        frontend=f"127.0.0.1:{HOST_FRONTEND_PORT}",
        api=f"127.0.0.1:{host_api_port(profile)}",
        health=None,
        key_owner=0,
    )


def host_api_port(profile: Profile) -> int:
    """Where Compose publishes the API on 127.0.0.1 for a proxy on the host: API_PORT, unless the proxy binds
    the import port (the same number) itself."""
    return HOST_API_PORT if import_port_route(profile) else API_PORT


def site_headers(profile: Profile) -> dict[str, str]:
    """The security headers every proxy sends: the profile's, with the import origin in connect-src when
    the proxy serves one."""
    origin = import_origin(profile)
    return profile.proxy.security_headers((origin,) if origin else ())


def key_owner(profile: Profile) -> int:
    return placement_for(profile).key_owner
