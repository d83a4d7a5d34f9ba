"""A Swarm of three engines in containers on this machine, for tests/e2e/test_multinode.py.

Each node is a container of the `node` stand-in role (Debian's docker.io on the
shared base) running its own dockerd, with overlay2 on its own volume, on a
user-defined bridge with addresses from 198.18.0.0/15 (RFC 2544's benchmarking
range: never routed). `--privileged` fails here (the host's capability bounding
set lacks CAP_SYS_RESOURCE), so a node gets every other capability, no seccomp,
AppArmor or masked /sys paths, every device, and tmpfs /run and /tmp; its
entrypoint remounts /sys and the cgroup hierarchies read-write before dockerd.
The tests reach each engine's API on the bridge (tcp://<node>:2375, nothing
listens beyond it). Images go in with one `docker save` and a `docker load` per
node. Everything is named `tempo-e2e-swarm-*` and removed with `docker rm -f -v`.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from support.wait import wait_until

PREFIX = "tempo-e2e-swarm"
SUBNET = "198.18.77.0/24"
NODES = ("manager", "worker1", "worker2")
ADDRESSES = {node: f"198.18.77.{10 + index}" for index, node in enumerate(NODES)}
ENGINE_PORT = 2375
START_TIMEOUT = 60
LOAD_TIMEOUT = 300


@dataclass
class Node:
    name: str
    address: str
    container: Container
    client: docker.DockerClient

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{ENGINE_PORT}"

    @property
    def hostname(self) -> str:
        """The node's hostname, as Swarm names it (node.hostname)."""
        return f"{PREFIX}-{self.name}"

    def sh(self, script: str, timeout: int = 60) -> tuple[int, str]:
        """Run a shell script in the node itself (not in one of its containers)."""
        done = subprocess.run(
            ["docker", "exec", self.container.id or "", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.returncode, done.stdout + done.stderr


@dataclass
class Cluster:
    nodes: dict[str, Node]

    @property
    def manager(self) -> Node:
        return self.nodes["manager"]

    def node_of(self, hostname: str) -> Node:
        return next(node for node in self.nodes.values() if node.hostname == hostname)


def _start_node(host: docker.DockerClient, image: str, network: str, name: str) -> Node:
    # The CLI, not the SDK: only it spells systempaths=unconfined (no masked or read-only /proc paths).
    subprocess.run(
        [
            "docker",
            "run",
            "--detach",
            f"--name={PREFIX}-{name}",
            f"--hostname={PREFIX}-{name}",
            "--cap-add=ALL",
            "--cap-drop=SYS_RESOURCE",
            "--security-opt=seccomp=unconfined",
            "--security-opt=apparmor=unconfined",
            "--security-opt=systempaths=unconfined",
            "--device-cgroup-rule=a *:* rwm",
            "--tmpfs=/run",
            "--tmpfs=/tmp",
            f"--volume={PREFIX}-{name}-docker:/var/lib/docker",
            f"--network={network}",
            f"--ip={ADDRESSES[name]}",
            f"--label=org.tempo-gen.test={PREFIX}",
            image,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    container = host.containers.get(f"{PREFIX}-{name}")
    client = docker.DockerClient(base_url=f"tcp://{ADDRESSES[name]}:{ENGINE_PORT}", version="1.41", timeout=120)
    return Node(name, ADDRESSES[name], container, client)


def _answers(node: Node) -> bool:
    try:
        return bool(node.client.ping())
    except (docker.errors.DockerException, OSError):
        node.container.reload()
        if node.container.status != "running":
            logs = node.container.logs().decode(errors="replace")[-2000:]
            raise RuntimeError(f"node {node.name} stopped:\n{logs}") from None
        return False


def esp_missing() -> str:
    """Why this kernel cannot run encrypted overlays ("" if it can): they need ESP with AES-GCM, which Swarm
    sets up as xfrm states; without them the tasks report Running and every packet is dropped. Probed the
    way Swarm uses it, in a throwaway network namespace."""
    probe = subprocess.run(
        ["unshare", "--net", "ip", "xfrm", "state", "add", "src", "10.0.0.1", "dst", "10.0.0.2", "proto", "esp"]
        + ["spi", "0x100", "reqid", "1", "mode", "transport", "aead", "rfc4106(gcm(aes))", "0x" + "ab" * 20, "128"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "" if probe.returncode == 0 else (probe.stderr.strip() or f"ip xfrm exited {probe.returncode}")


def load_images(host: docker.DockerClient, nodes: list[Node], images: list[str]) -> None:
    """`docker save` once, `docker load` into every node."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-images-") as folder:
        archive = Path(folder) / "images.tar"
        subprocess.run(["docker", "save", "-o", str(archive), *images], check=True, timeout=LOAD_TIMEOUT)
        loads = []
        for node in nodes:
            with open(archive, "rb") as fh:
                loads.append(
                    subprocess.Popen(
                        ["docker", "-H", node.url, "load", "-q"],
                        stdin=fh,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                    )
                )
        for node, load in zip(nodes, loads, strict=True):
            out, _ = load.communicate(timeout=LOAD_TIMEOUT)
            if load.returncode != 0:
                raise RuntimeError(f"docker load into {node.name} failed: {out.decode(errors='replace')}")


@contextlib.contextmanager
def three_node_swarm(host: docker.DockerClient, image: str, images: list[str]) -> Iterator[Cluster]:
    """A manager and two workers with `images` loaded; everything removed afterwards."""
    network = host.networks.create(
        f"{PREFIX}-net",
        driver="bridge",
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)]),
        labels={"org.tempo-gen.test": PREFIX},
    )
    nodes: list[Node] = []
    try:
        for name in NODES:
            nodes.append(_start_node(host, image, network.name or "", name))
        for node in nodes:
            wait_until(lambda node=node: _answers(node), START_TIMEOUT, f"dockerd in {node.name}", interval=0.5)  # type: ignore[misc]
        manager, workers = nodes[0], nodes[1:]
        manager.client.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:2377")
        token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
        for worker in workers:
            worker.client.swarm.join([f"{manager.address}:2377"], token, listen_addr=f"{worker.address}:2377")
        load_images(host, nodes, images)
        yield Cluster({node.name: node for node in nodes})
    finally:
        for node in nodes:
            node.client.close()
        for name in NODES:  # by name: a node that failed to start is not in `nodes`
            subprocess.run(["docker", "rm", "-f", "-v", f"{PREFIX}-{name}"], capture_output=True, timeout=120)
            with contextlib.suppress(docker.errors.NotFound):
                host.volumes.get(f"{PREFIX}-{name}-docker").remove(force=True)
        network.remove()
