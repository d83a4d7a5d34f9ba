"""Real packets through the rendered firewall.

A "server" namespace gets the rendered rules and listeners on the ports a Tempo
host has (22, 80, 443, 3004, 5001, 5432, UDP 51820). Behind an interface named
like a Docker bridge sits a "container" namespace, reached through DNAT rules
written the way Docker 20.10 writes them (iptables-nft): published ports and a
port published on 127.0.0.1. Clients inside and outside the admin CIDR, and one
behind the VPN interface, probe every port over IPv4 and IPv6; the measured
matrix must equal the profile's, pair for pair. A last test does the same
against the real Docker engine. Only addresses inside these namespaces (and
veths we create) are used: no packet leaves the machine.

Root and network namespaces are required: missing, the tests skip, or fail when CI=true.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack, overload

import pytest

from support.engine import unavailable
from support.wait import wait_until
from tempo_gen.models.profile import Profile
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.host import firewall, monitoring

if TYPE_CHECKING:
    from support.engine import EngineRecord

pytestmark = pytest.mark.netns

TIMEOUT = 30  # seconds any single command may take
PROBE_TIMEOUT = 1.5  # seconds a probe waits for a connection or a reply

# Client name -> (server-side interface, server address v4/v6, client address v4/v6).
LINKS = {
    "inside": ("ext-in", "10.200.1.1", "fd00:200:1::1", "10.200.1.10", "fd00:200:1::10"),
    "outside": ("ext-out", "10.200.2.1", "fd00:200:2::1", "10.200.2.10", "fd00:200:2::10"),
    "vpn": ("wg0", "10.200.3.1", "fd00:200:3::1", "10.200.3.10", "fd00:200:3::10"),
}
ADMIN = ["10.200.1.0/24", "fd00:200:1::/64"]
BRIDGE = "br-tgfw"  # matches Docker's br-* bridges
CONTAINER = ("10.200.9.2", "fd00:200:9::2")
HOST_TCP = (22, 80, 443, 3004, 5001, 5432)
VPN_PORT = 51820
STRAY = 8081  # a port published by mistake (not in the profile): nothing may reach it
CONTAINER_TCP = (8080, 8443, 8444, 3000, 18081)

# Docker-style publications per proxy placement: host port -> container port.
PUBLISHED = {
    "container": {80: 8080, 443: 8443, STRAY: 18081},
    "host": {STRAY: 18081},
}
LOOPBACK_PUBLISHED = {3004: 3000}  # like compose's 127.0.0.1:3004:3000
IMPORT = {"container": {5001: 8444}, "host": {}}
"""What a Tempo 2.1.x-2.6.x profile publishes besides: the proxy's import port (5001 to the container's 8444)."""

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # The proxy container publishes 80/443; SSH from the admin CIDR only.
    "container": {
        "proxy": {"placement": "container", "publish_addresses": ["10.200.1.1"]},
        "firewall": {"admin_cidrs": ADMIN},
    },
    # The proxy runs on the host, SSH only over the VPN, the site only for the inside network.
    "host": {
        "proxy": {"placement": "host"},
        "firewall": {"vpn": {"interface": "wg0", "port": VPN_PORT}, "web_cidrs": ADMIN},
    },
}

# What each profile allows, written out by hand: (client, target) -> who answers.
# Every pair not listed must fail.
ALLOWED = {
    "container": {
        **{(c, f"{f} tcp/80"): "ctr:8080" for c in LINKS for f in ("v4", "v6")},
        **{(c, f"{f} tcp/443"): "ctr:8443" for c in LINKS for f in ("v4", "v6")},
        ("inside", "v4 tcp/22"): "srv:22",
        ("inside", "v6 tcp/22"): "srv:22",
    },
    "host": {
        **{("inside", f"{f} tcp/{p}"): f"srv:{p}" for f in ("v4", "v6") for p in (80, 443)},
        **{(c, f"{f} udp/{VPN_PORT}"): f"srv:{VPN_PORT}" for c in LINKS for f in ("v4", "v6")},
        ("vpn", "v4 tcp/22"): "srv:22",
        ("vpn", "v6 tcp/22"): "srv:22",
    },
}


class RunOptions(TypedDict, total=False):
    """run()'s keyword arguments, which Lab passes on."""

    input: str | None
    check: bool
    env: dict[str, str] | None


