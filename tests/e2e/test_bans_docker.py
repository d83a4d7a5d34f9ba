"""Bans on the real Docker engine: the proxy is a container whose 443 is published (DNATed and forwarded
by Docker's own iptables rules), and fail2ban on the host bans through the rendered ban table.

The rendered container nginx (the nginx stand-in image, uid 101) writes its JSON access log into a
bind-mounted host folder; real fail2ban on the host reads it with the rendered jails and bans into
the rendered nftables table, loaded in the host's namespace for the test and deleted afterwards.
Clients are namespaces behind veths we create, so only our own addresses are ever banned. IPv4 only:
this dockerd runs without IPv6 and forwards nothing over it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from docker.models.containers import Container

from support import nginx as nginx_support
from support.bans import CONNECT, STUB, assert_no_secrets, curl_args, read_log, regex_counts, run, write_fail2ban
from support.engine import unavailable
from support.proxy import DOMAIN, dev_profile, target_input_for, write_pair
from support.sandbox import Sandbox
from support.wait import wait_until
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.models.profile import Profile
from tempo_gen.policy.access_log import CONTAINER_LOG_DIR
from tempo_gen.policy.ports import API_PORT, FRONTEND_PORT
from tempo_gen.targets import nginx
from tempo_gen.targets.host import monitoring

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

FAILURES = 3
BAN_TIME = 8  # seconds
# Client -> (host-side veth address, client address); admin is inside firewall.admin_cidrs.
NETS = {
    "attacker": ("10.202.1.1", "10.202.1.2"),
    "bystander": ("10.202.2.1", "10.202.2.2"),
    "admin": ("10.202.3.1", "10.202.3.2"),
}
ADMIN = ["10.202.3.0/24"]


@pytest.fixture
def clients(network_namespaces: None) -> Iterator[dict[str, str]]:
    """One namespace per client, wired to the host by a veth; removed afterwards."""
    tag = f"tgb{os.getpid() % 100000}"
    made: dict[str, str] = {}
    try:
        for client, (host_ip, client_ip) in NETS.items():
            ns = made[client] = f"{tag}-{client}"
            host_if = f"{tag}{client[:2]}"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "addr", "add", f"{host_ip}/24", "dev", host_if)
            run("ip", "link", "set", host_if, "up")
            script = f"ip link set lo up; ip addr add {client_ip}/24 dev eth0; ip link set eth0 up; "
            run("ip", "netns", "exec", ns, "sh", "-ec", script + f"ip route add default via {host_ip}")
        yield made
    finally:
        for client, ns in made.items():
            subprocess.run(["ip", "link", "del", f"{tag}{client[:2]}"], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def ban_table() -> Iterator[None]:
    """The host's table inet tempo_gen_bans belongs to this test: refused if one exists, deleted after."""
    if not shutil.which("fail2ban-client") or not shutil.which("nft"):
        unavailable("fail2ban and nftables are needed (apt-get install fail2ban nftables)")
    if run("nft", "list", "table", "inet", "tempo_gen_bans", check=False).returncode == 0:
        unavailable("this host already has table inet tempo_gen_bans (a real deployment?): not touching it")
    yield
    subprocess.run(["nft", "delete", "table", "inet", "tempo_gen_bans"], capture_output=True, timeout=30)


