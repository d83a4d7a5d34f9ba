"""The rendered bundle, brought up on the real engine: every hardening promise checked from outside and inside.

One stack per module (bringing it up is the slow part); tests that disturb it
(restart, kill, rotation) run last, in file order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import trustme
from docker.models.containers import Container

from support.engine import compose, service_container, unavailable
from support.project import run_tempo_gen
from support.proxy import free_port
from support.tempo_client import Origin, Response, TempoClient, write_zip
from support.tls_client import https_request, plain_request, site_certificate
from support.wait import wait_until
from tempo_gen.policy.ports import IMPORT_PORT
from tempo_gen.policy.releases import NEWEST, SUPPORTED, release

from .images.build import release_images

DOMAIN = "tempo.test"
UIDS = {"postgres": 70, "api": 1654, "frontend": 1000, "proxy": 101}
# Every uid field set away from its image's default: the bundle must still come up (built images own
# their folders by these uids, secrets init gives the secret files to them).
OWN_UIDS = {"postgres": 2570, "api": 2571, "frontend": 2572, "proxy": 2567}
UP_TIMEOUT = 300
OLDEST = SUPPORTED[0]
USER = "runner"
PASSWORD = "correct horse battery staple"  # Tempo's policy: 16 to 64 characters
LOGIN = {"username": USER, "password": PASSWORD}
EXPORT_BYTES = 200 * 1024 * 1024
LOGIN_TRIES, LOGIN_SLOT = 8, 13  # the default login limit frees a slot every 12 s


def tempo_gen(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tempo_gen(project, *args, timeout=600)


def _past_the_login_limit(send: Callable[[], Response]) -> Response:
    """`send` a login request, waiting (bounded) for a slot while the proxy answers 429.

    Every test logs in from the host's one address, so the proxy's login limit (5/minute,
    5 at once) is shared by all of them: a 429 here is that limit working, and the client
    waits for its next slot as a patient user would."""
    for _ in range(LOGIN_TRIES):
        reply = send()
        if reply.status != 429:
            break
        time.sleep(LOGIN_SLOT)
    return reply


def profile_text(
    name: str,
    kind: str,
    images: dict[str, str],
    address: str,
    http_port: int,
    https_port: int,
    tls: Path,
    uids: dict[str, int] = UIDS,
    version: str = NEWEST,
    logs: Path | None = None,
) -> str:
    users = "".join(f"    {service}: {uid}\n" for service, uid in uids.items() if UIDS[service] != uid)
    return (
        f"""\
name: {name}
domain: {DOMAIN}
environment: development
tempo:
  version: {version}
  allow_unpinned: true
  images:
    api: {release_images(version)["api"]}
    frontend: {release_images(version)["frontend"]}
    postgres: {images["postgres"]}
proxy:
  kind: {kind}
  placement: container
  image: {images[kind]}
  nginx_version: "1.22"
  openssl_version: "3.0"
  publish_addresses: [{address}]
  http_port: {http_port}
  https_port: {https_port}
  tls:
    certificate:
      source: files
      cert_file: {tls}/fullchain.pem
      key_file: {tls}/privkey.pem
firewall:
  enabled: false