def run(
    *cmd: str, input: str | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, **(env or {})}
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


@pytest.fixture(scope="module")
def netns_ready() -> None:
    if os.geteuid() != 0:
        unavailable("the firewall netns tests need root")
    missing = [t for t in ("ip", "nft", "iptables", "ip6tables", "iptables-restore", "setsid") if not shutil.which(t)]
    if missing:
        unavailable(f"missing tools: {', '.join(missing)}")
    name = f"tgfw{os.getpid()}-check"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        unavailable(f"cannot create a network namespace: {done.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", name], timeout=TIMEOUT)


class Lab:
    """Namespaces and processes of one test, all removed by close(), even after a failure."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"tgfw{os.getpid()}{tag}-"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []

    def ns(self, role: str) -> str:
        name = self.prefix + role
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        # No duplicate address detection: addresses are usable at once (nodad below too).
        self.sh(name, "sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0")
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def sh(self, ns: str, script: str, **kw: Unpack[RunOptions]) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, "sh", "-ec", script, **kw)

    def exec(self, ns: str, *cmd: str, **kw: Unpack[RunOptions]) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *cmd, **kw)

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        run("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, iface in ((ns_a, if_a), (ns_b, if_b)):
            run("ip", "-n", ns, "link", "set", iface, "up")

    def address(self, ns: str, iface: str, v4: str, v6: str) -> None:
        run("ip", "-n", ns, "addr", "add", v4, "dev", iface)
        run("ip", "-n", ns, "-6", "addr", "add", v6, "dev", iface, "nodad")

    def listen(self, ns: str, name: str, tcp: tuple[int, ...], udp: tuple[int, ...] = ()) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, name, json.dumps(tcp), json.dumps(udp)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(proc)
        assert proc.stdout is not None and proc.stderr is not None, "both are pipes"
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        if not ready or proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise AssertionError(
                f"listener {name} did not start: {proc.stderr.read() if proc.poll() is not None else ''}"
            )

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=TIMEOUT)


@pytest.fixture
def lab(netns_ready: None, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Lab]]:
    """Lab(tag) for the test, each closed after it."""
    labs: list[Lab] = []

    def make(tag: str = "") -> Lab:
        labs.append(Lab(tag or str(len(labs))))
        return labs[-1]

    yield make
    for item in labs:
        item.close()


LISTENER = r"""
import json, selectors, socket, sys
name, tcp, udp = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sel = selectors.DefaultSelector()
for proto, ports in (("tcp", tcp), ("udp", udp)):
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # one socket for IPv4 and IPv6
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        if proto == "tcp":
            s.listen(64)
        sel.register(s, selectors.EVENT_READ, (proto, port))
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        proto, port = key.data
        banner = f"{name}:{port}".encode()
        if proto == "tcp":
            conn, _ = key.fileobj.accept()
            conn.sendall(banner)
            conn.close()
        else:
            _, peer = key.fileobj.recvfrom(64)
            key.fileobj.sendto(banner, peer)
"""

PROBE = r"""
import concurrent.futures, json, socket, sys
timeout = float(sys.argv[1])
def probe(target):
    proto, host, port = target
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            if proto == "tcp":
                s.connect((host, port))
                return s.recv(64).decode()
            s.sendto(b"ping", (host, port))
            return s.recvfrom(64)[0].decode()
        except OSError:
            return None
targets = json.loads(sys.argv[2])
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""


def targets(client: str) -> dict[str, tuple[str, str, int]]:
    """Every (protocol, address, port) a client tries, by label."""
    _, v4, v6, _, _ = LINKS[client]
    result: dict[str, tuple[str, str, int]] = {}
    for family, address in (("v4", v4), ("v6", v6)):
        for port in (*HOST_TCP, STRAY):
            result[f"{family} tcp/{port}"] = ("tcp", address, port)
        result[f"{family} udp/{VPN_PORT}"] = ("udp", address, VPN_PORT)
    # The attack on ports published on 127.0.0.1: a neighbour routes 127.0.0.0/8 to the host.
    for port in LOOPBACK_PUBLISHED:
        result[f"127.0.0.1 tcp/{port}"] = ("tcp", "127.0.0.1", port)
    return result


