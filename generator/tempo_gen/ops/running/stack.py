"""What a running stack offers whichever way it is deployed: its services' containers, exec into them, health.

ComposeProject (compose.py) finds a service's container by the Compose
labels, SwarmProject (swarm.py) by the service's running task; the
rest is the same and lives here once.
"""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, cast

from tempo_gen.errors import DeploymentError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

HEALTHY_TIMEOUT = 180  # seconds a recreated service may take to report healthy


def docker_client() -> DockerClient:
    """A Docker SDK client of the local (or DOCKER_HOST's) engine, checked to answer."""
    import docker  # the SDK is only needed by commands that talk to the engine

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise DeploymentError(f"cannot reach the Docker engine: {exc}") from None
    return client


class RunningStack(ABC):
    """A deployed stack of services; subclasses say how a service's current container is found."""

    # What wait_healthy reports while the service has no container to ask.
    missing_status = "not running"

    def __init__(self, client: DockerClient):
        self.client = client

    @abstractmethod
    def container(self, service: str) -> Container:
        """The service's current container; DeploymentError when it has none."""

    def exec_with_stdin(self, service: str, command: list[str], stdin: str, timeout: float = 60) -> tuple[int, str]:
        """Run `command` in the service's container feeding `stdin`: nothing sensitive goes in arguments
        or environment, which `docker inspect` of the exec would show."""
        container = self.container(service)
        api = (container.client or self.client).api  # the engine that runs it: on a cluster, not always ours
        exec_id = api.exec_create(container.id, command, stdin=True, stdout=True, stderr=True)["Id"]
        stream = api.exec_start(exec_id, socket=True)
        raw = cast("socket.socket", getattr(stream, "_sock", stream))  # the SDK's socket wrapper, or a socket
        raw.settimeout(timeout)
        raw.sendall(stdin.encode())
        raw.shutdown(socket.SHUT_WR)
        output = bytearray()
        while chunk := raw.recv(65536):
            output += chunk
        stream.close()
        code: int = api.exec_inspect(exec_id)["ExitCode"]
        return code, _demultiplex(bytes(output))

    def wait_healthy(self, service: str, timeout: float = HEALTHY_TIMEOUT) -> None:
        """Wait until the service's container reports healthy (a container without a healthcheck: running)."""
        deadline, status = time.monotonic() + timeout, self.missing_status
        while time.monotonic() < deadline:
            try:
                container = self.container(service)
                status = container.attrs["State"].get("Health", {}).get("Status", container.status)
            except DeploymentError:
                status = self.missing_status
            if status == "healthy":
                return
            time.sleep(2)
        raise DeploymentError(f"{service} did not become healthy within {timeout:.0f}s (last status: {status})")


def _demultiplex(data: bytes) -> str:
    """Docker's stdout/stderr frames (8-byte headers) to text."""
    text, offset = bytearray(), 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4 : offset + 8], "big")
        text += data[offset + 8 : offset + 8 + size]
        offset += 8 + size
    return text.decode(errors="replace")