"""
        + (f"monitoring:\n  access_log:\n    dir: {logs}\n" if logs else "")
        + (f"containers:\n  users:\n{users}" if users else "")
    )


class World:
    """A network namespace standing for the outside world, wired to the host by a veth pair.

    The host side is the address the proxy publishes on; the namespace routes
    everything through the host, as a client on the internet would."""

    HOST, CLIENT = "10.203.0.1", "10.203.0.2"

    def __init__(self, tag: str) -> None:
        self.netns = f"tempo-e2e-world-{tag}"
        self.host_if, self.world_if = f"te2e{tag[:4]}h", f"te2e{tag[:4]}w"
        commands = [
            ["ip", "netns", "add", self.netns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.world_if],
            ["ip", "link", "set", self.world_if, "netns", self.netns],
            ["ip", "addr", "add", f"{self.HOST}/30", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", self.netns, "addr", "add", f"{self.CLIENT}/30", "dev", self.world_if],
            ["ip", "-n", self.netns, "link", "set", self.world_if, "up"],
            ["ip", "-n", self.netns, "link", "set", "lo", "up"],
            ["ip", "-n", self.netns, "route", "add", "default", "via", self.HOST],
        ]
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, timeout=120)

    def connects(self, host: str, port: int) -> bool:
        """Whether a TCP connection from the world namespace succeeds within 3 s."""
        code = (
            "import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
            "except OSError:\n sys.exit(1)"
        )
        return (
            subprocess.run(
                ["ip", "netns", "exec", self.netns, sys.executable, "-c", code, host, str(port)],
                capture_output=True,
                timeout=30,
            ).returncode
            == 0
        )

    def listen(self, port: int) -> subprocess.Popen[bytes]:
        """A TCP listener in the world namespace, answering every connection (stop it with .kill())."""
        code = (
            "import socket,sys\ns=socket.create_server(('0.0.0.0', int(sys.argv[1])))\n"
            "while True:\n c,_=s.accept(); c.sendall(b'world\\n'); c.close()"
        )
        listener = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", code, str(port)])
        wait_until(lambda: self.connects(self.CLIENT, port), 10, "the world listener")
        return listener

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=120)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=120)


class ComposeProject:
    """A rendered e2e project and its running Compose stack."""

    def __init__(
        self,
        root: Path,
        name: str,
        kind: str,
        client: docker.DockerClient,
        ca: trustme.CA,
        world: World,
        http_port: int,
        https_port: int,
        uids: dict[str, int],
        version: str,
    ) -> None:
        self.root, self.name, self.kind, self.client, self.ca, self.world = root, name, kind, client, ca, world
        self.uids, self.version = uids, version
        self.http_port, self.https_port = http_port, https_port
        self.bundle = root / "out" / name
        self.profile = root / "profiles" / f"{name}.yaml"

    def compose(self, *args: str, timeout: float = UP_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
        return compose(self.bundle, "-f", "compose.yaml", *args, project_name=self.name, timeout=timeout, check=check)

    def up(self) -> None:
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 300)

    def container(self, service: str) -> Container:
        return service_container(self.client, self.name, service)

    def exec(self, service: str, *cmd: str, user: str | None = None) -> tuple[int, str]:
        code, out = self.container(service).exec_run(list(cmd), user=user or "", demux=False)
        assert code is not None, "exec_run waits for the exit code unless detached"
        assert isinstance(out, bytes | None), "not streamed"
        return code, (out or b"").decode(errors="replace")

    def https(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], str | bytes]:
        return https_request(World.HOST, self.https_port, DOMAIN, self.ca, method, path, **kw)

    def browser(self) -> TempoClient:
        """A browser of this release's web app on the site, from the host (the page's origin is the site's
        name alone, as CORS__AllowedOrigins has it; the test publishes HTTPS on a free port)."""
        site = Origin(World.HOST, self.https_port, DOMAIN, self.ca)
        return TempoClient(self.version, site, page_origin=f"https://{DOMAIN}")

    def login(self, browser: TempoClient, password: str = PASSWORD) -> int:
        """Log `browser` in as the one account (registered first if Tempo has none yet); the status."""
        if browser.request("GET", "/api/auth/registration-available").json()["registrationAvailable"]:
            assert browser.register(USER, PASSWORD).status == 200
        credentials = {"username": USER, "password": password}
        reply = _past_the_login_limit(lambda: browser.send_json("POST", "/api/auth/login", credentials))
        if reply.status == 200:
            browser.cookie = reply.headers["set-cookie"].split(";", 1)[0]
        return reply.status

    def signed_in(self, password: str = PASSWORD) -> TempoClient:
        """A browser signed in as the one account."""
        browser = self.browser()
        assert self.login(browser, password) == 200
        return browser

    def tempo_gen(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`tempo-gen ARGS PROFILE` on this project, `stdin` as its standard input."""
        return run_tempo_gen(self.root, *args, str(self.profile), timeout=600, stdin=stdin)

    def secret_values(self) -> dict[str, str]:
        folder = self.root / "secrets" / self.name
        return {name: (folder / name).read_text().strip() for name in ("db_password", "jwt_key")}

    def wait_healthy(self, service: str) -> None:
        def healthy() -> bool:
            container = self.container(service)
            return bool(container.attrs["State"].get("Health", {}).get("Status") == "healthy")

        wait_until(healthy, UP_TIMEOUT, f"{service} healthy")


