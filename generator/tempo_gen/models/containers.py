"""Container hardening: who each service runs as and what it may consume."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tempo_gen.models.base import Size, StrictModel, Uid, size_bytes

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
