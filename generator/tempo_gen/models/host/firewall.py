"""The host firewall: who may reach SSH and the site, on the host and through Docker's published ports."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from tempo_gen.models.base import Cidr, Port, StrictModel

# Linux interface names: at most 15 bytes (IFNAMSIZ - 1). Wildcards and quotes are
# refused so a name can go verbatim into nftables, iptables and ufw rules.
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_RATE = re.compile(r"^[1-9][0-9]{0,5}/(second|minute|hour)$")


def _interface(value: str) -> str:
    if not _INTERFACE.fullmatch(value) or value == "lo":
        raise ValueError(
            f"{value!r} is not a usable interface name: 1-15 letters, digits, '_', '.' or '-' "
            "(no wildcards; lo is never filtered)"
        )
    return value


def _rate(value: str) -> str:
    if not _RATE.fullmatch(value):
        raise ValueError(f"{value!r} is not a rate: expected COUNT/second, COUNT/minute or COUNT/hour, e.g. 10/minute")
    return value


Interface = Annotated[str, AfterValidator(_interface)]
Rate = Annotated[str, AfterValidator(_rate)]


class Vpn(StrictModel):
    """Administration over a VPN: SSH is then accepted only on this interface."""

    interface: Interface = Field("wg0", description="The VPN's interface, e.g. wg0 for WireGuard.")
    port: Port = Field(
        51820,
        description=("UDP port the VPN listens on, open to every source (WireGuard answers only authenticated peers)."),
    )


class Firewall(StrictModel):
    """nftables (or ufw) rules for the host, including traffic Docker forwards to published ports.

    Production needs `admin_cidrs` or `vpn`, otherwise SSH would be open to the
    world; development without either accepts SSH from anywhere (rate-limited).
    """

    enabled: bool = Field(True, description="Render firewall/. Off: nothing is rendered.")
    admin_cidrs: list[Cidr] = Field(
        [],
        description=(
            "Networks SSH is accepted from (IPv4 and/or IPv6). With `vpn`, they are addresses inside the tunnel."
        ),
    )
    allow_world_admin: bool = Field(
        False, description=("Accept 0.0.0.0/0 or ::/0 in admin_cidrs in production (SSH from anywhere).")
    )
    ssh_port: Port = Field(22, description="Port sshd listens on.")
    vpn: Vpn | None = Field(
        None, description=("When set, SSH is accepted only on the VPN interface, and the VPN's UDP port is opened.")
    )
    web_cidrs: list[Cidr] = Field(
        [],
        description=(
            "Sources allowed to reach the site's HTTP/HTTPS ports. Empty: everyone (a public site); "
            "e.g. a CDN's ranges or an office network to restrict it."
        ),
    )
    external_interfaces: list[Interface] = Field(
        [],
        description=(
            "Interfaces the outside world arrives on, for the Docker rules (e.g. [eth0]). Empty: "
            "every interface except loopback and Docker's bridges (docker0, br-*) counts as outside."
        ),
    )
    ssh_rate: Rate = Field(
        "10/minute", description=("New SSH connections accepted per source address; more are dropped.")
    )
    ssh_burst: int = Field(
        default=5, ge=1, le=1000, description=("New SSH connections a source may open at once before ssh_rate applies.")
    )
    log_rate: Rate = Field(
        "10/minute", description=("Dropped packets logged at most this often (kernel log, prefix `tempo-gen drop`).")
    )