# Both proxies on the newest and the oldest supported release; the oldest also with every uid moved.
STACKS = {
    f"nginx-{NEWEST}": ("nginx", NEWEST, UIDS),
    f"traefik-{NEWEST}": ("traefik", NEWEST, UIDS),
    f"nginx-{OLDEST}-own-uids": ("nginx", OLDEST, OWN_UIDS),
    f"traefik-{OLDEST}-own-uids": ("traefik", OLDEST, OWN_UIDS),
}


@pytest.fixture(scope="module", params=list(STACKS))
def stack(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    standin_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    network_namespaces: None,
) -> Iterator[ComposeProject]:
    kind, version, uids = STACKS[request.param]
    root = tmp_path_factory.mktemp(f"stack-{kind}")
    tag = uuid.uuid4().hex[:8]
    name = f"e2e-{tag}"
    ca = trustme.CA()
    tls = site_certificate(ca, DOMAIN, root / "tls", uids["proxy"])
    (root / "profiles").mkdir()
    # The access log's host folder, as monitoring/install.sh makes it: owned by the proxy's uid.
    log_dir = root / "logs"
    log_dir.mkdir(mode=0o750)
    os.chown(log_dir, uids["proxy"], uids["proxy"])
    http_port, https_port = free_port(), free_port()
    (root / "profiles" / f"{name}.yaml").write_text(
        profile_text(name, kind, standin_images, World.HOST, http_port, https_port, tls, uids, version, log_dir)
    )
    for command in (("secrets", "init"), ("render",)):
        result = tempo_gen(root, *command)
        assert result.returncode == 0, result.stdout + result.stderr
    world = World(tag)
    running = ComposeProject(root, name, kind, docker_client, ca, world, http_port, https_port, uids, version)
    try:
        running.up()
        yield running
    finally:
        logs = running.compose("logs", "--no-color", check=False, timeout=60)
        (root / "compose.log").write_text(logs.stdout + logs.stderr)
        running.compose("down", "-v", "--rmi", "local", "--remove-orphans", check=False, timeout=180)
        world.close()


SERVICES = sorted(UIDS)


def test_every_service_is_healthy_and_runs_what_was_rendered(stack: ComposeProject) -> None:
    for service in SERVICES:
        container = stack.container(service)
        assert container.attrs["State"]["Health"]["Status"] == "healthy", service
    # Compose labels each container with the hash of its service's config: what ran is what was rendered.
    hashes = stack.compose("config", "--hash", "*").stdout.split()
    expected = dict(zip(hashes[0::2], hashes[1::2], strict=True))
    for service in SERVICES:
        assert stack.container(service).labels["com.docker.compose.config-hash"] == expected[service], service


@pytest.mark.parametrize("service", SERVICES)
def test_container_is_non_root_capless_read_only_and_limited(stack: ComposeProject, service: str) -> None:
    container = stack.container(service)
    host = container.attrs["HostConfig"]
    uid = stack.uids[service]
    assert container.attrs["Config"]["User"] == f"{uid}:{uid}"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert host["LogConfig"]["Config"]["max-size"]
    # Every process in the container, from the kernel's view.
    code, out = stack.exec(service, "sh", "-c", "cat /proc/[0-9]*/status")
    assert code == 0, out
    uids = [line.split()[1:] for line in out.splitlines() if line.startswith("Uid:")]
    assert uids and all(int(u) == uid for row in uids for u in row), uids
    cap_eff = [line.split()[1] for line in out.splitlines() if line.startswith("CapEff:")]
    assert cap_eff and set(cap_eff) == {"0000000000000000"}
    assert all(line.split()[1] == "1" for line in out.splitlines() if line.startswith("NoNewPrivs:"))
    code, out = stack.exec(service, "sh", "-c", "echo x > /probe-write")
    assert code != 0 and "Read-only file system" in out


