"""deploy.mode: swarm on three nodes (support.swarm_cluster: engines in containers): the rendered stack deploys
with nothing on the nodes but the images, tasks on workers keep their hardening and secrets, Postgres keeps its
data when its neighbours are drained or its task is killed, both secrets rotate while the API runs on a worker
(tempo-gen reaches it through that node's engine), and the proxy keeps serving from its pinned edge node.

The layout: the manager (a node like the others), worker1 labelled postgres, worker2 labelled edge. The kernel
here has VXLAN but no IPVS (endpoint_mode: dnsrr) and no ESP (encrypted overlays would drop traffic: the probe
below says so, and the stack uses none). tempo-gen talks to the manager with DOCKER_HOST, as a user would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import trustme
from docker.models.containers import Container

from support.engine import PrerequisiteMissing, unavailable
from support.project import run_tempo_gen
from support.swarm_cluster import ADDRESSES, PREFIX, Cluster, Node, esp_missing, three_node_swarm
from support.tls_client import https_request
from support.wait import wait_until
from tempo_gen.errors import DeploymentError
from tempo_gen.ops.running.swarm import SwarmProject
from tempo_gen.profile.loader import load_profile

from .images.build import build_role
from .test_swarm import profile_text as single_node_profile

pytestmark = pytest.mark.e2e

DOMAIN = "tempo.test"
NAME = "tempo-e2e-swarm"
UIDS = {"postgres": 70, "api": 1654, "frontend": 1000, "proxy": 101}
SECRETS = {"postgres": {"db_password"}, "api": {"db_password", "jwt_key"}, "frontend": set(), "proxy": set()}
USER = {"username": "runner", "password": "correct horse battery staple"}
UP_TIMEOUT = 240
PSQL_CHECK = (
    "IFS= read -r PGPASSWORD; export PGPASSWORD; psql -X -tA --host=127.0.0.1 "
    '--username="$POSTGRES_USER" --dbname="$POSTGRES_DB" -c "select 1"'
)


def profile_text(tls: Path, images: dict[str, str]) -> str:
    """test_swarm's single-node profile (DNS round robin: no IPVS here) with the three nodes and their roles."""

    def node(name: str, roles: str) -> str:
        address = ADDRESSES[name]
        return (
            f"    - hostname: {PREFIX}-{name}\n      address: {address}\n      roles: {roles}\n"
            f"      docker_host: tcp://{address}:2375\n      insecure_plain_tcp: true\n"
        )

    single = single_node_profile(NAME, images, "dnsrr", 80, 443, tls, Path(f"/var/log/tempo-gen/{NAME}"))
    nodes = "  nodes:\n" + node("manager", "[]") + node("worker1", "[postgres]") + node("worker2", "[edge]")
    return single.replace("  endpoint_mode: dnsrr\n", "  endpoint_mode: dnsrr\n" + nodes, 1)