def measure(clients: dict[str, str]) -> dict[tuple[str, str], str | None]:
    """Probe every target from every client at once; who answered each (client, target)."""
    running: dict[str, tuple[list[str], subprocess.Popen[str]]] = {}
    for client, ns in clients.items():
        labelled = targets(client)
        cmd = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            PROBE,
            str(PROBE_TIMEOUT),
            json.dumps(list(labelled.values())),
        ]
        running[client] = (
            list(labelled),
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        )
    matrix: dict[tuple[str, str], str | None] = {}
    for client, (labels, proc) in running.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        matrix.update({(client, label): answer for label, answer in zip(labels, json.loads(out), strict=True)})
    return matrix


def server_world(lab: Lab, placement: str, published: dict[int, int] | None = None) -> tuple[str, dict[str, str]]:
    """The server, its container and the clients, wired and listening; no firewall yet. `published`: Docker's
    publications (default: the placement's)."""
    srv, ctr = lab.ns("srv"), lab.ns("ctr")
    lab.sh(srv, "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    clients: dict[str, str] = {}
    for client, (server_if, s4, s6, c4, c6) in LINKS.items():
        ns = clients[client] = lab.ns(client)
        lab.veth(srv, server_if, ns, "eth0")
        lab.address(srv, server_if, f"{s4}/24", f"{s6}/64")
        lab.address(ns, "eth0", f"{c4}/24", f"{c6}/64")
        # Client side of the 127.0.0.0/8 attack: no loopback addresses, 127/8 routed to the server.
        lab.sh(
            ns,
            f"""
            ip route add default via {s4}
            ip -6 route add default via {s6}
            ip addr flush dev lo
            sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
            ip route add 127.0.0.0/8 via {s4}
        """,
        )
    lab.veth(srv, BRIDGE, ctr, "eth0")
    lab.address(srv, BRIDGE, "10.200.9.1/24", "fd00:200:9::1/64")
    lab.address(ctr, "eth0", f"{CONTAINER[0]}/24", f"{CONTAINER[1]}/64")
    lab.sh(ctr, "ip route add default via 10.200.9.1; ip -6 route add default via fd00:200:9::1")
    docker_style_nat(lab, srv, PUBLISHED[placement] if published is None else published)
    lab.listen(srv, "srv", HOST_TCP, (VPN_PORT,))
    lab.listen(ctr, "ctr", CONTAINER_TCP)
    return srv, clients


def docker_style_nat(lab: Lab, srv: str, published: dict[int, int]) -> None:
    """The NAT and DOCKER-USER chains as Docker 20.10 writes them through iptables-nft."""
    for family, binary, container in (
        (4, "iptables-restore", CONTAINER[0]),
        (6, "ip6tables-restore", f"[{CONTAINER[1]}]"),
    ):
        rules = [
            "*nat",
            ":DOCKER - [0:0]",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
            f"-A DOCKER -i {BRIDGE} -j RETURN",
        ]
        rules += [
            f"-A DOCKER ! -i {BRIDGE} -p tcp --dport {host} -j DNAT --to-destination {container}:{inner}"
            for host, inner in published.items()
        ]
        if family == 4:
            rules += [
                f"-A DOCKER -d 127.0.0.1/32 ! -i {BRIDGE} -p tcp --dport {host}"
                f" -j DNAT --to-destination {container}:{inner}"
                for host, inner in LOOPBACK_PUBLISHED.items()
            ]
        rules += [
            "COMMIT",
            "*filter",
            ":DOCKER-USER - [0:0]",
            "-A FORWARD -j DOCKER-USER",
            "-A DOCKER-USER -j RETURN",
            "COMMIT",
        ]
        lab.exec(srv, binary, input="\n".join(rules) + "\n")


def render_firewall(directory: Path, placement: str, version: str | None = None, **overrides: object) -> Path:
    """Render the firewall files of a test profile (Tempo `version`, default the newest) into directory; return it."""
    data: dict[str, Any] = {
        "name": "fwtest",
        "domain": "tempo.example.com",
        "environment": "production",
        "tempo": {"allow_unpinned": True, **({"version": version} if version else {})},
        **PROFILES[placement],
    }
    data["firewall"] = {**data["firewall"], **overrides}
    profile = Profile.model_validate(data)
    for file in firewall.files_for(TargetInput(profile, "tests/test_firewall_netns.py", "secrets")):
        path = directory / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
        path.chmod(file.mode)
    return directory / "firewall"


def load_layer(lab: Lab, srv: str, rules: Path, layer: str) -> None:
    if layer in ("full", "nftables"):
        lab.exec(srv, "nft", "-f", str(rules / "nftables.conf"))
    if layer in ("full", "docker-user"):
        lab.exec(srv, str(rules / "docker-user.sh"))
    if layer == "ufw":  # what ufw does with the after.rules blocks
        lab.exec(srv, "iptables-restore", "--noflush", str(rules / "ufw/after.rules"))
        lab.exec(srv, "ip6tables-restore", "--noflush", str(rules / "ufw/after6.rules"))


Matrix = dict[tuple[str, str], str | None]
"""(client, target) -> who answered (None: nobody)."""


def difference(measured: Matrix, expected: Matrix) -> str:
    rows = [
        f"  {client:8} {label:20} expected {expected[(client, label)]!s:10} got {answer}"
        for (client, label), answer in sorted(measured.items())
        if answer != expected[(client, label)]
    ]
    return "reachability differs from the profile:\n" + "\n".join(rows)


@pytest.mark.parametrize("placement", ["container", "host"])
@pytest.mark.parametrize("layer", ["none", "full", "nftables", "docker-user", "ufw"])
def test_reachability_matrix(lab: Callable[[str], Lab], tmp_path: Path, placement: str, layer: str) -> None:
    """`none` shows every listener reachable without rules (the harness works, the attack on
    127.0.0.1 included); `full` and `nftables` must give exactly the profile's matrix;
    `docker-user` and `ufw` filter forwarded traffic only, so only the container's rows change."""
    netns_lab = lab(placement[0])
    srv, clients = server_world(netns_lab, placement)
    rules = render_firewall(tmp_path, placement)
    load_layer(netns_lab, srv, rules, layer)

    measured = measure(clients)
    open_matrix: Matrix = {key: open_answer(placement, key[1]) for key in measured}
    profile: Matrix = {key: ALLOWED[placement].get(key) for key in measured}
    if layer == "none":
        expected = open_matrix
    elif layer in ("full", "nftables"):
        expected = profile
    else:  # forwarded to the container: the profile's answer; the host itself: unfiltered
        expected = {
            key: profile[key] if (open_matrix[key] or "").startswith("ctr:") else open_matrix[key] for key in measured
        }
    assert measured == expected, difference(measured, expected)


@pytest.mark.parametrize("placement", ["container", "host"])
@pytest.mark.parametrize("version", ["2.1.0", "2.10.1"])
def test_import_port_is_open_like_443_only_for_releases_that_use_it(
    lab: Callable[[str], Lab], tmp_path: Path, placement: str, version: str
) -> None:
    """Tempo 2.1.x-2.6.x browsers send bulk imports to port 5001: on those releases the proxy's import port is
    reachable exactly where 443 is (a container's publication, or the host proxy for web_cidrs); on 2.10.1 the
    same listener and publication stay unreachable."""
    netns_lab = lab(f"i{placement[0]}{version.split('.')[1]}")
    legacy = version == "2.1.0"
    srv, clients = server_world(netns_lab, placement, {**PUBLISHED[placement], **IMPORT[placement]})
    load_layer(netns_lab, srv, render_firewall(tmp_path, placement, version), "full")

    measured = measure(clients)
    expected: Matrix = {key: ALLOWED[placement].get(key) for key in measured}
    if legacy:
        for (client, label), answer in ALLOWED[placement].items():
            if label.endswith(" tcp/443"):  # whoever reaches 443 reaches the import port
                port = answer.replace("8443", "8444") if answer.startswith("ctr:") else "srv:5001"
                expected[(client, label.replace("tcp/443", "tcp/5001"))] = port
    assert measured == expected, difference(measured, expected)
    opened = {key for key, answer in measured.items() if answer and key[1].endswith("tcp/5001")}
    assert bool(opened) == legacy


def open_answer(placement: str, label: str) -> str:
    """Who answers a target when nothing filters."""
    address, proto_port = label.split(" ")
    port = int(proto_port.split("/")[1])
    if address == "127.0.0.1":
        return f"ctr:{LOOPBACK_PUBLISHED[port]}"
    if proto_port.startswith("tcp") and port in PUBLISHED[placement]:
        return f"ctr:{PUBLISHED[placement][port]}"
    return f"srv:{port}"


def test_loopback_guard_drops_before_nat(lab: Callable[[str], Lab], tmp_path: Path) -> None:
    """The raw-priority guard itself drops the forged 127.0.0.1 packets (not only the forward chain)."""
    netns_lab = lab("g")
    srv, clients = server_world(netns_lab, "host")
    rules = render_firewall(tmp_path, "host")
    netns_lab.exec(srv, "nft", "-f", str(rules / "nftables.conf"))
    measured = measure({"outside": clients["outside"]})
    assert measured[("outside", "127.0.0.1 tcp/3004")] is None
    listing = netns_lab.exec(srv, "nft", "list", "chain", "inet", "tempo_gen", "prerouting").stdout
    assert "counter packets 0 " not in listing, listing


def test_ssh_rate_limit_per_source(lab: Callable[[str], Lab], tmp_path: Path) -> None:
    """Beyond the burst, new SSH connections from one source are dropped; established ones are not affected."""
    netns_lab = lab("r")
    srv, clients = server_world(netns_lab, "container")
    rules = render_firewall(tmp_path, "container", ssh_rate="1/minute", ssh_burst=3)
    netns_lab.exec(srv, "nft", "-f", str(rules / "nftables.conf"))
    _, s4, s6, _, _ = LINKS["inside"]
    attempts = [("tcp", s4, 22)] * 8
    out = netns_lab.exec(
        clients["inside"], sys.executable, "-c", PROBE, str(PROBE_TIMEOUT), json.dumps(attempts)
    ).stdout
    answers = json.loads(out)
    # The burst passes (a retransmitted SYN may spend one token), the rest is dropped.
    assert 2 <= answers.count("srv:22") <= 4, answers
    assert answers.count(None) >= 4, answers
    # Per source: the same client's IPv6 address has its own budget.
    out = netns_lab.exec(
        clients["inside"], sys.executable, "-c", PROBE, str(PROBE_TIMEOUT), json.dumps([("tcp", s6, 22)])
    ).stdout
    assert json.loads(out) == ["srv:22"]


# ---- apply.sh: atomic load, and rollback unless confirmed ----

PREVIOUS = """table inet tempo_gen {
	chain previous_rules {
		type filter hook input priority filter; policy accept;
		tcp dport 2222 counter accept
	}
}
"""


def table(lab: Lab, ns: str) -> str | None:
    done = lab.exec(ns, "nft", "-s", "-t", "list", "table", "inet", "tempo_gen", check=False)
    return done.stdout if done.returncode == 0 else None


@overload
def apply_script(
    lab: Lab, ns: str, rules: Path, state: Path, *args: str, wait: Literal[True] = True
) -> subprocess.CompletedProcess[str]: ...
@overload
def apply_script(
    lab: Lab, ns: str, rules: Path, state: Path, *args: str, wait: Literal[False]
) -> subprocess.Popen[str]: ...
def apply_script(
    lab: Lab, ns: str, rules: Path, state: Path, *args: str, wait: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    cmd = ["ip", "netns", "exec", ns, str(rules / "apply.sh"), *args]
    env = {**os.environ, "TEMPO_FW_STATE": str(state)}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def watchers() -> Iterator[list[Path]]:
    """Kill apply.sh's detached watchers a test leaves behind (found by their command line)."""
    scripts: list[Path] = []
    yield scripts
    for pid in Path("/proc").iterdir():
        try:
            cmdline = (pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--expire" in cmdline and any(str(s).encode() in cmdline for s in scripts):
            os.kill(int(pid.name), signal.SIGKILL)


Server = tuple[Lab, str, Path, Path]
"""The server fixture: (lab, server namespace, rendered rules, apply.sh's state folder)."""


@pytest.fixture
def server(lab: Callable[[str], Lab], tmp_path: Path, watchers: list[Path]) -> Server:
    """A bare server namespace holding a previous table, plus the rendered rules."""
    netns_lab = lab("a")
    srv = netns_lab.ns("srv")
    netns_lab.exec(srv, "nft", "-f", "-", input=PREVIOUS)
    rules = render_firewall(tmp_path / "bundle", "container")
    watchers.append(rules / "apply.sh")
    return netns_lab, srv, rules, tmp_path / "state"


def test_apply_rolls_back_without_confirmation(server: Server) -> None:
    lab, srv, rules, state = server
    before = table(lab, srv)
    done = apply_script(lab, srv, rules, state, "--timeout", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not confirmed in time" in done.stderr
    assert table(lab, srv) == before


def test_apply_removes_a_table_that_did_not_exist(server: Server) -> None:
    lab, srv, rules, state = server
    lab.exec(srv, "nft", "delete", "table", "inet", "tempo_gen")
    done = apply_script(lab, srv, rules, state, "--timeout", "1")
    assert done.returncode == 1
    assert table(lab, srv) is None


def test_apply_keeps_rules_when_confirmed(server: Server) -> None:
    lab, srv, rules, state = server
    proc = apply_script(lab, srv, rules, state, "--timeout", "20", wait=False)
    try:
        wait_until(lambda: "chain ssh" in (table(lab, srv) or ""), 10, "the new rules to load", interval=0.2)
        confirm = apply_script(lab, srv, rules, state, "--confirm")
        assert confirm.returncode == 0, confirm.stderr
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    kept = table(lab, srv)
    assert kept is not None
    assert "chain ssh" in kept and "previous_rules" not in kept


def test_watcher_rolls_back_when_the_session_dies(server: Server) -> None:
    """The operator's SSH session drops (apply.sh is killed): the detached watcher restores alone."""
    lab, srv, rules, state = server
    before = table(lab, srv)
    proc = apply_script(lab, srv, rules, state, "--timeout", "3", wait=False)
    wait_until(lambda: "chain ssh" in (table(lab, srv) or ""), 10, "the new rules to load", interval=0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    wait_until(lambda: table(lab, srv) == before, 15, "the watcher to restore the previous rules", interval=0.2)


def test_apply_refuses_a_ruleset_that_does_not_check(server: Server) -> None:
    lab, srv, rules, state = server
    before = table(lab, srv)
    (rules / "nftables.conf").write_text("table inet tempo_gen {\n\tchain input { nonsense }\n}\n")
    done = apply_script(lab, srv, rules, state, "--timeout", "1")
    assert done.returncode != 0
    assert table(lab, srv) == before
    assert not (state / "pending").exists()


# ---- The real Docker engine ----

IMAGE = "tempo-fw-busybox"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("docker", *args, check=check)


@pytest.fixture(scope="module")
def busybox_image(netns_ready: None, docker_engine: EngineRecord) -> None:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        # Images cannot be pulled here: a one-file image from the static busybox.
        busybox = shutil.which("busybox")
        if not busybox:
            unavailable("busybox (busybox-static) is not installed")
        tar = subprocess.Popen(["tar", "-C", str(Path(busybox).parent), "-c", "busybox"], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", IMAGE], stdin=tar.stdout, check=True, capture_output=True, timeout=120)
        tar.wait(timeout=TIMEOUT)


def test_docker_published_port(lab: Callable[[str], Lab], tmp_path: Path, busybox_image: None) -> None:
    """A container publishes a site port and a stray port; with docker-user.sh applied, the site
    port answers only the allowed network and the stray port nobody. IPv4 only: this dockerd
    runs without IPv6, so it forwards nothing over IPv6."""
    netns_lab = lab("d")
    tag = f"tgfw{os.getpid() % 100000}"
    host_if = {"inside": f"{tag}i", "outside": f"{tag}o"}
    nets = {"inside": ("10.200.51.1", "10.200.51.2"), "outside": ("10.200.52.1", "10.200.52.2")}
    clients: dict[str, str] = {}
    for client, (host_ip, client_ip) in nets.items():
        ns = clients[client] = netns_lab.ns(client)
        run("ip", "link", "add", host_if[client], "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/24", "dev", host_if[client])
        run("ip", "link", "set", host_if[client], "up")
        netns_lab.sh(
            ns, f"ip addr add {client_ip}/24 dev eth0; ip link set eth0 up; ip route add default via {host_ip}"
        )

    name = f"{tag}-web"
    rules = render_firewall(
        tmp_path,
        "container",
        admin_cidrs=["10.200.51.0/24"],
        web_cidrs=["10.200.51.0/24"],
        external_interfaces=list(host_if.values()),  # only our veths: the host's other traffic is untouched
    )
    # The site port the profile publishes (443) and a stray one, on our veth addresses only.
    publish = [
        arg for host_ip, _ in nets.values() for arg in ("-p", f"{host_ip}:443:8443", "-p", f"{host_ip}:{STRAY}:8081")
    ]
    server = (
        "/busybox nc -ll -p 8443 -e /busybox echo ctr:8443 & /busybox nc -ll -p 8081 -e /busybox echo ctr:8081 & wait"
    )
    try:
        docker("run", "-d", "--rm", "--name", name, *publish, IMAGE, "/busybox", "sh", "-c", server)

        def probe() -> dict[tuple[str, int], str | None]:
            result: dict[tuple[str, int], str | None] = {}
            for client, ns in clients.items():
                host_ip = nets[client][0]
                attempts = [("tcp", host_ip, 443), ("tcp", host_ip, STRAY)]
                out = netns_lab.exec(ns, sys.executable, "-c", PROBE, str(PROBE_TIMEOUT), json.dumps(attempts)).stdout
                result.update(
                    {
                        (client, port): answer and answer.strip()
                        for (_, _, port), answer in zip(attempts, json.loads(out), strict=True)
                    }
                )
            return result

        everything = {
            ("inside", 443): "ctr:8443",
            ("inside", STRAY): "ctr:8081",
            ("outside", 443): "ctr:8443",
            ("outside", STRAY): "ctr:8081",
        }
        wait_until(
            lambda: probe() == everything, 20, "the published ports to answer every client (no rules yet)", interval=0.2
        )

        run(str(rules / "docker-user.sh"))
        chain = run("iptables", "-S", firewall.DOCKER_CHAIN).stdout
        assert f"-A DOCKER-USER -j {firewall.DOCKER_CHAIN}" in run("iptables", "-S", "DOCKER-USER").stdout, chain
        measured = probe()
        expected = {
            ("inside", 443): "ctr:8443",
            ("inside", STRAY): None,
            ("outside", 443): None,
            ("outside", STRAY): None,
        }
        assert measured == expected, chain
    finally:
        docker("rm", "-f", name, check=False)
        subprocess.run([str(rules / "docker-user.sh"), "--remove"], capture_output=True, timeout=TIMEOUT)
        for iface in host_if.values():
            subprocess.run(["ip", "link", "del", iface], capture_output=True, timeout=TIMEOUT)
    assert firewall.DOCKER_CHAIN not in run("iptables", "-S", "DOCKER-USER").stdout


# ---- Bans (monitoring/bans.nft) on top of each firewall variant ----


@pytest.mark.parametrize("layer", ["none", "full", "ufw"])
def test_a_ban_wins_over_every_firewall_variant_but_never_over_admin_cidrs(
    lab: Callable[[str], Lab], tmp_path: Path, layer: str
) -> None:
    """fail2ban's ban set drops a client on the host and on Docker's forwarded ports, whatever else
    filters (no tempo-gen firewall, nftables.conf + DOCKER-USER, or ufw's rules); an address inside
    firewall.admin_cidrs put in the set by hand still gets through."""
    netns_lab = lab("b" + layer[0])
    srv, clients = server_world(netns_lab, "container")
    rules = render_firewall(tmp_path, "container")
    load_layer(netns_lab, srv, rules, layer)
    profile = Profile.model_validate(
        {
            "name": "fwtest",
            "domain": "tempo.example.com",
            "tempo": {"allow_unpinned": True},
            **PROFILES["container"],
        }
    )
    bans = next(f for f in monitoring.files_for(TargetInput(profile, "t.yaml", "secrets")) if f.path.name == "bans.nft")
    (tmp_path / "bans.nft").write_text(bans.content)
    before = measure(clients)
    netns_lab.exec(srv, "nft", "-f", str(tmp_path / "bans.nft"))
    for client in ("outside", "inside"):
        _, _, _, c4, c6 = LINKS[client]
        netns_lab.exec(srv, "nft", "add", "element", "inet", "tempo_gen_bans", "ban_v4", f"{{ {c4} timeout 1m }}")
        netns_lab.exec(srv, "nft", "add", "element", "inet", "tempo_gen_bans", "ban_v6", f"{{ {c6} timeout 1m }}")
    after = measure(clients)
    assert before[("outside", "v4 tcp/443")] == "ctr:8443" and before[("outside", "v6 tcp/443")] == "ctr:8443"
    assert {answer for (client, _), answer in after.items() if client == "outside"} == {None}
    assert {key: answer for key, answer in after.items() if key[0] != "outside"} == {
        key: answer for key, answer in before.items() if key[0] != "outside"
    }
