"""A short-lived container doing one job on a volume: no network, no capabilities, read-only root, a non-root uid.

Restore and the drill use it to write a media volume while no API container
runs (or into a throwaway volume), and to list one. It runs on the engine given
(on a cluster, the node that holds the volume) from an image that node has,
with stdin and stdout streamed like RunningStack.exec_stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError
from tempo_gen.ops.running.stack import STREAM_IDLE_TIMEOUT, exec_stream

if TYPE_CHECKING:
    from docker import DockerClient

JOB_LIFETIME = 6 * 3600  # seconds: a one-off container a killed run leaves stops by itself
LABEL = "org.tempo-gen.job"
"""Set on every one-off container (and the drill's volumes): what a killed run leaves is found by it."""
# Compose labels the images it builds with their project and service; a container of such an image would pass
# for the service's own container (to Compose and to ComposeProject) unless these are blanked.
_NOT_COMPOSE = {"com.docker.compose.project": "", "com.docker.compose.service": ""}


def job_labels(name: str) -> dict[str, str]:
    """The labels of a one-off container or volume `name`."""
    return {**_NOT_COMPOSE, LABEL: name}


def run_job(
    client: DockerClient,
    image: str,
    command: list[str],
    *,
    name: str,
    user: str,
    volumes: dict[str, tuple[str, str]],
    source: Iterable[bytes] | None = None,
    sink: Callable[[bytes], object] | None = None,
    timeout: float = STREAM_IDLE_TIMEOUT,
) -> tuple[int, str]:
    """Run `command` in a new container `name` from `image` with
    `volumes` ({volume: (path, "ro" or "rw")}); its exit code and stderr. The container is removed afterwards;
    one of that name left by a killed run is removed first."""
    import docker

    remove(client, name)
    if not user or user.split(":", maxsplit=1)[0] in ("", "0", "root"):
        raise DeploymentError(f"refusing to run {name} as root: the service's container has no non-root user")
    try:
        # Kept alive by `sleep`, the job runs as an exec in it: an exec's stdin ends when ours does (a
        # container's attached stdin would need StdinOnce, which the SDK cannot set).
        container = client.containers.run(
            image,
            [str(JOB_LIFETIME)],
            entrypoint=["sleep"],
            detach=True,
            name=name,
            user=user,
            labels=job_labels(name),
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs={"/tmp": "size=16m"},
            volumes={volume: {"bind": path, "mode": mode} for volume, (path, mode) in volumes.items()},
        )
        return exec_stream(container, command, source=source, sink=sink, timeout=timeout)
    except docker.errors.DockerException as exc:
        raise DeploymentError(f"the one-off container {name} failed: {exc}") from None
    finally:
        remove(client, name)


def remove(client: DockerClient, name: str) -> None:
    """Remove container `name` if it exists (a one-off container a killed run left)."""
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)