def prepare(root: Path) -> tuple[Profile, monitoring.Runtime, list[RenderedFile]]:
    """The proxy's tree, its certificate and its log folder as install.sh leaves them (owned by the proxy's
    uid), and the ban table; the profile, the monitoring runtime and the monitoring files."""
    profile = nginx_support.for_local_nginx(
        dev_profile(
            "nginx",
            proxy={
                "placement": "container",
                "publish_addresses": [NETS["bystander"][0]],
                "tls": {"certificate": {"source": "files", "cert_file": "/tls/chain.pem", "key_file": "/tls/key.pem"}},
                "rate_limits": {"login_per_minute": 600, "login_burst": 100},
            },
            firewall={"admin_cidrs": ADMIN},
            monitoring={
                "access_log": {"dir": str(root / "logs")},
                "bans": {"login_failures": FAILURES, "ban_time": BAN_TIME, "find_time": 120},
            },
        )
    )
    target_input = target_input_for(profile)
    for file in nginx.files_for(target_input):
        if str(file.path).startswith(nginx.CONF_DIR + "/"):
            path = root / "conf" / str(file.path).removeprefix(nginx.CONF_DIR + "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(file.content)
    ca = trustme.CA()
    write_pair(ca, root / "tls" / "chain.pem", root / "tls" / "key.pem")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    uid = profile.containers.users.proxy
    runtime = monitoring.Runtime(log_file=monitoring.runtime_for(profile).log_file, install_dir=str(root / "install"))
    (root / "logs").mkdir()
    Path(runtime.log_file).touch()
    for path in (
        root / "tls",
        root / "tls" / "key.pem",
        root / "tls" / "chain.pem",
        root / "logs",
        Path(runtime.log_file),
    ):
        os.chown(path, uid, uid)
    files = monitoring.files_for(target_input, runtime)
    (root / "install").mkdir()
    bans = next(f for f in files if str(f.path) == "monitoring/bans.nft")
    (root / "install" / "bans.nft").write_text(bans.content)
    return profile, runtime, files


def start_proxy(sandbox: Sandbox, images: dict[str, str], root: Path, uid: int) -> Container:
    """The stub API and frontend, and the rendered nginx publishing 443 on every client's veth address."""
    for alias in ("api", "frontend"):
        sandbox.run(
            images["tools"], alias, command=["python3", "-c", STUB, "0.0.0.0", str(API_PORT), str(FRONTEND_PORT)]
        )
    return sandbox.run(
        images["nginx"],
        "proxy",
        user=f"{uid}:{uid}",
        environment={"TZ": "UTC"},
        volumes={
            str(root / "conf"): {"bind": "/etc/nginx", "mode": "ro"},
            str(root / "tls"): {"bind": "/tls", "mode": "ro"},
            str(root / "logs"): {"bind": CONTAINER_LOG_DIR, "mode": "rw"},
        },
        ports={"8443/tcp": [(host_ip, 443) for host_ip, _ in NETS.values()]},
    )


def start_fail2ban(root: Path, files: list[RenderedFile]) -> Path:
    f2b = write_fail2ban(root / "fail2ban", files)
    run("fail2ban-client", "-c", str(f2b), "-x", "-b", "start")
    status = ("fail2ban-client", "-c", str(f2b), "status")
    wait_until(lambda: "Number of jail:\t3" in run(*status, check=False).stdout, 20, "fail2ban's three jails")
    return f2b


def test_a_banned_client_cannot_reach_the_published_proxy(
    sandbox: Sandbox, standin_images: dict[str, str], clients: dict[str, str], ban_table: None
) -> None:
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"tempo-bans-docker-{os.getpid()}"
    root.mkdir(mode=0o755)
    f2b: Path | None = None
    try:
        profile, runtime, files = prepare(root)
        proxy = start_proxy(sandbox, standin_images, root, profile.containers.users.proxy)
        f2b = start_fail2ban(root, files)

        def connects(client: str) -> bool:
            host_ip = NETS[client][0]
            out = run("ip", "netns", "exec", clients[client], sys.executable, "-c", CONNECT, host_ip, "443", "1").stdout
            return out.strip() == "open"

        def request(client: str, method: str, path: str, body: str = "") -> int:
            args = curl_args(DOMAIN, NETS[client][0], 443, root / "ca.pem", method, path, body)
            return int(run("ip", "netns", "exec", clients[client], *args, check=False).stdout or 0)

        try:
            wait_until(lambda: request("bystander", "GET", "/") == 200, 30, "the published proxy to answer")
        except AssertionError:
            raise AssertionError(Sandbox.logs(proxy)) from None
        wrong = json.dumps({"password": "wrong-SECRETPASSWORD"})
        for _ in range(FAILURES + 2):
            assert request("admin", "POST", "/api/auth/login", wrong) == 401
        assert request("bystander", "POST", "/api/auth/login", '{"password": "right"}') == 200
        assert request("bystander", "GET", "/api/workouts") == 401
        for _ in range(FAILURES):
            assert request("attacker", "POST", "/api/auth/login", wrong) == 401
        last_failure = time.monotonic()

        wait_until(lambda: not connects("attacker"), 15, "the attacker to be banned", interval=0.1)
        seconds_to_ban = time.monotonic() - last_failure
        ban_v4 = run("nft", "list", "set", "inet", "tempo_gen_bans", "ban_v4").stdout
        assert NETS["attacker"][1] in ban_v4 and NETS["admin"][1] not in ban_v4
        assert request("bystander", "GET", "/") == 200
        assert connects("admin")
        # The drops happened on the forward hook: Docker DNATed the connection to the container.
        forward = run("nft", "list", "chain", "inet", "tempo_gen_bans", "forward").stdout
        dropped = re.search(r"@ban_v4 counter packets (\d+)", forward)
        assert dropped and int(dropped[1]) > 0, forward

        banned_at = time.monotonic()
        wait_until(lambda: connects("attacker"), BAN_TIME + 10, "the ban to end", interval=0.2)
        print(
            f"docker: banned {seconds_to_ban:.2f}s after the last failure, "
            f"reachable again after {time.monotonic() - banned_at + seconds_to_ban:.1f}s"
        )

        log_file = Path(runtime.log_file)
        lines = read_log(log_file)
        assert {line["client"] for line in lines} >= {ip for _, ip in NETS.values()}, "real client addresses"
        failed = [x for x in lines if x["path"] == "/api/auth/login" and x["status"] == 401]
        others = [x for x in lines if x not in failed]
        login_filter = f2b / "filter.d" / f"tempo-gen-{profile.name}-login.conf"
        assert regex_counts(log_file, login_filter, failed, root / "failed.log") == (len(failed), len(failed))
        assert regex_counts(log_file, login_filter, others, root / "others.log")[0] == 0
        assert_no_secrets(log_file)
    finally:
        if f2b is not None:
            subprocess.run(["fail2ban-client", "-c", str(f2b), "stop"], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
