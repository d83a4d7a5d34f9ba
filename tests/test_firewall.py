"""The firewall target: profile rules, what each profile renders, and syntax checks by the real tools.

The syntax checks load nothing on the host: `nft -c` and `iptables-restore --test`
run in a throwaway network namespace (root needed: they skip, or fail when CI=true).
Real packets are in test_firewall_netns.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from click.testing import CliRunner

from support.engine import unavailable
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.cli import main
from tempo_gen.errors import ProfileError
from tempo_gen.models.profile import Profile
from tempo_gen.profile.loader import load_profile
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.host import firewall

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
name: fwunit
domain: tempo.example.com
environment: {environment}
tempo:
  allow_unpinned: true
proxy:
  placement: {placement}
  publish_addresses: [203.0.113.10]
"""
ADMIN = ["198.51.100.0/24", "2001:db8:100::/48"]


def write_profile(
    tmp_path: Path, firewall_yaml: str, environment: str = "production", placement: str = "container"
) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(BASE.format(environment=environment, placement=placement) + firewall_yaml)
    return path


def problems(tmp_path: Path, firewall_yaml: str, **kw: str) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile(write_profile(tmp_path, firewall_yaml, **kw), tmp_path)
    assert caught.value.exit_code == 2
    return [str(p) for p in caught.value.problems]


def render(placement: str = "container", environment: str = "production", **fw: Any) -> dict[str, RenderedFile]:
    proxy = {"placement": placement, "publish_addresses": ["203.0.113.10"]} if placement != "none" else {"kind": "none"}
    profile = Profile.model_validate(
        {
            "name": "fwunit",
            "domain": "tempo.example.com",
            "environment": environment,
            "tempo": {"allow_unpinned": True},
            "proxy": proxy,
            "firewall": {"admin_cidrs": ADMIN, **fw},
        }
    )
    return {str(f.path): f for f in firewall.files_for(TargetInput(profile, "profiles/fwunit.yaml", "secrets"))}


# ---- Bad values are refused, located, with exit status 2 ----