def _addresses(stack: ComposeProject, service: str) -> list[str]:
    return [n["IPAddress"] for n in stack.container(service).attrs["NetworkSettings"]["Networks"].values()]


def test_from_outside_only_the_proxy_answers(stack: ComposeProject) -> None:
    world = stack.world
    assert world.connects(World.HOST, stack.http_port) and world.connects(World.HOST, stack.https_port)
    # Releases before 2.7 upload imports to port 5001 of the site: the proxy's import listener answers there.
    import_port = release(stack.version).import_port
    assert world.connects(World.HOST, IMPORT_PORT) == import_port
    for port in (22, 3000, 3004, 5432):
        assert not world.connects(World.HOST, port), f"the host answers on {port}"
    # Routed through the host straight at the containers: Docker drops it.
    for service, port in (("postgres", 5432), ("api", 5001), ("frontend", 3000)):
        for address in _addresses(stack, service):
            assert not world.connects(address, port), f"{service} reachable from outside at {address}:{port}"


def _probe_in(stack: ComposeProject, service: str, script: str) -> str:
    """Output of `script` run by the tools image inside `service`'s network namespace."""
    output = stack.client.containers.run(
        "tempo-e2e/tools:latest",
        ["sh", "-c", script],
        network_mode=f"container:{stack.container(service).id}",
        remove=True,
        stdout=True,
        stderr=True,
    )
    return output.decode()


def test_the_proxy_cannot_reach_postgres(stack: ComposeProject) -> None:
    postgres = _addresses(stack, "postgres")
    reach = " ; ".join(f"nc -z -w 3 {address} 5432 && echo REACHED {address}" for address in postgres)
    assert "REACHED" not in _probe_in(stack, "proxy", f"{reach} ; nc -z -w 3 postgres 5432 && echo REACHED ; true")
    # The control: the same probe from the API's namespace does reach Postgres.
    assert "REACHED" in _probe_in(stack, "api", reach)


def test_the_backend_network_has_no_route_out(stack: ComposeProject) -> None:
    world_port = free_port()
    listener = stack.world.listen(world_port)
    try:
        reach = f"nc -w 3 {World.CLIENT} {world_port} < /dev/null ; true"
        assert "world" in _probe_in(stack, "api", reach), "control: the API's egress network reaches the world"
        assert "world" not in _probe_in(stack, "postgres", reach), "the database network reached the world"
    finally:
        listener.kill()
        listener.wait(timeout=10)


def test_https_redirect_headers_and_a_secure_login_cookie(stack: ComposeProject) -> None:
    status, headers, _ = plain_request(World.HOST, stack.http_port, DOMAIN, "GET", "/workouts?page=2")
    assert status == {"nginx": 308, "traefik": 301}[stack.kind]  # Traefik's permanent redirect: 301 for GET
    assert headers["location"] == f"https://{DOMAIN}:{stack.https_port}/workouts?page=2"
    status, headers, body = stack.https("GET", "/")
    assert status == 200 and "Tempo" in body
    for name in (
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
        "permissions-policy",
    ):
        assert name in headers, name
    assert headers.get("server", "nginx") == "nginx" and "x-powered-by" not in headers
    status, _, _ = stack.https("POST", "/api/auth/register", json_body=LOGIN)
    assert status in (200, 400)
    status, headers, _ = stack.https("POST", "/api/auth/login", json_body=LOGIN)
    assert status == 200
    cookie = headers["set-cookie"].lower()
    assert cookie.startswith("authtoken=") and "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_secrets_reach_only_the_services_that_need_them(stack: ComposeProject) -> None:
    for service in ("api", "postgres"):
        code, out = stack.exec(service, "sh", "-c", "cat /run/secrets/db_password > /dev/null && echo READ")
        assert "READ" in out, (service, out)
    for service, secret in (("api", "jwt_key"), ("api", "db_password"), ("postgres", "db_password")):
        code, out = stack.exec(service, "cat", f"/run/secrets/{secret}", user="4242:4242")
        assert code != 0 and "Permission denied" in out, (service, secret)
    for service in ("frontend", "proxy"):
        code, out = stack.exec(service, "sh", "-c", "ls /run/secrets 2>&1; cat /run/secrets/* 2>&1")
        assert all(value not in out for value in stack.secret_values().values()), service