@dataclass
class Deployment:
    root: Path
    cluster: Cluster
    ca: trustme.CA
    outputs: list[str] = field(default_factory=list)

    @property
    def bundle(self) -> Path:
        return self.root / "out" / NAME

    @property
    def profile(self) -> Path:
        return self.root / "profiles" / f"{NAME}.yaml"

    @property
    def manager(self) -> docker.DockerClient:
        return self.cluster.manager.client

    def tempo_gen(self, *args: str) -> str:
        result = run_tempo_gen(self.root, *args, timeout=600, DOCKER_HOST=self.cluster.manager.url)
        self.outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def stack(self) -> SwarmProject:
        """tempo-gen's own view of the running stack (the profile as it is now), through the manager."""
        return SwarmProject(load_profile(self.profile, self.root).profile, self.manager)

    def container(self, service: str) -> Container:
        return self.stack().container(service)

    def node_of(self, service: str) -> Node:
        """The node whose engine runs the service's task."""
        container = self.container(service)
        name = container.labels["com.docker.swarm.node.id"]
        hostname = self.manager.nodes.get(name).attrs["Description"]["Hostname"]
        return self.cluster.node_of(hostname)

    def healthy(self, service: str) -> bool:
        try:
            return bool(self.container(service).attrs["State"].get("Health", {}).get("Status") == "healthy")
        except Exception:  # no running task yet, or its node is being drained
            return False

    def wait_healthy(self, *services: str) -> None:
        for service in services:
            wait_until(lambda service=service: self.healthy(service), UP_TIMEOUT, f"{service} healthy", interval=2)  # type: ignore[misc]

    def exec(self, service: str, *cmd: str, user: str = "") -> tuple[int, str]:
        code, out = self.container(service).exec_run(list(cmd), user=user, demux=False)
        assert code is not None and isinstance(out, bytes | None)
        return code, (out or b"").decode(errors="replace")

    def https(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], str | bytes]:
        """A request to the site at the edge node's address (the proxy publishes 443 in host mode there)."""
        return https_request(ADDRESSES["worker2"], 443, DOMAIN, self.ca, method, path, **kw)

    def login(self) -> str:
        status, headers, body = self.https("POST", "/api/auth/login", json_body=USER)
        assert status == 200, body
        return headers["set-cookie"].split(";")[0]

    def data_intact(self) -> None:
        """The account registered at deploy time still logs in: Postgres kept its volume."""
        status, _, _ = self.https("GET", "/api/auth/me", cookie=self.login())
        assert status == 200

    def set_availability(self, node: Node, availability: str) -> None:
        swarm_node = next(n for n in self.manager.nodes.list() if n.attrs["Description"]["Hostname"] == node.hostname)
        swarm_node.update({**swarm_node.attrs["Spec"], "Availability": availability})


def _build_and_save(host: docker.DockerClient, bundle: Path) -> list[str]:
    """Run the stack file's `docker build` lines on this machine's engine; return the images built."""
    text = (bundle / "compose.yaml").read_text()
    built = []
    for line in re.findall(r"^#   (docker build .+)$", text, re.M):
        command = shlex.split(line)
        done = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}:\n{done.stdout}\n{done.stderr}"
        built.append(command[command.index("-t") + 1])
    return built


