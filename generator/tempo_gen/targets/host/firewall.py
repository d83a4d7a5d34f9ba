"""firewall/: the host's nftables rules (Docker's published ports included), DOCKER-USER rules,
an apply script that rolls back unless confirmed, and the same policy for ufw hosts."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.models.host.firewall import Vpn
from tempo_gen.models.profile import Profile
from tempo_gen.policy.ports import IMPORT_PORT
from tempo_gen.policy.routes import import_port_route
from tempo_gen.targets.base import TargetInput

# Where the operator copies out/<name>/firewall/ on the host; the systemd unit and
# the nftables include name files by this path.
INSTALL_DIR = "/etc/tempo-gen/firewall"
TABLE = "inet tempo_gen"
DOCKER_CHAIN = "TEMPO-GEN-DOCKER"
# Bridges Docker creates: the default one and one br-<id> per Compose network.
# nftables and iptables spell the wildcard differently.
DOCKER_BRIDGES: dict[str, tuple[str, ...]] = {"nft": ("docker0", "br-*"), "iptables": ("docker0", "br-+")}


IPNetwork = TypeVar("IPNetwork", ipaddress.IPv4Network, ipaddress.IPv6Network)


@dataclass(frozen=True)
class Sources:
    """Who may connect: nobody named means anybody."""

    v4: tuple[str, ...]
    v6: tuple[str, ...]

    @classmethod
    def of(cls, cidrs: list[str]) -> Sources:
        nets = [ipaddress.ip_network(c) for c in cidrs]
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
        return cls(_collapse(v4), _collapse(v6))

    @property
    def anywhere(self) -> bool:
        return not self.v4 and not self.v6

    @property
    def nft(self) -> list[str]:
        """Source matches for one nft rule each: [""] is any source, [] is none."""
        if self.anywhere:
            return [""]
        return ([f"ip saddr {{ {', '.join(self.v4)} }} "] if self.v4 else []) + (
            [f"ip6 saddr {{ {', '.join(self.v6)} }} "] if self.v6 else []
        )

    def iptables(self, family: int) -> list[str]:
        """`-s` options for one iptables rule each, in the given IP family."""
        if self.anywhere:
            return [""]
        return [f"-s {cidr} " for cidr in (self.v4 if family == 4 else self.v6)]

    def describe(self, family: int | None = None) -> str:
        """For comments: the allowed sources, of one family or both."""
        if self.anywhere:
            return "anywhere"
        if family is None:
            return ", ".join(self.v4 + self.v6)
        return ", ".join(self.v4 if family == 4 else self.v6)

    @property
    def ufw(self) -> list[str]:
        return ["any"] if self.anywhere else [*self.v4, *self.v6]


def _collapse(nets: Sequence[IPNetwork]) -> tuple[str, ...]:
    # Merged so overlapping entries cannot make nft refuse an interval set.
    return tuple(str(n) for n in ipaddress.collapse_addresses(nets))


@dataclass(frozen=True)
class Plan:
    """Everything the firewall templates decide on, computed once from the profile."""

    ssh_port: int
    ssh: Sources
    vpn: Vpn | None
    web_ports: tuple[int, ...]
    """Ports open on the host for the site (a proxy on the host, or docker-proxy): http, https, and the
    import port of releases whose browser sends bulk imports there."""
    web: Sources
    import_port: int | None
    """The one of web_ports that serves only the browser's bulk imports (None: the release has none)."""
    published_ports: tuple[int, ...]
    """Host ports Compose publishes to the world; Docker DNATs them past the input chain."""
    external_interfaces: tuple[str, ...]
    swarm_peers: Sources | None
    """The addresses of deploy.nodes, allowed Swarm's own ports (SWARM_PORTS); None: not a multi-node Swarm."""


# Swarm between its nodes: cluster management (managers), gossip, VXLAN overlay traffic.
SWARM_PORTS = {"tcp": (2377, 7946), "udp": (4789, 7946)}


def plan(profile: Profile) -> Plan:
    firewall, proxy = profile.firewall, profile.proxy
    web_ports = () if proxy.kind == "none" else tuple(sorted({proxy.http_port, proxy.https_port}))
    import_port = IMPORT_PORT if import_port_route(profile) else None
    if import_port:  # opened exactly like the site's https port
        web_ports = tuple(sorted({*web_ports, import_port}))
    published = web_ports if proxy.placement == "container" else ()
    return Plan(
        ssh_port=firewall.ssh_port,
        ssh=Sources.of(firewall.admin_cidrs),
        vpn=firewall.vpn,
        web_ports=web_ports,
        web=Sources.of(firewall.web_cidrs),
        import_port=import_port,
        published_ports=published,
        external_interfaces=tuple(firewall.external_interfaces),
        swarm_peers=Sources.of([str(node.address) for node in profile.deploy.nodes]) if profile.deploy.nodes else None,
    )


def docker_bridges(profile: Profile) -> dict[str, tuple[str, ...]]:
    """Bridges whose traffic comes from containers. In Swarm every task on a non-internal overlay network
    reaches the outside through docker_gwbridge (the API's egress, the proxy's replies and ACME)."""
    if profile.deploy.mode != "swarm":
        return DOCKER_BRIDGES
    return {syntax: (*names, "docker_gwbridge") for syntax, names in DOCKER_BRIDGES.items()}


def files_for(target_input: TargetInput) -> list[RenderedFile]:
    if not target_input.profile.firewall.enabled:
        return []
    values = {
        "plan": plan(target_input.profile),
        "firewall": target_input.profile.firewall,
        "table": TABLE,
        "chain": DOCKER_CHAIN,
        "bridges": docker_bridges(target_input.profile),
        "install_dir": INSTALL_DIR,
        "swarm_ports": SWARM_PORTS,
    }
    return [
        target_input.file("firewall/nftables.conf", "host/firewall/nftables.conf.j2", values),
        target_input.file("firewall/apply.sh", "host/firewall/apply.sh.j2", values, mode=0o755),
        # One template, one file per IP family: iptables-restore and ip6tables-restore read separate input.
        target_input.file("firewall/docker-user.rules", "host/firewall/docker-user.rules.j2", {**values, "family": 4}),
        target_input.file("firewall/docker-user6.rules", "host/firewall/docker-user.rules.j2", {**values, "family": 6}),
        target_input.file("firewall/docker-user.sh", "host/firewall/docker-user.sh.j2", values, mode=0o755),
        target_input.file(
            "firewall/tempo-gen-docker-user.service", "host/firewall/tempo-gen-docker-user.service.j2", values
        ),
        target_input.file("firewall/ufw/after.rules", "host/firewall/ufw/after.rules.j2", {**values, "family": 4}),
        target_input.file("firewall/ufw/after6.rules", "host/firewall/ufw/after.rules.j2", {**values, "family": 6}),
        target_input.file("firewall/ufw/setup.sh", "host/firewall/ufw/setup.sh.j2", values, mode=0o755),
    ]
