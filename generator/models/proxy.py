"""The reverse proxy in front of Tempo: which one, where it runs, what it publishes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from tempo_gen.models.base import ImageRef, Port, StrictModel


class Proxy(StrictModel):
    """Where TLS terminates. `none` means you terminate TLS elsewhere (audit reports it)."""

    kind: Literal["nginx", "traefik", "none"] = "nginx"
    """Which reverse proxy terminates TLS."""
    placement: Literal["container", "host"] = "container"
    """`container`: the proxy is a service in compose.yaml and the only one published publicly.
    `host`: the proxy runs on the host; compose publishes the frontend and API on 127.0.0.1 only."""
    publish_addresses: list[IPv4Address | IPv6Address] = []
    """Host addresses the proxy container publishes 80/443 on (e.g. the server's public IP).
    Required for a production container proxy; 0.0.0.0 or :: is allowed but audit reports it."""
    http_port: Port = 80
    """Public HTTP port (ACME challenge and redirect only)."""
    https_port: Port = 443
    """Public HTTPS port."""
    image: ImageRef | None = None
    """Proxy image for `placement: container`; default: the unprivileged nginx image (uid 101, ports 8080/8443)."""

    def image_ref(self) -> str | None:
        if self.kind == "none" or self.placement == "host":
            return None
        return self.image or DEFAULT_IMAGES[self.kind]


DEFAULT_IMAGES = {
    "nginx": "nginxinc/nginx-unprivileged:1.28-alpine",
    "traefik": "traefik:v3.7",
}
