"""A running Swarm stack: its services' current tasks take the place of Compose containers (exec, health: stack.py)."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from tempo_gen.errors import DeploymentError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.running.stack import RunningStack, docker_client
from tempo_gen.targets.swarm_stack import service_name

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.services import Service

UPDATE_TIMEOUT = 300  # seconds `docker service update` may take to converge


def swarm_client() -> DockerClient:
    """A Docker SDK client of a Swarm manager."""
    import docker  # the SDK is only needed by commands that talk to the engine

    client = docker_client()
    try:
        info = client.info()
    except docker.errors.DockerException as exc:
        raise DeploymentError(f"cannot reach the Docker engine: {exc}") from None
    swarm = info.get("Swarm", {})
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise DeploymentError(
            "this Docker engine is not a Swarm manager (deploy.mode is swarm): run `docker swarm init` "
            "or point DOCKER_HOST at a manager"
        )
    return client


class SwarmProject(RunningStack):
    """The running stack: its services' current tasks take the place of Compose containers."""

    missing_status = "no running task"

    def __init__(self, profile: Profile, client: DockerClient):
        super().__init__(client)
        self.profile = profile

    def service(self, service: str) -> Service:
        import docker

        try:
            found: Service = self.client.services.get(service_name(self.profile, service))  # type: ignore[no-untyped-call]
            return found
        except docker.errors.NotFound:
            raise DeploymentError(
                f"service {service_name(self.profile, service)} is not deployed (docker stack deploy first)"
            ) from None

    def container(self, service: str) -> Container:
        import docker

        tasks = self.service(service).tasks(filters={"desired-state": "running"})  # type: ignore[no-untyped-call]
        for task in tasks:
            container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if task["Status"]["State"] == "running" and container_id:
                try:
                    return self.client.containers.get(container_id)
                except docker.errors.NotFound:
                    continue
        raise DeploymentError(f"service {service_name(self.profile, service)} has no running task")

    def stop(self, service: str) -> None:
        docker_cli("service", "scale", "--detach=false", f"{service_name(self.profile, service)}=0")

    def start(self, service: str) -> None:
        docker_cli("service", "scale", "--detach=false", f"{service_name(self.profile, service)}=1")

    def uses(self, service: str) -> list[dict[str, Any]]:
        """The secret references of a service's spec."""
        return self.service(service).attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []

    def swap_secret(self, service: str, old: str, new: str) -> None:
        """Move `service` from secret `old` to `new`, same file, owner and mode; wait until it converged."""
        reference = next((r for r in self.uses(service) if r["SecretName"] == old), None)
        if reference is None:
            raise DeploymentError(
                f"{service_name(self.profile, service)} does not use {old}: deploy the rendered stack "
                "file first, or the profile's secrets.versions do not match what runs"
            )
        file = reference["File"]
        add = f"source={new},target={file['Name']},uid={file['UID']},gid={file['GID']},mode={file['Mode']:#o}"
        docker_cli(
            "service",
            "update",
            "--detach=false",
            "--quiet",
            "--secret-rm",
            old,
            "--secret-add",
            add,
            service_name(self.profile, service),
        )

    def roll_back(self, service: str) -> None:
        docker_cli(
            "service",
            "update",
            "--detach=false",
            "--quiet",
            "--rollback",
            service_name(self.profile, service),
            check=False,
        )


def docker_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        raise DeploymentError("the docker command is not installed (Swarm mode needs it for `docker service update`)")
    result = subprocess.run([docker, *args], capture_output=True, text=True, timeout=UPDATE_TIMEOUT)
    if check and result.returncode != 0:
        raise DeploymentError(f"docker {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result
