"""deploy.mode: swarm on the real engine: `tempo-gen secrets init` makes the Swarm secrets, the stack file's own
build and deploy commands bring it up, and every service holds exactly its own copy of exactly its secrets.

Self-contained, and the engine is left as it was found: the swarm is initialised (on 127.0.0.1 only) only when
the engine is in none, and then left again, with the docker_gwbridge network Swarm creates, which leaves
iptables as before. The stack, its volumes, secrets and images go too. Every wait is bounded; all traffic is
local (the images Swarm runs directly are tagged under `.invalid`, so its pull attempts reach no registry).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import trustme
from docker.models.containers import Container

from support.engine import unavailable
from support.project import RenderedProject, run_tempo_gen
from support.proxy import free_port
from support.tempo_client import Origin, TempoClient
from support.tls_client import https_request, site_certificate
from support.wait import wait_until
from tempo_gen.policy.releases import NEWEST

DOMAIN = "tempo.test"
UIDS = {"postgres": 70, "api": 1654, "frontend": 1000, "proxy": 101}
SECRETS = {"postgres": {"db_password"}, "api": {"db_password", "jwt_key"}, "frontend": set(), "proxy": set()}
LABEL = "org.tempo-gen.deployment"
UP_TIMEOUT = 300
USER = {"username": "runner", "password": "correct horse battery staple"}  # Tempo: 16 to 64 characters


def run(command: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def swarm(docker_client: docker.DockerClient) -> Iterator[None]:
    """A single-node swarm manager for this module; joined here only if the engine was in none."""
    if run(["docker", "stack", "--help"], timeout=30).returncode != 0:
        unavailable("the docker CLI (with `docker stack`) is not installed")
    state = docker_client.info().get("Swarm", {})
    had_gwbridge = bool(docker_client.networks.list(names=["docker_gwbridge"]))
    joined = False
    if state.get("LocalNodeState") == "inactive":
        try:
            docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        except docker.errors.APIError as exc:
            unavailable(f"docker swarm init failed on this engine: {exc.explanation}")
        joined = True
    elif state.get("LocalNodeState") != "active" or not state.get("ControlAvailable"):
        unavailable(f"the engine's swarm is {state.get('LocalNodeState')!r} and this node is not a manager")
    try:
        yield
    finally:
        if joined:
            docker_client.swarm.leave(force=True)
            if not had_gwbridge:

                def gwbridge_gone() -> bool:
                    for network in docker_client.networks.list(names=["docker_gwbridge"]):
                        try:
                            network.remove()
                        except docker.errors.APIError:
                            return False  # endpoints of stopping containers still attached
                    return True

                wait_until(gwbridge_gone, 60, "docker_gwbridge removed", interval=1)


@dataclass
class Deployment(RenderedProject):
    client: docker.DockerClient
    ca: trustme.CA
    https_port: int
    outputs: list[str] = field(default_factory=list)

    def tempo_gen(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_tempo_gen(self.root, *args, timeout=600)
        self.outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def container(self, service: str) -> Container:
        """The running task container of a service."""
        found = self.client.containers.list(filters={"label": f"com.docker.swarm.service.name={self.name}_{service}"})
        assert found, f"no running task of {service}"
        return found[0]

    def healthy(self, service: str) -> bool:
        try:
            return bool(self.container(service).attrs["State"].get("Health", {}).get("Status") == "healthy")
        except AssertionError:
            return False

    def wait_healthy(self, *services: str) -> None:
        for service in services:
            wait_until(functools.partial(self.healthy, service), UP_TIMEOUT, f"{service} healthy", interval=2)

    def exec(self, service: str, *cmd: str, user: str = "") -> tuple[int, str]:
        code, out = self.container(service).exec_run(list(cmd), user=user, demux=False)
        assert code is not None, "exec_run waits for the exit code unless detached"
        assert isinstance(out, bytes | None), "not streamed"
        return code, (out or b"").decode(errors="replace")

    def secret_values(self) -> dict[str, str]:
        """Read back through the API's own copies: Swarm never returns a secret's value."""
        values: dict[str, str] = {}
        for name in ("db_password", "jwt_key"):
            code, out = self.exec("api", "cat", f"/run/secrets/{name}")
            assert code == 0, out
            values[name] = out.strip()
        return values

    def https(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], str | bytes]:
        return https_request("127.0.0.1", self.https_port, DOMAIN, self.ca, method, path, **kw)

    def swarm_secrets(self) -> list[str]:
        return sorted(s.name for s in self.client.secrets.list(filters={"label": f"{LABEL}={self.name}"}))


def profile_text(
    name: str, images: dict[str, str], endpoint_mode: str, http_port: int, https_port: int, tls: Path, logs: Path
) -> str:
    return f"""\
