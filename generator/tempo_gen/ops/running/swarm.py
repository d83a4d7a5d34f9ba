"""A running Swarm stack: its services' current tasks take the place of Compose containers (exec, health: stack.py).

A task runs on whichever node Swarm chose, so its container is looked up on
that node's engine: the manager's own, or the node's `docker_host` from
deploy.nodes (SSH, TLS or a socket). Every operation that works inside a
container (rotation, backup, restore) goes through container() and so follows
the task; the engine is checked to be the node Swarm names before anything,
a secret on stdin above all, is sent to it. `prepare()` sets the node labels
that place Postgres and the proxy (targets/swarm_stack.py node_label).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempo_gen.errors import DeploymentError
from tempo_gen.models.containers import SwarmNode
from tempo_gen.models.profile import Profile
from tempo_gen.ops.running.stack import RunningStack, docker_client
from tempo_gen.targets.swarm_stack import node_label, service_name

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.nodes import Node
    from docker.models.services import Service

NODE_TIMEOUT = 30  # seconds for one call to a node's engine
ROLES = ("postgres", "edge")

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
        self._engines: dict[str, DockerClient] = {}  # node id -> its engine, reached once

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
                    return self.engine_of(task["NodeID"]).containers.get(container_id)
                except docker.errors.NotFound:
                    continue
        raise DeploymentError(f"service {service_name(self.profile, service)} has no running task")

    def engine_of(self, node_id: str) -> DockerClient:
        """The Docker engine of the node that runs a task, checked to be that node."""
        if node_id in self._engines:
            return self._engines[node_id]
        if self.client.info()["Swarm"].get("NodeID") == node_id:
            self._engines[node_id] = self.client
            return self.client
        hostname = self.client.nodes.get(node_id).attrs["Description"]["Hostname"]
        declared = next((node for node in self.profile.deploy.nodes if node.hostname == hostname), None)
        if declared is None or declared.docker_host is None:
            raise DeploymentError(
                f"the task runs on node {hostname}, and deploy.nodes gives no docker_host for it: tempo-gen "
                "reaches a task only through its node's engine (add the node with docker_host: ssh://user@host)"
            )
        engine = node_engine(declared)
        if engine.info()["Swarm"].get("NodeID") != node_id:
            raise DeploymentError(
                f"{declared.docker_host} (deploy.nodes {hostname}) is not the engine of Swarm node {hostname}; "
                "nothing was sent to it"
            )
        self._engines[node_id] = engine
        return engine

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


def node_engine(node: SwarmNode) -> DockerClient:
    """A client of one node's engine at its docker_host: SSH (the ssh command, so ~/.ssh/config applies),
    TLS with Docker's client certificate (DOCKER_CERT_PATH, else ~/.docker), a socket, or plain TCP if allowed."""
    import docker
    from docker.tls import TLSConfig

    url = node.docker_host or ""
    options: dict[str, Any] = {"base_url": url, "timeout": NODE_TIMEOUT}
    if url.startswith("ssh://"):
        options["use_ssh_client"] = True
    elif url.startswith("tcp://") and not node.insecure_plain_tcp:
        certs = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
        options["base_url"] = "https://" + url.removeprefix("tcp://")
        options["tls"] = TLSConfig(
            client_cert=(str(certs / "cert.pem"), str(certs / "key.pem")), ca_cert=str(certs / "ca.pem"), verify=True
        )
    try:
        client = docker.DockerClient(**options)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise DeploymentError(f"cannot reach the engine of node {node.hostname} at {url}: {exc}") from None
    return client


def prepare(profile: Profile, client: DockerClient) -> list[str]:
    """Label the nodes of deploy.nodes with their roles (and take the labels off every other node); check that
    each listed node is in the Swarm, ready, and that its docker_host is its own engine. Returns what it did."""
    if not profile.deploy.nodes:
        raise DeploymentError(f"{profile.name}: deploy.nodes is empty: a single-node Swarm needs no labels")
    known = {node.attrs["Description"]["Hostname"]: node for node in client.nodes.list()}
    missing = [node.hostname for node in profile.deploy.nodes if node.hostname not in known]
    if missing:
        raise DeploymentError(f"not in this Swarm (docker node ls): {', '.join(missing)}; nothing was labelled")
    report: list[str] = []
    stack = SwarmProject(profile, client)
    wanted = {node.hostname: node for node in profile.deploy.nodes}
    for hostname, node in sorted(known.items()):
        declared = wanted.get(hostname)
        roles = declared.roles if declared else []
        changed = _set_labels(profile, node, roles)
        if declared is None:
            if changed:
                report.append(f"{hostname}: not in deploy.nodes, its {profile.name} labels removed")
            continue
        state = node.attrs["Status"].get("State")
        availability = node.attrs["Spec"].get("Availability")
        if state != "ready" or availability != "active":
            report.append(f"{hostname}: WARNING: {state}, {availability} (tasks cannot run there now)")
        if declared.docker_host:
            stack.engine_of(node.id or "")  # reachable, and the node's own engine
        what = ", ".join(roles) or "no role"
        report.append(f"{hostname}: {what}{' (labels set)' if changed else ''}")
    return report


def _set_labels(profile: Profile, node: Node, roles: Sequence[str]) -> bool:
    """Make the node's labels of this deployment say exactly `roles`; True if that changed them."""
    spec = node.attrs["Spec"]
    labels = dict(spec.get("Labels") or {})
    for role in ROLES:
        labels.pop(node_label(profile, role), None)
    labels.update({node_label(profile, role): "true" for role in roles})
    if labels == (spec.get("Labels") or {}):
        return False
    node.update({**spec, "Labels": labels})
    return True


def docker_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        raise DeploymentError("the docker command is not installed (Swarm mode needs it for `docker service update`)")
    result = subprocess.run([docker, *args], capture_output=True, text=True, timeout=UPDATE_TIMEOUT)
    if check and result.returncode != 0:
        raise DeploymentError(f"docker {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result
