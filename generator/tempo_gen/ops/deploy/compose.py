"""The Compose side of a deploy: run compose on a bundle, see what each service runs, wait until it is healthy."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError
from tempo_gen.ops.running.compose import ComposeProject, run_compose

if TYPE_CHECKING:
    from docker.models.containers import Container

COMPOSE_TIMEOUT = 900  # seconds for one `compose up` (it builds images and waits for dependencies' health)
HEALTHY_TIMEOUT = 240  # seconds every service gets to report healthy after `up`
ORDER = ("postgres", "api", "frontend", "proxy")


def compose(project: str, bundle: Path, *args: str, timeout: float = COMPOSE_TIMEOUT) -> str:
    """`docker compose -p PROJECT -f BUNDLE/compose.yaml ARGS` in the bundle's folder: its output."""
    result = run_compose(project, bundle, *args, timeout=timeout)
    if result.returncode != 0:
        said = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise DeploymentError(f"compose {args[0]} failed: {' / '.join(said[-2:])[-400:]}")
    return result.stdout


def running(stack: ComposeProject) -> dict[str, Container]:
    """service -> its running container, for every service of the bundle that has one, in start order."""
    found = {}
    for service in ORDER:
        try:
            found[service] = stack.container(service)
        except DeploymentError:
            continue
    return found


def services(stack: ComposeProject) -> list[str]:
    """The bundle's services that run, in start order."""
    return list(running(stack))


def running_images(stack: ComposeProject) -> dict[str, tuple[str, str]]:
    """service -> (image name it runs as, image id) of every service with a container."""
    return {s: (str(c.attrs["Config"]["Image"]), str(c.attrs["Image"])) for s, c in running(stack).items()}


def container_ids(stack: ComposeProject) -> dict[str, str]:
    return {service: container.id or "" for service, container in running(stack).items()}


def bind_sources(project: str, bundle: Path) -> dict[str, list[str]]:
    """service -> the bundle paths (relative) it bind-mounts: Compose cannot see when their files change."""
    config = json.loads(compose(project, bundle, "config", "--format", "json", timeout=60))
    root = str(bundle.resolve())
    mounted: dict[str, list[str]] = {}
    for service, spec in (config.get("services") or {}).items():
        for volume in spec.get("volumes") or []:
            source = str(volume.get("source", ""))
            if volume.get("type") == "bind" and (source == root or source.startswith(root + "/")):
                mounted.setdefault(service, []).append(source[len(root) :].strip("/"))
    return mounted


def _state(container: Container) -> str:
    state = container.attrs["State"]
    if state.get("Restarting") or container.attrs.get("RestartCount") or state.get("Status") in ("exited", "dead"):
        return "stopped"  # crashed and being restarted, or gone: it will not become healthy by waiting
    return str(state.get("Health", {}).get("Status") or state.get("Status"))


def wait_healthy(stack: ComposeProject, service: str, say: Callable[[str], object]) -> None:
    """Wait (bounded) until `service` reports healthy; DeploymentError as soon as it is unhealthy or crashed."""
    say(f"waiting for {service} to report healthy (up to {HEALTHY_TIMEOUT}s)")
    deadline, status = time.monotonic() + HEALTHY_TIMEOUT, "not running"
    while time.monotonic() < deadline:
        try:
            container = stack.container(service)
            container.reload()
            status = _state(container)
        except DeploymentError:
            status = "not running"
        if status == "healthy":
            return
        if status in ("unhealthy", "stopped"):
            break
        time.sleep(2)
    raise DeploymentError(f"{service} did not become healthy (last status: {status})")