name: {name}
domain: {DOMAIN}
environment: development
deploy:
  mode: swarm
  endpoint_mode: {endpoint_mode}
tempo:
  allow_unpinned: true
  images:
    api: {images["api"]}
    frontend: {images["frontend"]}
    postgres: {images["postgres"]}
proxy:
  kind: nginx
  placement: container
  image: {images["nginx"]}
  nginx_version: "1.22"
  openssl_version: "3.0"
  publish_addresses: [0.0.0.0]
  http_port: {http_port}
  https_port: {https_port}
  tls:
    certificate:
      source: files
      cert_file: {tls}/fullchain.pem
      key_file: {tls}/privkey.pem
firewall:
  enabled: false
monitoring:
  access_log:
    dir: {logs}
"""


def header_commands(bundle: Path) -> list[list[str]]:
    """The build and deploy commands the stack file's header documents."""
    text = (bundle / "compose.yaml").read_text()
    return [shlex.split(line) for line in re.findall(r"^#   (docker (?:build|stack deploy) .+)$", text, re.M)]


@pytest.fixture(scope="module")
def deployed(
    swarm: None,
    docker_client: docker.DockerClient,
    standin_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    age_keys: dict[str, tuple[Path, str]],
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("swarm")
    name = f"e2e-swarm-{uuid.uuid4().hex[:6]}"
    # Images Swarm runs as they are get a tag no registry can serve (see generator/swarm.py image_name).
    images = dict(standin_images)
    local_tags = []
    for role in ("postgres", "nginx"):
        repository, tag = ("tempo-e2e.invalid/" + standin_images[role].split("/", 1)[1]).rsplit(":", 1)
        docker_client.images.get(standin_images[role]).tag(repository, tag)
        images[role] = f"{repository}:{tag}"
        local_tags.append(images[role])
    ca = trustme.CA()
    tls = site_certificate(ca, DOMAIN, root / "tls", UIDS["proxy"])
    (root / "profiles").mkdir()
    # The access log's host folder, as monitoring/install.sh makes it: owned by the proxy's uid.
    logs = root / "logs"
    logs.mkdir(mode=0o750)
    os.chown(logs, UIDS["proxy"], UIDS["proxy"])
    # Without the kernel's IPVS (ip_vs) Swarm's virtual IPs do not route; DNS round robin needs none.
    endpoint_mode = "vip" if Path("/proc/net/ip_vs").exists() else "dnsrr"
    https_port = free_port()
    (root / "profiles" / f"{name}.yaml").write_text(
        profile_text(name, images, endpoint_mode, free_port(), https_port, tls, logs)
        + f"backup:\n  dir: {root / 'backups'}\n  recipients: [{age_keys['right'][1]}]\n"
    )
    deployment = Deployment(root, name, docker_client, ca, https_port)
    built: list[str] = []
    try:
        deployment.tempo_gen("secrets", "init")
        deployment.tempo_gen("render")
        for command in header_commands(deployment.bundle):
            result = run(command, cwd=deployment.bundle)
            deployment.outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, f"{shlex.join(command)}:\n{result.stdout}\n{result.stderr}"
            if command[1] == "build":
                built.append(command[command.index("-t") + 1])
            else:
                assert "Ignoring" not in result.stdout + result.stderr, result.stdout + result.stderr
        deployment.wait_healthy("postgres", "api", "frontend", "proxy")
        yield deployment
    finally:
        _remove_stack(docker_client, name)
        for secret in docker_client.secrets.list(filters={"label": f"{LABEL}={name}"}):
            secret.remove()
        for image in (*built, *local_tags):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.images.remove(image, force=True)


def _remove_stack(client: docker.DockerClient, name: str) -> None:
    namespace: dict[str, str | list[str] | bool] = {"label": f"com.docker.stack.namespace={name}"}
    run(["docker", "stack", "rm", name], timeout=120)
    wait_until(
        lambda: not client.api.containers(all=True, filters=namespace), 120, f"{name}'s containers removed", interval=1
    )
    wait_until(lambda: not client.networks.list(filters=namespace), 60, f"{name}'s networks removed", interval=1)

    def volumes_removed() -> bool:
        for volume in client.volumes.list(filters=namespace):
            try:
                volume.remove(force=True)
            except docker.errors.APIError:
                return False
        return True

    wait_until(volumes_removed, 60, f"{name}'s volumes removed", interval=1)


def test_secrets_init_creates_labelled_secrets_once_and_prints_no_value(deployed: Deployment) -> None:
    init = deployed.outputs[0]
    assert f"created Swarm secret {deployed.name}_db_password_v1" in init
    assert f"created Swarm secret {deployed.name}_jwt_key_v1" in init
    assert deployed.swarm_secrets() == [f"{deployed.name}_db_password_v1", f"{deployed.name}_jwt_key_v1"]
    for secret in deployed.client.secrets.list(filters={"label": f"{LABEL}={deployed.name}"}):
        assert "com.docker.stack.namespace" not in secret.attrs["Spec"]["Labels"], "docker stack rm would delete it"
    again = deployed.tempo_gen("secrets", "init").stdout
    assert "created" not in again and again.count("kept") == 2
    assert deployed.tempo_gen("secrets", "check").stdout.strip() == "secrets: ok"
    assert not (deployed.root / "secrets").exists(), "no secret files in swarm mode"


@pytest.mark.parametrize("service", sorted(UIDS))
def test_each_service_holds_exactly_its_own_copy_of_its_secrets(deployed: Deployment, service: str) -> None:
    uid = UIDS[service]
    code, out = deployed.exec(service, "sh", "-c", "cd /run/secrets 2>/dev/null && stat -c '%n %u %g %a' *")
    listed = {line.split()[0]: line.split()[1:] for line in out.splitlines() if code == 0}
    assert listed == {name: [str(uid), str(uid), "400"] for name in SECRETS[service]}, out
    for name in SECRETS[service]:
        code, out = deployed.exec(service, "cat", f"/run/secrets/{name}", user="4242:4242")
        assert code != 0 and "Permission denied" in out, (service, name, out)


@pytest.mark.parametrize("service", sorted(UIDS))
def test_each_task_keeps_the_hardening_swarm_can_apply(deployed: Deployment, service: str) -> None:
    container = deployed.container(service)
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == f"{UIDS[service]}:{UIDS[service]}"
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"]["max-size"]
    code, out = deployed.exec(service, "sh", "-c", "cat /proc/[0-9]*/status")
    uids = [line.split()[1:] for line in out.splitlines() if line.startswith("Uid:")]
    assert uids and all(int(u) == UIDS[service] for row in uids for u in row), uids
    assert {line.split()[1] for line in out.splitlines() if line.startswith("CapEff:")} == {"0000000000000000"}
    code, out = deployed.exec(service, "sh", "-c", "echo x > /probe-write")
    assert code != 0 and "Read-only file system" in out
    # The tmpfs mounts that replace Compose's `tmpfs:` are there and writable by the service's uid.
    writable = {
        "postgres": ["/tmp", "/var/run/postgresql"],
        "api": ["/tmp"],
        "frontend": ["/tmp", "/app/.next/cache"],
        "proxy": ["/tmp"],
    }[service]
    for path in writable:
        script = f'grep -q " $(readlink -f {path}) tmpfs " /proc/mounts && touch {path}/.probe && echo OK'
        code, out = deployed.exec(service, "sh", "-c", script)
        assert "OK" in out, (service, path, out)


def _ready_inside(deployed: Deployment) -> str:
    """`<body> <status>` of GET /ready from inside the API task's network namespace, with the tools image."""
    probe = deployed.client.containers.run(
        "tempo-e2e/tools:latest",
        ["curl", "-sS", "-w", " %{http_code}", "--max-time", "10", "http://127.0.0.1:5001/ready"],
        network_mode=f"container:{deployed.container('api').id}",
        detach=True,
    )
    try:
        probe.wait(timeout=30)
        return probe.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        probe.remove(force=True)


def test_the_api_started_with_its_secrets(deployed: Deployment) -> None:
    ready = _ready_inside(deployed)
    assert ready.endswith(" 200"), f"the API reaches Postgres with the secret password: {ready!r}"
    status, _, body = deployed.https("GET", "/api/ready")
    assert status == 200, body
    status, _, _ = deployed.https("POST", "/api/auth/register", json_body=USER)
    assert status in (200, 400)
    status, headers, _ = deployed.https("POST", "/api/auth/login", json_body=USER)
    assert status == 200 and headers["set-cookie"].lower().startswith("authtoken="), "tokens are signed with jwt_key"


def test_a_backup_restores_onto_the_swarm_stack(deployed: Deployment, age_keys: dict[str, tuple[Path, str]]) -> None:
    """Through the services' tasks: execs on the engine that runs them, stop and start by scaling."""
    site = Origin("127.0.0.1", deployed.https_port, DOMAIN, deployed.ca)
    browser = TempoClient(NEWEST, site, page_origin=f"https://{DOMAIN}")
    if browser.request("GET", "/api/auth/registration-available").json()["registrationAvailable"]:
        assert browser.register(USER["username"], USER["password"]).status == 200
    browser.login(USER["username"], USER["password"])

    def upload(payload: bytes) -> str:
        workout = str(uuid.uuid4())
        reply = browser.request("POST", f"/api/workouts/{workout}/media", payload, {"Content-Type": "text/plain"})
        assert reply.status == 200, reply.body
        return f"/api/workouts/{workout}/media/{reply.json()['id']}"

    kept = upload(b"taken before the backup")
    deployed.tempo_gen("backup", str(deployed.profile))
    (name,) = os.listdir(deployed.root / "backups")
    later = upload(b"uploaded after the backup")
    api = deployed.container("api").id
    deployed.tempo_gen("restore", str(deployed.profile), name, "--identity", str(age_keys["right"][0]))
    assert deployed.container("api").id != api, "the API task was stopped and started again"
    browser = TempoClient(NEWEST, site, page_origin=f"https://{DOMAIN}")
    browser.login(USER["username"], USER["password"])
    assert browser.request("GET", kept).body == b"taken before the backup"
    assert browser.request("GET", later).status == 404, "the media are the backup's"


def test_secret_values_appear_nowhere(deployed: Deployment) -> None:
    values = deployed.secret_values()
    namespace: dict[str, str | list[str] | bool] = {"label": f"com.docker.stack.namespace={deployed.name}"}
    client = deployed.client
    places = {
        "docker service inspect": json.dumps([s.attrs for s in client.services.list(filters=namespace)]),
        "docker inspect (containers)": json.dumps(
            [c.attrs for c in client.containers.list(all=True, filters=namespace)]
        ),
        "docker secret inspect": json.dumps(
            [s.attrs for s in client.secrets.list(filters={"label": f"{LABEL}={deployed.name}"})]
        ),
        "container logs": "".join(
            c.logs().decode(errors="replace") for c in client.containers.list(all=True, filters=namespace)
        ),
        "out/": "".join(p.read_text(errors="replace") for p in deployed.bundle.rglob("*") if p.is_file()),
        "profile": deployed.profile.read_text(),
        "tempo-gen and docker output": "".join(deployed.outputs),
    }
    for place, text in places.items():
        for name, value in values.items():
            assert len(value) >= 32 and value not in text, f"{name} leaked into {place}"


def _login(deployed: Deployment) -> str:
    status, headers, _ = deployed.https("POST", "/api/auth/login", json_body=USER)
    assert status == 200
    return headers["set-cookie"].split(";")[0]


def test_rotation_moves_every_consumer_to_a_new_version(deployed: Deployment) -> None:
    deployed.https("POST", "/api/auth/register", json_body=USER)
    old_cookie, before = _login(deployed), deployed.secret_values()
    proxy = deployed.container("proxy").id
    for which in ("jwt", "db"):
        result = deployed.tempo_gen("secrets", "rotate", which, str(deployed.profile))
        assert "run `tempo-gen render`" in result.stdout
    deployed.wait_healthy("api", "postgres", "proxy")
    after = deployed.secret_values()
    assert after["jwt_key"] != before["jwt_key"] and after["db_password"] != before["db_password"]
    assert deployed.swarm_secrets() == [f"{deployed.name}_db_password_v2", f"{deployed.name}_jwt_key_v2"], (
        "old versions removed"
    )
    assert "  versions:\n    jwt_key: 2\n    db_password: 2\n" in deployed.profile.read_text()
    for service in ("api", "postgres"):
        test_each_service_holds_exactly_its_own_copy_of_its_secrets(deployed, service)
    status, _, _ = deployed.https("GET", "/api/auth/me", cookie=old_cookie)
    assert status == 401, "sessions signed with the old key end"
    status, _, _ = deployed.https("GET", "/api/auth/me", cookie=_login(deployed))
    assert status == 200
    # The proxy task was never replaced: it followed the API's new task through Docker's DNS.
    assert deployed.container("proxy").id == proxy
    # Postgres accepts the new password and no longer the old one.
    check = (
        "IFS= read -r PGPASSWORD; export PGPASSWORD; psql -X -tA --host=127.0.0.1 "
        '--username="$POSTGRES_USER" --dbname="$POSTGRES_DB" -c "select 1"'
    )
    for password, expected in ((after["db_password"], 0), (before["db_password"], 2)):
        postgres = deployed.container("postgres").id
        assert postgres is not None, "a listed container has an id"
        proc = subprocess.run(
            ["docker", "exec", "-i", postgres, "sh", "-c", check],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == expected, proc.stderr
    # The profile now names the versions that run: render, and redeploying changes nothing about the secrets.
    deployed.tempo_gen("render")
    assert f"name: {deployed.name}_jwt_key_v2" in (deployed.bundle / "compose.yaml").read_text()
    deploy = next(c for c in header_commands(deployed.bundle) if c[1] == "stack")
    result = run(deploy, cwd=deployed.bundle)
    assert result.returncode == 0, result.stderr
    deployed.wait_healthy("api")
    ready = _ready_inside(deployed)
    assert ready.endswith(" 200"), ready
    test_secret_values_appear_nowhere(deployed)


def test_docker_stack_rm_leaves_the_secrets(deployed: Deployment) -> None:
    _remove_stack(deployed.client, deployed.name)
    assert deployed.swarm_secrets() == [f"{deployed.name}_db_password_v2", f"{deployed.name}_jwt_key_v2"]