@pytest.fixture(scope="module")
def deployed(
    docker_client: docker.DockerClient, standin_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if subprocess.run(["docker", "stack", "--help"], capture_output=True, timeout=30).returncode != 0:
        unavailable("the docker CLI (with `docker stack`) is not installed")
    if os.geteuid() != 0:
        unavailable("the Swarm nodes (dockerd in containers) need root")
    try:
        node_image = build_role("node", docker_client)
    except PrerequisiteMissing as exc:
        unavailable(str(exc))
    root = tmp_path_factory.mktemp("multinode")
    (root / "profiles").mkdir()
    ca = trustme.CA()
    tls = root / "tls"
    tls.mkdir()
    cert = ca.issue_cert(DOMAIN)
    cert.private_key_and_cert_chain_pem.write_to_path(tls / "fullchain.pem")
    cert.private_key_pem.write_to_path(tls / "privkey.pem")
    os.chmod(tls / "privkey.pem", 0o600)
    (root / "profiles" / f"{NAME}.yaml").write_text(profile_text(tls, standin_images))
    assert run_tempo_gen(root, "render", timeout=120).returncode == 0
    built = _build_and_save(docker_client, root / "out" / NAME)
    started = time.monotonic()
    try:
        with three_node_swarm(docker_client, node_image, built) as cluster:
            print(f"cluster up with images loaded in {time.monotonic() - started:.0f}s")
            deployment = Deployment(root, cluster, ca)
            deployment.tempo_gen("secrets", "init")
            assert "labels set" in deployment.tempo_gen("swarm", "prepare")
            # The access log's folder on the edge node, as monitoring/install.sh makes it there.
            code, out = cluster.nodes["worker2"].sh(f"install -d -o 101 -g 101 -m 0750 /var/log/tempo-gen/{NAME}")
            assert code == 0, out
            deploy = subprocess.run(
                ["docker", "-H", cluster.manager.url, "stack", "deploy", "--resolve-image", "never"]
                + ["-c", "compose.yaml", NAME],
                cwd=deployment.bundle,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            deployment.wait_healthy("postgres", "api", "frontend", "proxy")
            wait_until(lambda: _answers(deployment), UP_TIMEOUT, "the site answers on the edge node", interval=2)
            status, _, body = deployment.https("POST", "/api/auth/register", json_body=USER)
            assert status == 200, body
            print(f"stack deployed {time.monotonic() - started:.0f}s after the start")
            yield deployment
    finally:
        for image in built:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.images.remove(image, force=True)


def _answers(deployment: Deployment) -> bool:
    try:
        return deployment.https("GET", "/api/health", timeout=5)[0] == 200
    except OSError:
        return False


def test_services_run_where_the_profile_places_them(deployed: Deployment) -> None:
    assert deployed.node_of("postgres").name == "worker1"
    assert deployed.node_of("proxy").name == "worker2"
    labels = {
        n.attrs["Description"]["Hostname"]: n.attrs["Spec"].get("Labels", {}) for n in deployed.manager.nodes.list()
    }
    assert labels[f"{PREFIX}-worker1"] == {f"org.tempo-gen.{NAME}.postgres": "true"}
    assert labels[f"{PREFIX}-worker2"] == {f"org.tempo-gen.{NAME}.edge": "true"}
    assert labels[f"{PREFIX}-manager"] == {}
    assert "labels set" not in deployed.tempo_gen("swarm", "prepare"), "a second prepare changes nothing"
    # Nothing but the images was put on the nodes: the proxy's files came as Swarm configs and secrets.
    key = deployed.root / "tls" / "privkey.pem"
    code, out = deployed.exec("proxy", "stat", "-c", "%u %a", "/etc/nginx/nginx.conf", str(key))
    assert code == 0 and out.split("\n")[:2] == ["101 444", "101 400"], out
    assert deployed.cluster.nodes["worker2"].sh(f"test -e {key}")[0] != 0, "the key is not a file on the node"


@pytest.mark.parametrize("service", sorted(UIDS))
def test_tasks_on_workers_keep_their_hardening_and_secrets(deployed: Deployment, service: str) -> None:
    container = deployed.container(service)
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == f"{UIDS[service]}:{UIDS[service]}"
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    code, out = deployed.exec(service, "sh", "-c", "grep -h '^CapEff' /proc/[0-9]*/status | sort -u")
    assert out.split() == ["CapEff:", "0000000000000000"], out
    code, out = deployed.exec(service, "sh", "-c", "cd /run/secrets 2>/dev/null && stat -c '%n %u %a' *")
    listed = {line.split()[0]: line.split()[1:] for line in out.splitlines() if code == 0}
    assert listed == {name: [str(UIDS[service]), "400"] for name in SECRETS[service]}, out
    if service in ("postgres", "proxy"):
        assert deployed.node_of(service).name != "manager", "pinned to a worker"


def test_draining_the_postgres_nodes_neighbours_keeps_the_data(deployed: Deployment) -> None:
    postgres = deployed.container("postgres").id
    manager = deployed.cluster.manager
    deployed.set_availability(manager, "drain")  # it stays drained: from here on every task runs on a worker

    def everything_on_workers() -> bool:
        return all(deployed.healthy(s) and deployed.node_of(s).name != "manager" for s in UIDS)

    wait_until(everything_on_workers, UP_TIMEOUT, "every task on a worker", interval=2)
    assert deployed.container("postgres").id == postgres, "Postgres was not moved"
    wait_until(lambda: _answers(deployed), UP_TIMEOUT, "the site answers", interval=2)
    deployed.data_intact()


def test_a_killed_postgres_task_comes_back_on_its_node_with_the_data(deployed: Deployment) -> None:
    before = deployed.container("postgres")
    before.kill()
    wait_until(
        lambda: deployed.healthy("postgres") and deployed.container("postgres").id != before.id,
        UP_TIMEOUT,
        "a new Postgres task",
        interval=2,
    )
    assert deployed.node_of("postgres").name == "worker1"
    # The API keeps its pool; give it a request or two to reconnect.
    wait_until(lambda: deployed.https("GET", "/api/ready")[0] == 200, 60, "the API reaches Postgres", interval=2)
    deployed.data_intact()


def test_both_secrets_rotate_while_the_api_runs_on_a_worker(deployed: Deployment) -> None:
    assert deployed.node_of("api").name != "manager"
    old_cookie = deployed.login()
    _, before = deployed.exec("api", "cat", "/run/secrets/db_password")
    for which in ("jwt", "db"):
        assert "run `tempo-gen render`" in deployed.tempo_gen("secrets", "rotate", which, str(deployed.profile))
    deployed.wait_healthy("api", "postgres", "proxy")
    assert "    jwt_key: 2\n    db_password: 2\n" in deployed.profile.read_text()
    names = sorted(s.name for s in deployed.manager.secrets.list(filters={"label": f"org.tempo-gen.deployment={NAME}"}))
    assert names == [f"{NAME}_db_password_v2", f"{NAME}_jwt_key_v2"]
    _, after = deployed.exec("api", "cat", "/run/secrets/db_password")
    assert after.strip() != before.strip()
    stack = deployed.stack()
    for password, expected in ((after.strip(), 0), (before.strip(), 2)):
        code, out = stack.exec_with_stdin("postgres", ["sh", "-c", PSQL_CHECK], password + "\n")
        assert code == expected, out
    wait_until(lambda: _answers(deployed), UP_TIMEOUT, "the site answers", interval=2)
    assert deployed.https("GET", "/api/auth/me", cookie=old_cookie)[0] == 401, "old sessions end"
    deployed.data_intact()
    for text in deployed.outputs:
        assert after.strip() not in text and before.strip() not in text


def test_a_replaced_proxy_keeps_serving_from_its_edge_node(deployed: Deployment) -> None:
    before = deployed.container("proxy").id

    def proxy_healthy() -> bool:
        """The proxy task's own health check, run now (False while Swarm replaces the task)."""
        try:
            return deployed.exec("proxy", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8081/healthz")[0] == 0
        except (DeploymentError, docker.errors.APIError):  # no running task, or it stopped meanwhile
            return False

    assert proxy_healthy()
    # Without a frontend to reach, the proxy reports unhealthy, so Swarm would replace a proxy that lost it.
    scale = ["docker", "-H", deployed.cluster.manager.url, "service", "scale", "--detach"]
    assert subprocess.run([*scale, f"{NAME}_frontend=0"], capture_output=True, timeout=120).returncode == 0
    wait_until(lambda: not proxy_healthy(), 30, "the proxy's health check fails", interval=1)
    assert subprocess.run([*scale, f"{NAME}_frontend=1"], capture_output=True, timeout=120).returncode == 0
    wait_until(proxy_healthy, UP_TIMEOUT, "the proxy healthy again", interval=1)
    done = subprocess.run(
        ["docker", "-H", deployed.cluster.manager.url, "service", "update", "--force", "--detach=false"]
        + ["--quiet", f"{NAME}_proxy"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    deployed.wait_healthy("proxy")
    assert deployed.container("proxy").id != before
    assert deployed.node_of("proxy").name == "worker2", "the site's address did not move"
    wait_until(lambda: _answers(deployed), UP_TIMEOUT, "the site answers", interval=2)
    deployed.data_intact()


def test_encrypted_overlays_carry_traffic_between_nodes(deployed: Deployment) -> None:
    if reason := esp_missing():
        pytest.skip(
            f"no ESP with AES-GCM in this kernel ({reason}): encrypted overlays would report Running and drop "
            "every packet, so the stack uses none and this check needs another kernel"
        )
    image = deployed.container("api").image
    assert image is not None and image.tags
    network = deployed.manager.networks.create(
        f"{PREFIX}-encrypted", driver="overlay", attachable=True, options={"encrypted": ""}
    )
    workers = deployed.cluster.nodes["worker1"].client, deployed.cluster.nodes["worker2"].client
    try:
        workers[0].containers.run(
            image.tags[0], entrypoint=["python3", "-m", "http.server", "8000"], detach=True,
            name=f"{PREFIX}-esp-server", network=network.name,
        )  # fmt: skip
        client = workers[1].containers.run(
            image.tags[0], entrypoint=["curl", "-sS", "--retry", "5", "--retry-all-errors", "--max-time", "10"],
            command=[f"http://{PREFIX}-esp-server:8000/"], detach=True, name=f"{PREFIX}-esp-client",
            network=network.name,
        )  # fmt: skip
        assert client.wait(timeout=120)["StatusCode"] == 0, client.logs().decode(errors="replace")
    finally:
        for worker, name in zip(workers, ("server", "client"), strict=True):
            with contextlib.suppress(docker.errors.NotFound):
                worker.containers.get(f"{PREFIX}-esp-{name}").remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