def test_secret_values_appear_nowhere(stack: ComposeProject) -> None:
    values = stack.secret_values()
    places = {
        "docker inspect": json.dumps(
            [
                c.attrs
                for c in stack.client.containers.list(
                    all=True, filters={"label": f"com.docker.compose.project={stack.name}"}
                )
            ]
        ),
        "docker compose config": stack.compose("config").stdout,
        "container logs": stack.compose("logs", "--no-color").stdout,
        "out/": "".join(p.read_text(errors="replace") for p in stack.bundle.rglob("*") if p.is_file()),
    }
    for place, text in places.items():
        for name, value in values.items():
            assert value not in text, f"{name} leaked into {place}"


def _login_and_upload(stack: ComposeProject) -> tuple[str, str, bytes]:
    cookie = _cookie(stack)
    workout = str(uuid.uuid4())
    payload = os.urandom(256 * 1024)
    status, _, body = stack.https(
        "POST", f"/api/workouts/{workout}/media", body=payload, cookie=cookie, content_type="application/octet-stream"
    )
    assert status == 200, body
    media_id = json.loads(body)["id"]
    return workout, media_id, payload


def _media(stack: ComposeProject, workout: str, media_id: str, cookie: str) -> bytes:
    status, _, body = stack.https("GET", f"/api/workouts/{workout}/media/{media_id}", cookie=cookie, raw=True)
    assert status == 200
    assert isinstance(body, bytes), "raw=True"
    return body


def _cookie(stack: ComposeProject) -> str:
    browser = stack.browser()
    assert stack.login(browser) == 200, "the user survived"
    browser.close()
    assert browser.cookie is not None
    return browser.cookie


def _status(stack: ComposeProject, path: str) -> int | None:
    """The status of GET `path` through the proxy; None when the connection fails."""
    try:
        status: int = stack.https("GET", path)[0]
        return status
    except OSError:
        return None


def _shared_network(stack: ComposeProject, service: str) -> str:
    """The network the proxy reaches `service` on."""
    proxy = stack.container("proxy").attrs["NetworkSettings"]["Networks"]
    return str(next(name for name in stack.container(service).attrs["NetworkSettings"]["Networks"] if name in proxy))


def test_health_and_readiness_follow_the_release(stack: ComposeProject) -> None:
    tempo = release(stack.version)
    status, _, body = stack.https("GET", "/api/ready")
    assert status == (200 if tempo.api_ready else 404), body
    status, _, body = stack.https("GET", "/health")
    assert (status, "healthy" in str(body)) == ((200, True) if tempo.frontend_health else (404, False))


@pytest.fixture(scope="module")
def strava_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200 MiB Strava export: a valid ZIP of incompressible data."""
    return write_zip(tmp_path_factory.mktemp("export") / "export_12345678.zip", EXPORT_BYTES)


def test_a_browser_imports_a_200_mb_export_through_the_proxy(stack: ComposeProject, strava_export: Path) -> None:
    """As this release's web app does it: about 400 chunk PUTs at full speed, never a 429 or a 413, and
    the archive unzipped on the API's disk temp volume, not its 64 MiB tmpfs."""
    browser = stack.signed_in()
    try:
        result = browser.upload_export(strava_export, import_port=IMPORT_PORT)
    finally:
        browser.close()
    assert 429 not in result.statuses and 413 not in result.statuses, sorted(set(result.statuses))
    if release(stack.version).import_port:
        # One cross-origin POST to the proxy's import listener, answered with the API's CORS permission.
        assert result.mode == "direct" and result.cors_allowed, result.final
        return
    assert result.final["status"] == "completed", result.final
    assert result.chunks == EXPORT_BYTES // (512 * 1024)
    # The staging under the media root goes once the job completed (Tempo removes it after marking it so).
    wait_until(lambda: not stack.exec("api", "find", "/app/media/imports", "-type", "f")[1].strip(), 30, "no staging")


