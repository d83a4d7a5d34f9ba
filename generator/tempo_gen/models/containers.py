"""The containers: who each service runs as, what it may consume, and what runs them (Compose or a Swarm's nodes)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from tempo_gen.models.base import HostAddress, Size, StrictModel, Uid, size_bytes

DOCKER_MIN_MEMORY = "6m"
"""The engine refuses to start a container with a lower memory limit."""


class Limits(StrictModel):
    """Resource ceilings for one service."""

    memory: Size = Field(description="Memory ceiling, e.g. 512m (deploy.resources.limits.memory).")
    cpus: float = Field(gt=0, le=64, description="CPU ceiling in cores.")
    pids: int = Field(ge=16, le=65536, description="Most processes/threads at once (pids_limit).")

    @field_validator("memory")
    @classmethod
    def _engine_accepts(cls, memory: str) -> str:
        if size_bytes(memory) < size_bytes(DOCKER_MIN_MEMORY):
            raise ValueError(f"Docker refuses a memory limit under {DOCKER_MIN_MEMORY}; got {memory}")
        return memory


class Users(StrictModel):
    """Numeric uid (= gid) each service runs as; root is refused."""

    postgres: Uid = Field(70, description="The postgres:*-alpine image's postgres user.")
    api: Uid = Field(1654, description="The .NET 8+ aspnet image's `app` user.")
    frontend: Uid = Field(1000, description="The node:*-alpine image's `node` user.")
    proxy: Uid = Field(101, description="The reverse proxy's unprivileged user.")


class ServiceLimits(StrictModel):
    postgres: Limits = Limits(memory="1g", cpus=1.0, pids=200)
    # Tempo builds an export ZIP whole in memory and buffers bulk import bodies: 2g leaves an export of
    # about 1.5 GiB room (the README says so); raise it for larger data sets.
    api: Limits = Limits(memory="2g", cpus=1.0, pids=200)
    frontend: Limits = Limits(memory="512m", cpus=0.5, pids=100)
    proxy: Limits = Limits(memory="256m", cpus=0.5, pids=100)


class Logging(StrictModel):
    """Log rotation for every container (json-file driver, so `docker logs` keeps working)."""

    max_size: Size = Field("10m", description="Rotate a container log at this size.")
    max_files: int = Field(default=5, ge=1, le=100, description="Rotated log files kept.")


class Containers(StrictModel):
    """Hardening shared by every rendered container."""

    users: Users = Users()
    limits: ServiceLimits = ServiceLimits()
    restart: Literal["unless-stopped", "always", "on-failure:5"] = Field(
        "unless-stopped",
        description=("Restart policy. CIS 5.15 prefers on-failure:5; self-hosters usually expect unless-stopped."),
    )
    logging: Logging = Logging()


# A node's hostname as Swarm reports it (node.hostname), and Docker's endpoint schemes tempo-gen can use.
_NODE_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# No part may start with `-`: the SSH transport passes user@host to the ssh command, which would take it as an option.
_DOCKER_HOST = re.compile(
    r"ssh://(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]{1,5})?"
    r"|tcp://[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}"
    r"|tcp://\[[0-9A-Fa-f:]+\]:[0-9]{1,5}"
    r"|unix:///[A-Za-z0-9._/-]+"
)


class SwarmNode(StrictModel):
    """One node of a multi-node Swarm: where its engine answers and what it runs."""

    hostname: str = Field(
        description="The node's hostname as Swarm knows it (`docker node ls`): how tempo-gen finds and labels it."
    )
    address: HostAddress = Field(
        description=(
            "The node's address on the network between the nodes: the firewall opens Swarm's ports "
            "(2377/tcp, 7946/tcp+udp, 4789/udp) to it."
        )
    )
    roles: list[Literal["postgres", "edge"]] = Field(
        [],
        description=(
            "`postgres`: Postgres and its volume live here (exactly one node). `edge`: a proxy task runs "
            "here and publishes 80/443 (global mode: one per edge node). `tempo-gen swarm prepare` labels the nodes."
        ),
    )
    docker_host: str | None = Field(
        None,
        description=(
            "This node's Docker API, for operations on the tasks it runs (secrets rotate, backup, restore "
            "exec there): `ssh://user@host` (Docker's SSH transport), `tcp://host:2376` (TLS with the client "
            "certificate in DOCKER_CERT_PATH) or `unix:///path`. Unset: only the manager tempo-gen talks "
            "to is reached, and an operation on a task elsewhere stops with a message."
        ),
    )
    insecure_plain_tcp: bool = Field(
        False,
        description=(
            "Reach a `tcp://` docker_host without TLS: anyone on that network is root on the node. "
            "Only for an isolated test network; `tempo-gen audit` reports it."
        ),
    )

    @field_validator("hostname")
    @classmethod
    def _is_hostname(cls, value: str) -> str:
        if len(value) > 253 or not _NODE_HOSTNAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a host name (letters, digits, - between dots)")
        return value

    @field_validator("docker_host")
    @classmethod
    def _is_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not _DOCKER_HOST.fullmatch(value):
            raise ValueError(f"{value!r} is not ssh://[user@]host[:port], tcp://host:port or unix:///path")
        return value


class Deploy(StrictModel):
    """What runs the bundle."""

    mode: Literal["compose", "swarm"] = Field(
        "compose",
        description=(
            "`compose`: `docker compose up` on one host, secrets are files from secrets.dir. `swarm`: "
            "compose.yaml is a stack file for `docker stack deploy`, secrets are external Swarm secrets "
            "made by `tempo-gen secrets init`, the proxy's configuration and certificate Swarm configs "
            "and secrets."
        ),
    )
    endpoint_mode: Literal["vip", "dnsrr"] = Field(
        "vip",
        description=(
            "Swarm mode: how services reach each other. `vip`: a stable virtual address per service "
            "(needs the kernel's IPVS, ip_vs). `dnsrr`: DNS returns the task's own address, for "
            "kernels without IPVS; nginx re-resolves its upstreams every 5 s, so a replaced API or "
            "frontend task is followed without restarting the proxy."
        ),
    )
    nodes: list[SwarmNode] = Field(
        [],
        description=(
            "Swarm mode: the nodes of a multi-node Swarm. Empty: a single-node Swarm (everything on the "
            "manager). Listed: a multi-node deployment: Postgres is pinned to the `postgres` node, the "
            "proxy runs on the `edge` nodes, and the firewall opens Swarm's ports between the addresses."
        ),
    )
