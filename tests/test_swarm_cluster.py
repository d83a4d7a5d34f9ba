"""deploy.nodes: a Swarm of several nodes in the profile, the stack file, the firewall and the commands.

The engine side (three nodes, drains, rotation on workers) is proven in tests/e2e/test_multinode.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.compose import assert_yamllint_strict_clean
from support.project import RunCli
from test_swarm import SWARM_PROFILE, document, render

CLUSTER = (
    SWARM_PROFILE.replace("proxy:\n", "proxy:\n  tls:\n    certificate:\n      source: files\n")
    + """\
  nodes:
    - hostname: manager1
      address: 192.0.2.10
    - hostname: db1
      address: 192.0.2.11
      roles: [postgres]
      docker_host: ssh://admin@db1.example.net
    - hostname: web1
      address: 2001:db8::12
      roles: [edge]
"""
)
FILES = "      cert_file: /etc/tempo-tls/fullchain.pem\n      key_file: /etc/tempo-tls/privkey.pem\n"
CLUSTER = CLUSTER.replace("      source: files\n", "      source: files\n" + FILES)


@pytest.fixture
def cluster(cli: RunCli, project: Path) -> Path:
    return render(cli, project, CLUSTER)


def test_postgres_is_pinned_and_the_proxy_runs_on_every_edge_node(cluster: Path) -> None:
    services = document(cluster)["services"]
    assert services["postgres"]["deploy"]["placement"] == {
        "constraints": ["node.labels.org.tempo-gen.demo.postgres == true"]
    }
    proxy = services["proxy"]["deploy"]
    assert proxy["mode"] == "global"
    assert proxy["placement"] == {"constraints": ["node.labels.org.tempo-gen.demo.edge == true"]}
    for name in ("api", "frontend"):
        assert "placement" not in services[name]["deploy"], "stateless services go wherever Swarm has room"


def test_nodes_get_no_files_but_the_images(cluster: Path) -> None:
    doc = document(cluster)
    proxy = doc["services"]["proxy"]
    binds = [v for v in proxy["volumes"] if isinstance(v, str) and not v.startswith("proxy_body_temp:")]
    assert binds == ["/var/log/tempo-gen/demo:/var/log/tempo-gen"], "only the per-node access log folder"
    rendered = sorted(str(p.relative_to(cluster / "proxy")) for p in (cluster / "proxy" / "nginx").rglob("*.conf"))
    targets = sorted(c["target"].removeprefix("/etc/") for c in proxy["configs"])
    assert targets == rendered
    for reference in proxy["configs"]:
        assert (reference["uid"], reference["gid"], reference["mode"]) == ("101", "101", 0o444)
        config = doc["configs"][reference["source"]]
        assert (cluster / config["file"]).is_file() and config["name"].startswith("demo_nginx_")
    assert doc["secrets"]["tls_cert"] == {"file": "/etc/tempo-tls/fullchain.pem", "name": "demo_tls_cert_v1"}
    assert doc["secrets"]["tls_key"] == {"file": "/etc/tempo-tls/privkey.pem", "name": "demo_tls_key_v1"}
    assert {"source": "tls_key", "target": "/etc/tempo-tls/privkey.pem", "uid": "101", "gid": "101", "mode": 0o400} in (
        proxy["secrets"]
    )


def test_a_changed_config_file_is_a_new_config(cli: RunCli, project: Path) -> None:
    """Swarm configs cannot change: a different file must get a different name, the others keep theirs."""
    before = document(render(cli, project, CLUSTER))["configs"]
    after = document(render(cli, project, CLUSTER.replace("tempo.example.com", "run.example.com")))["configs"]
    changed = {key for key in before if before[key]["name"] != after.get(key, {}).get("name")}
    assert changed and changed != set(before)


def test_a_new_certificate_is_a_new_version(cli: RunCli, project: Path) -> None:
    bundle = render(cli, project, CLUSTER + "secrets:\n  versions:\n    tls: 3\n")
    assert document(bundle)["secrets"]["tls_key"]["name"] == "demo_tls_key_v3"


def test_single_node_swarm_keeps_its_certificate_folders_but_not_the_rendered_files(cli: RunCli, project: Path) -> None:
    proxy = document(render(cli, project, SWARM_PROFILE))["services"]["proxy"]
    assert "placement" not in proxy["deploy"] and "mode" not in proxy["deploy"]
    assert not [v for v in proxy["volumes"] if isinstance(v, str) and v.startswith("./")]
    assert "/var/lib/tempo-tls/tempo.example.com:/var/lib/tempo-tls/tempo.example.com:ro" in proxy["volumes"]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (
            lambda t: t.replace("      roles: [postgres]\n", ""),
            "deploy.nodes",
            "exactly one node needs roles: [postgres]",
        ),
        (lambda t: t.replace("[edge]", "[edge, postgres]"), "deploy.nodes", "found 2"),
        (lambda t: t.replace("      roles: [edge]\n", ""), "deploy.nodes", "no node has roles: [edge]"),
        (lambda t: t.replace("hostname: web1", "hostname: db1"), "deploy.nodes.2.hostname", "listed twice"),
        (lambda t: t.replace("source: files", "source: acme"), "proxy.tls.certificate.source", "ACME on a cluster"),
        (lambda t: t.replace("ssh://admin@db1", "http://db1"), "deploy.nodes.1.docker_host", "not ssh://"),
        (lambda t: t.replace("ssh://admin@", "ssh://-oProxyCommand@"), "deploy.nodes.1.docker_host", "not ssh://"),
        (lambda t: t.replace("hostname: db1", "hostname: 'db 1'"), "deploy.nodes.1.hostname", "not a host name"),
        (lambda t: t.replace("mode: swarm", "mode: compose"), "deploy.nodes", "needs deploy.mode: swarm"),
    ],
)
def test_render_refuses_a_cluster_it_cannot_place(
    cli: RunCli, project: Path, change: Callable[[str], str], field: str, fragment: str
) -> None:
    (project / "profiles" / "demo.yaml").write_text(change(CLUSTER))
    result = cli("validate")
    assert result.exit_code == 2
    assert field in result.output and fragment in result.output, result.output


def test_the_firewall_opens_swarm_ports_to_the_nodes_only(cli: RunCli, project: Path, cluster: Path) -> None:
    nft = (cluster / "firewall" / "nftables.conf").read_text()
    assert "tcp dport { 2377, 7946 } ip saddr { 192.0.2.10/31 } accept" in nft
    assert "udp dport { 4789, 7946 } ip6 saddr { 2001:db8::12/128 } accept" in nft
    assert "ip saddr { 192.0.2.10/31 } meta l4proto esp accept" in nft
    ufw = (cluster / "firewall" / "ufw" / "setup.sh").read_text()
    assert 'ufw allow proto udp from 2001:db8::12/128 to any port 4789,7946 comment "tempo-gen swarm"' in ufw
    single = render(cli, project, SWARM_PROFILE)
    assert "4789" not in (single / "firewall" / "nftables.conf").read_text()


def test_the_swarm_proxy_is_healthy_only_while_it_reaches_its_upstreams(cluster: Path) -> None:
    conf = (cluster / "proxy" / "nginx" / "nginx.conf").read_text()
    health = conf[conf.index("listen 127.0.0.1:8081;") :]
    assert "auth_request /healthz-frontend;" in health and "/health;" in health
    assert 'return 200 "ok\\n";' not in health


def test_audit_reports_a_plain_tcp_engine(cli: RunCli, project: Path) -> None:
    text = CLUSTER.replace("ssh://admin@db1.example.net", "tcp://db1.example.net:2375\n      insecure_plain_tcp: true")
    (project / "profiles" / "demo.yaml").write_text(text)
    output = cli("audit").output
    assert "deploy.nodes[1].insecure_plain_tcp: db1: its Docker API (tcp://db1.example.net:2375)" in output


def test_swarm_prepare_needs_nodes_and_a_manager(cli: RunCli, project: Path) -> None:
    profile = project / "profiles" / "demo.yaml"
    profile.write_text(CLUSTER)
    result = cli("swarm", "prepare", str(profile), env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.exit_code == 1 and "cannot reach the Docker engine" in result.output, result.output
    profile.write_text(SWARM_PROFILE.replace("mode: swarm", "mode: compose"))
    result = cli("swarm", "prepare", str(profile))
    assert result.exit_code != 0 and "deploy.mode is not swarm" in result.output, result.output


def test_docker_stack_config_accepts_configs_and_file_secrets(cluster: Path) -> None:
    docker = shutil.which("docker")
    usage = subprocess.run([docker or "false", "stack", "--help"], capture_output=True, text=True, timeout=120)
    if " config " not in usage.stdout:
        pytest.skip("this Docker CLI has no `docker stack config`")
    result = subprocess.run(
        [docker or "docker", "stack", "config", "-c", str(cluster / "compose.yaml")],
        capture_output=True,
        text=True,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        cwd=cluster,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    assert parsed["services"]["proxy"]["deploy"]["mode"] == "global"
    assert parsed["secrets"]["tls_key"]["name"] == "demo_tls_key_v1"


def test_the_header_says_how_the_images_reach_every_node_and_yamllint_is_clean(cluster: Path) -> None:
    header = (cluster / "compose.yaml").read_text().split("\nversion:")[0]
    assert "| ssh NODE docker load" in header and "#     tempo-gen.invalid/demo-proxy:" in header
    assert_yamllint_strict_clean(cluster)