def test_login_guessing_gets_429_after_five_tries(stack: ComposeProject) -> None:
    """From another client address than the other tests (the world namespace), ten wrong passwords in a row."""
    ca_file = stack.root / "ca.pem"
    stack.ca.cert_pem.write_to_path(str(ca_file))
    script = (
        "import json, socket, ssl, sys\n"
        "ca, address, port, host = sys.argv[1:]\n"
        "ctx = ssl.create_default_context(cafile=ca)\n"
        "body = json.dumps({'username': 'runner', 'password': 'not the password at all'}).encode()\n"
        "head = f'POST /api/auth/login HTTP/1.1\\r\\nHost: {host}\\r\\nContent-Type: application/json\\r\\n'\n"
        "head += f'Content-Length: {len(body)}\\r\\nConnection: close\\r\\n\\r\\n'\n"
        "codes = []\n"
        "for _ in range(10):\n"
        "    with ctx.wrap_socket(socket.create_connection((address, int(port)), 10), server_hostname=host) as s:\n"
        "        s.sendall(head.encode() + body)\n"
        "        data = b''\n"
        "        while chunk := s.recv(65536):\n"
        "            data += chunk\n"
        "    codes.append(int(data.split(b' ', 2)[1]))\n"
        "print(json.dumps(codes))\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", stack.world.netns, sys.executable, "-c", script]
        + [str(ca_file), World.HOST, str(stack.https_port), DOMAIN],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    codes = json.loads(result.stdout)
    assert codes[:5] == [401] * 5, codes
    assert 429 in codes[5:7] and codes[-1] == 429, codes


def test_reset_password_takes_a_new_password_and_ends_every_session(stack: ComposeProject) -> None:
    tempo = release(stack.version)
    new_password = "a brand new password, 16-64 chars"
    if "reset-password" not in tempo.host_commands:
        result = stack.tempo_gen("admin", "reset-password", stdin=f"{new_password}\n")
        assert result.returncode == 2 and "no reset-password command" in result.stderr, result.stderr
        return
    browser = stack.signed_in()
    try:
        assert browser.me().status == 200
        result = stack.tempo_gen("admin", "reset-password", "--username", USER, stdin=f"{new_password}\n")
        assert result.returncode == 0, result.stdout + result.stderr
        assert new_password not in result.stdout + result.stderr
        assert browser.me().status == 401, "the session from before the reset still works"
    finally:
        browser.close()
    renewed = stack.browser()
    try:
        assert stack.login(renewed, PASSWORD) == 401, "the old password still works"
        assert stack.login(renewed, new_password) == 200 and renewed.me().status == 200
    finally:
        renewed.close()
    # The password never reached a command line or an environment that `docker inspect` shows.
    api = stack.container("api")
    assert new_password not in json.dumps(api.attrs)
    back = stack.tempo_gen("admin", "reset-password", "--username", USER, stdin=f"{PASSWORD}\n")
    assert back.returncode == 0, back.stderr


def test_rotation_waits_for_an_import_in_progress(stack: ComposeProject) -> None:
    if release(stack.version).import_port:
        pytest.skip(f"Tempo {stack.version} imports in one request: there is no import job to wait for")
    browser = stack.signed_in()
    try:
        created = browser.send_json(
            "POST", "/api/workouts/import/jobs", {"kind": "strava_bulk", "filename": "e.zip", "byteSize": 1 << 20}
        )
        assert created.status == 201, created.body
        job = f"/api/workouts/import/jobs/{created.json()['id']}"
        chunk = browser.request("PUT", f"{job}/chunks/0?total=2", os.urandom(512 * 1024))
        assert chunk.status == 200, chunk.body
        api = stack.container("api").id
        result = stack.tempo_gen("secrets", "rotate", "jwt")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "import is in progress" in result.stderr and "every session ends" in result.stdout
        assert stack.container("api").id == api, "the API was restarted anyway"
        assert browser.request("DELETE", job).status in (200, 204)
    finally:
        browser.close()