@pytest.mark.parametrize(
    "firewall_yaml, field, message",
    [
        ("firewall:\n  admin_cidrs: [10.0.0.300/24]\n", "firewall.admin_cidrs.0", "not a valid CIDR"),
        ("firewall:\n  admin_cidrs: [10.0.0.1/24]\n", "firewall.admin_cidrs.0", "has host bits set"),
        ("firewall:\n  admin_cidrs: [10.0.0.0/8]\n  web_cidrs: [bogus]\n", "firewall.web_cidrs.0", "not a valid CIDR"),
        (
            "firewall:\n  admin_cidrs: [10.0.0.0/8]\n  ssh_port: 70000\n",
            "firewall.ssh_port",
            "less than or equal to 65535",
        ),
        ("firewall:\n  vpn: {interface: wg0, port: 0}\n", "firewall.vpn.port", "greater than or equal to 1"),
        ("firewall:\n  vpn: {interface: 'wg0; drop'}\n", "firewall.vpn.interface", "not a usable interface name"),
        (
            "firewall:\n  admin_cidrs: [10.0.0.0/8]\n  external_interfaces: [eth*]\n",
            "firewall.external_interfaces.0",
            "no wildcards",
        ),
        (
            "firewall:\n  admin_cidrs: [10.0.0.0/8]\n  external_interfaces: [lo]\n",
            "firewall.external_interfaces.0",
            "lo is never filtered",
        ),
        ("firewall:\n  admin_cidrs: [10.0.0.0/8]\n  ssh_rate: fast\n", "firewall.ssh_rate", "not a rate"),
        (
            "firewall:\n  admin_cidrs: [10.0.0.0/8]\n  ssh_port: 443\n",
            "firewall.ssh_port",
            "also the proxy's HTTP(S) port",
        ),
        ("firewall:\n  admin_cidrs: [10.0.0.0/8]\n  sshport: 22\n", "firewall.sshport", "did you mean 'ssh_port'"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, firewall_yaml: str, field: str, message: str) -> None:
    found = problems(tmp_path, firewall_yaml)
    assert any("profile.yaml:" in p and f" {field}: " in p and message in p for p in found), found


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_world_admin_cidr_needs_the_explicit_override_in_production(tmp_path: Path, cidr: str) -> None:
    found = problems(tmp_path, f"firewall:\n  admin_cidrs: ['{cidr}']\n")
    assert len(found) == 1 and "firewall.admin_cidrs.0:" in found[0] and "allow_world_admin" in found[0], found
    assert found[0].startswith("profile.yaml:10:"), found  # located on the admin_cidrs line
    load_profile(
        write_profile(tmp_path, f"firewall:\n  admin_cidrs: ['{cidr}']\n  allow_world_admin: true\n"), tmp_path
    )
    load_profile(
        write_profile(tmp_path, f"firewall:\n  admin_cidrs: ['{cidr}']\n", environment="development"), tmp_path
    )


@pytest.mark.parametrize(
    "cidrs",
    [["0.0.0.0/1", "128.0.0.0/1"], ["10.0.0.0/8", "::/1", "8000::/1"], ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"]],
)
def test_networks_that_add_up_to_the_whole_internet_need_the_override_too(tmp_path: Path, cidrs: list[str]) -> None:
    found = problems(tmp_path, f"firewall:\n  admin_cidrs: {cidrs}\n")
    assert len(found) == 1 and "firewall.admin_cidrs: together these networks are" in found[0], found
    assert "allow_world_admin" in found[0], found
    load_profile(write_profile(tmp_path, f"firewall:\n  admin_cidrs: {cidrs}\n  allow_world_admin: true\n"), tmp_path)
    load_profile(write_profile(tmp_path, "firewall:\n  admin_cidrs: [0.0.0.0/1, 192.168.0.0/16]\n"), tmp_path)


def test_production_needs_admin_cidrs_or_a_vpn(tmp_path: Path) -> None:
    found = problems(tmp_path, "")
    assert any("firewall.admin_cidrs: required in production" in p for p in found), found
    load_profile(write_profile(tmp_path, "firewall:\n  vpn: {interface: wg0}\n"), tmp_path)
    load_profile(write_profile(tmp_path, "firewall:\n  enabled: false\n"), tmp_path)


@pytest.mark.parametrize(
    "firewall_yaml, field",
    [
        ("firewall:\n  admin_cidrs: [0.0.0.0/0]\n", "firewall.admin_cidrs.0:"),
        ("firewall:\n  admin_cidrs: [10.0.0.0/8]\n  ssh_port: 0\n", "firewall.ssh_port:"),
    ],
)
def test_cli_reports_firewall_problems_with_exit_status_2(tmp_path: Path, firewall_yaml: str, field: str) -> None:
    path = write_profile(tmp_path, firewall_yaml)
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert field in result.output and "nothing was written" in result.output


# ---- What each profile renders ----


def test_files_modes_and_headers() -> None:
    files = render()
    assert sorted(files) == [
        "firewall/apply.sh",
        "firewall/docker-user.rules",
        "firewall/docker-user.sh",
        "firewall/docker-user6.rules",
        "firewall/nftables.conf",
        "firewall/tempo-gen-docker-user.service",
        "firewall/ufw/after.rules",
        "firewall/ufw/after6.rules",
        "firewall/ufw/setup.sh",
    ]
    for path, file in files.items():
        lines = file.content.splitlines()
        assert file.mode == (0o755 if path.endswith(".sh") else 0o644), path
        header = lines[1] if lines[0].startswith("#!") else lines[0]
        assert header.startswith("# Generated by tempo-gen from profiles/fwunit.yaml"), path


def test_disabled_renders_nothing() -> None:
    assert render(enabled=False) == {}


def test_container_proxy_publishes_only_the_site_ports() -> None:
    files = render()
    nft = files["firewall/nftables.conf"].content
    assert "ct original proto-dst { 80, 443 } accept" in nft
    assert "tcp dport 22 ip saddr { 198.51.100.0/24 } jump ssh" in nft
    assert "tcp dport 22 ip6 saddr { 2001:db8:100::/48 } jump ssh" in nft
    assert "flush ruleset" not in nft.replace("`flush ruleset`", "")
    rules = files["firewall/docker-user.rules"].content
    assert "--ctorigdstport 443 --ctdir ORIGINAL -j RETURN" in rules
    assert "--ctorigdst 127.0.0.0/8 -j DROP" in rules
    assert "127.0.0.0/8" not in rules_of(files["firewall/docker-user6.rules"].content)


def rules_of(text: str) -> str:
    """The lines that are not comments."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_host_proxy_publishes_nothing_through_docker() -> None:
    files = render(placement="host")
    nft = rules_of(files["firewall/nftables.conf"].content)
    assert "tcp dport { 80, 443 } accept" in nft and "proto-dst" not in nft
    rules = rules_of(files["firewall/docker-user.rules"].content)
    assert "--ctorigdstport" not in rules and "-A TEMPO-GEN-DOCKER -j DROP" in rules


def test_no_proxy_opens_no_site_port() -> None:
    nft = rules_of(render(placement="none")["firewall/nftables.conf"].content)
    assert "dport { 80, 443 }" not in nft and "proto-dst" not in nft


def test_vpn_restricts_ssh_to_its_interface_and_opens_its_port() -> None:
    files = render(admin_cidrs=[], vpn={"interface": "wg0", "port": 51820})
    nft = files["firewall/nftables.conf"].content
    assert 'tcp dport 22 iifname "wg0" jump ssh' in nft
    assert "udp dport 51820 accept" in nft
    assert "ufw limit in on wg0 proto tcp from any to any port 22" in files["firewall/ufw/setup.sh"].content


def test_development_without_admin_cidrs_accepts_ssh_from_anywhere_rate_limited() -> None:
    nft = render(environment="development", admin_cidrs=[])["firewall/nftables.conf"].content
    assert "\t\ttcp dport 22 jump ssh\n" in nft
    assert "limit rate over 10/minute burst 5 packets" in nft


def test_web_cidrs_and_external_interfaces() -> None:
    files = render(web_cidrs=["192.0.2.0/25", "192.0.2.128/25"], external_interfaces=["eth0", "ens3"])
    nft = files["firewall/nftables.conf"].content
    # Overlapping or adjacent networks are merged; IPv6 gets no site access when only IPv4 is listed.
    assert "tcp dport { 80, 443 } ip saddr { 192.0.2.0/24 } accept" in nft
    assert "ip6 saddr" not in nft.split("tcp dport { 80, 443 }")[1].split("\n")[0]
    assert 'iifname != { "eth0", "ens3" } accept' in nft
    rules4 = files["firewall/docker-user.rules"].content
    assert "-i eth0 -s 192.0.2.0/24 -p tcp" in rules4 and "-i ens3 -j DROP" in rules4
    assert "-i docker0" not in rules4
    assert "--ctorigdstport" not in rules_of(files["firewall/docker-user6.rules"].content)


def test_example_profile_renders(tmp_path: Path) -> None:
    loaded = load_profile(ROOT / "profiles/example.yaml", ROOT)
    files = firewall.files_for(TargetInput(loaded.profile, loaded.display_path, "secrets"))
    assert any(str(f.path) == "firewall/nftables.conf" for f in files)


# ---- The real tools accept what is rendered ----


class RunInNetns(Protocol):
    """The netns fixture: run a command in the namespace, `input` on its standard input."""

    def __call__(self, *cmd: str, input: str | None = None) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def netns() -> Iterator[RunInNetns]:
    """A throwaway network namespace: checks there never touch the host's rules."""
    if os.geteuid() != 0:
        unavailable("checking rules in a network namespace needs root")
    missing = [t for t in ("ip", "nft", "iptables-restore", "ip6tables-restore") if not shutil.which(t)]
    if missing:
        unavailable(f"missing tools: {', '.join(missing)}")
    name = f"tgfwunit{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        unavailable(f"cannot create a network namespace: {done.stderr.strip()}")
    yield lambda *cmd, input=None: subprocess.run(
        ["ip", "netns", "exec", name, *cmd], input=input, capture_output=True, text=True, timeout=30
    )
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


VARIANTS: dict[str, dict[str, Any]] = {
    "container": {},
    "host+vpn": {"placement": "host", "admin_cidrs": [], "vpn": {"interface": "wg0", "port": 51820}},
    "none+interfaces": {"placement": "none", "web_cidrs": ["192.0.2.0/24"], "external_interfaces": ["eth0"]},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_rules_pass_the_real_parsers(netns: RunInNetns, variant: str) -> None:
    files = render(**VARIANTS[variant])
    checks = [
        (("nft", "-c", "-f", "-"), "firewall/nftables.conf"),
        (("iptables-restore", "--test", "--noflush"), "firewall/docker-user.rules"),
        (("ip6tables-restore", "--test", "--noflush"), "firewall/docker-user6.rules"),
        (("iptables-restore", "--test", "--noflush"), "firewall/ufw/after.rules"),
        (("ip6tables-restore", "--test", "--noflush"), "firewall/ufw/after6.rules"),
    ]
    for cmd, path in checks:
        done = netns(*cmd, input=files[path].content)
        assert done.returncode == 0, f"{path}: {done.stderr}"


def test_scripts_parse() -> None:
    for path, file in render().items():
        if path.endswith(".sh"):
            done = subprocess.run(["bash", "-n"], input=file.content, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, f"{path}: {done.stderr}"


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed (a lint, not a prerequisite)")
def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for path, file in render().items():
        if path.endswith(".sh"):
            script = tmp_path / Path(path).name
            script.write_text(file.content)
            done = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"{path}:\n{done.stdout}"