def test_the_proxy_follows_a_recreated_api_to_its_new_address(
    stack: ComposeProject, standin_images: dict[str, str]
) -> None:
    """A rotation, an upgrade or a crash replacement recreates the API; Docker may give it another
    address. The proxy is not touched: it re-resolves `api` and answers 200 again within seconds."""
    proxy = stack.container("proxy")
    started = proxy.attrs["State"]["StartedAt"]
    network = _shared_network(stack, "api")
    old = stack.container("api").attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    stack.compose("rm", "--stop", "--force", "api", timeout=120)
    # The engine hands out the lowest free address: a placeholder takes the API's old one.
    placeholder = stack.client.containers.run(
        standin_images["tools"], ["sleep", "600"], detach=True, network=network, read_only=True, cap_drop=["ALL"]
    )
    try:
        stack.compose("up", "-d", "--no-deps", "api", timeout=UP_TIMEOUT)
        stack.wait_healthy("api")
        new = stack.container("api").attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        assert new != old, "the recreated API kept its address; the test proves nothing"
        wait_until(lambda: _status(stack, "/api/health") == 200, 30, "a 200 from the recreated API", interval=1)
    finally:
        placeholder.remove(force=True)
    # The same proxy container, never restarted: nothing but its own resolver followed the move.
    after = stack.container("proxy")
    assert after.id == proxy.id and after.attrs["State"]["StartedAt"] == started
    assert after.attrs["RestartCount"] == 0


def test_nothing_is_lost_across_down_up_and_a_killed_api(stack: ComposeProject) -> None:
    workout, media_id, payload = _login_and_upload(stack)
    stack.compose("down", timeout=180)
    stack.up()
    assert _media(stack, workout, media_id, _cookie(stack)) == payload
    api = stack.container("api")
    restarts = api.attrs["RestartCount"]
    os.kill(api.attrs["State"]["Pid"], signal.SIGKILL)  # a crash, not a `docker stop`
    wait_until(lambda: stack.container("api").attrs["RestartCount"] > restarts, 60, "the API restarted")
    stack.wait_healthy("api")
    assert _media(stack, workout, media_id, _cookie(stack)) == payload


ENTRYPOINT_REFUSALS = [
    ("jwt_key", None, "secret 'jwt_key' is missing"),
    ("jwt_key", "", "secret 'jwt_key' is empty"),
    ("jwt_key", "x" * 31, "secret 'jwt_key' is shorter than 32 characters"),
    ("jwt_key", "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE", "secret 'jwt_key' is Tempo's placeholder"),
    ("db_password", "a" * 40 + ";Host=evil", "contains ; ' \" or ="),
]


@pytest.mark.parametrize(
    "secret, value, message", ENTRYPOINT_REFUSALS, ids=["missing", "empty", "short", "placeholder", "semicolon"]
)
def test_the_api_entrypoint_refuses_bad_secrets_without_printing_them(
    stack: ComposeProject, tmp_path: Path, secret: str, value: str | None, message: str
) -> None:
    good = stack.secret_values()
    mounts: dict[str, dict[str, str]] = {}
    for name in ("db_password", "jwt_key"):
        content = value if name == secret else good[name]
        if content is None:
            continue
        path = tmp_path / name
        path.write_text(content)
        os.chmod(path, 0o444)
        mounts[str(path)] = {"bind": f"/run/secrets/{name}", "mode": "ro"}
    api_image = stack.container("api").image
    assert api_image is not None and api_image.id is not None, "a created container has an image"
    image = api_image.id
    container = stack.client.containers.run(
        image,
        detach=True,
        volumes=mounts,
        read_only=True,
        user=f"{stack.uids['api']}:{stack.uids['api']}",
        network_mode="none",
        environment={"TEMPO_DB_HOST": "postgres", "TEMPO_DB_NAME": "tempo", "TEMPO_DB_USER": "tempo"},
    )
    try:
        assert container.wait(timeout=60)["StatusCode"] == 64
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert message in output, output
    assert all(v not in output for v in good.values()) and (not value or value not in output)


def test_a_failed_database_rotation_changes_nothing(stack: ComposeProject) -> None:
    before = stack.secret_values()
    stack.compose("stop", "postgres")
    try:
        result = tempo_gen(stack.root, "secrets", "rotate", "db", str(stack.profile))
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "postgres" in result.stderr and "not running" in result.stderr, result.stderr
    finally:
        stack.compose("start", "postgres")
    assert stack.secret_values() == before
    assert not (stack.root / "secrets" / stack.name / "db_password.next").exists()
    stack.wait_healthy("postgres")
    stack.wait_healthy("api")
    assert _cookie(stack)


def test_rotating_both_secrets_keeps_data_and_login(stack: ComposeProject) -> None:
    workout, media_id, payload = _login_and_upload(stack)
    before = stack.secret_values()
    old_cookie = _cookie(stack)
    for which in ("db", "jwt"):
        result = tempo_gen(stack.root, "secrets", "rotate", which, str(stack.profile))
        assert result.returncode == 0, result.stdout + result.stderr
        assert all(v not in result.stdout + result.stderr for v in (*before.values(), *stack.secret_values().values()))
    after = stack.secret_values()
    assert after["db_password"] != before["db_password"] and after["jwt_key"] != before["jwt_key"]
    stack.wait_healthy("api")
    status, _, _ = stack.https("GET", "/api/auth/me", cookie=old_cookie)
    assert status == 401, "sessions signed with the old key end"
    assert _media(stack, workout, media_id, _cookie(stack)) == payload
    # The database accepts the new password, and no longer the old one.
    check = (
        "IFS= read -r PGPASSWORD; export PGPASSWORD; psql -X -tA --host=127.0.0.1 "
        '--username="$POSTGRES_USER" --dbname="$POSTGRES_DB" -c "select 1"'
    )
    container = stack.container("postgres")
    assert container.id is not None, "a listed container has an id"
    for password, expected in ((after["db_password"], 0), (before["db_password"], 2)):
        proc = subprocess.run(
            ["docker", "exec", "-i", container.id, "sh", "-c", check],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == expected, proc.stderr


def test_the_access_log_reaches_the_host_and_feeds_the_login_filter(stack: ComposeProject) -> None:
    """The proxy container writes JSON lines into the bind-mounted host folder; the rendered fail2ban
    filter matches the failed login the real proxy logged, and nothing else; no secret is logged."""
    if shutil.which("fail2ban-regex") is None:
        unavailable("fail2ban is not installed (apt-get install fail2ban)")
    secrets = ("SECRETQUERY", "SECRETCOOKIE")
    path = "/api/auth/login?token=SECRETQUERY"
    body = {"username": "nobody", "password": "wrong-password"}
    log = stack.root / "logs" / "access.json"
    # Earlier tests logged too (their logins, the login-guessing test): only this test's lines count.
    earlier = len(log.read_text().splitlines()) if log.exists() else 0

    def ours() -> list[str]:
        return log.read_text().splitlines()[earlier:] if log.exists() else []

    browser = stack.browser()
    browser.cookie = "authToken=SECRETCOOKIE"
    try:
        assert _past_the_login_limit(lambda: browser.send_json("POST", path, body)).status == 401
    finally:
        browser.close()
    assert stack.https("GET", "/api/auth/me?token=SECRETQUERY")[0] == 401  # a 401 from another endpoint
    wait_until(lambda: "/api/auth/me" in "\n".join(ours()), 10, "the access log on the host")
    assert not any(secret in log.read_text() for secret in secrets)
    text = "\n".join(ours())
    lines = [json.loads(line) for line in text.splitlines()]
    fields = {"nginx": ("path", "status"), "traefik": ("RequestPath", "DownstreamStatus")}[stack.kind]
    assert all("?" not in line[fields[0]] for line in lines)
    failed = [n for n, line in enumerate(lines) if line[fields[0]] == "/api/auth/login" and line[fields[1]] == 401]
    assert len(failed) == 1, lines
    filter_file = stack.bundle / "monitoring" / "fail2ban" / "filter.d" / f"tempo-gen-{stack.name}-login.conf"
    raw = text.splitlines()
    for picked, expected in (([raw[failed[0]]], 1), ([x for n, x in enumerate(raw) if n not in failed], 0)):
        sample = stack.root / "sample.log"
        sample.write_text("\n".join(picked) + "\n")
        out = subprocess.run(
            ["fail2ban-regex", str(sample), str(filter_file)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert re.search(rf"^Lines: {len(picked)} lines, 0 ignored, {expected} matched", out, re.M), out
