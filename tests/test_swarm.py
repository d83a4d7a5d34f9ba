"""deploy.mode: swarm: the stack file, the rules that keep it honest, and the parsers that must accept it.

The engine side (secrets created, deployed, owned per service, rotated) is proven in tests/e2e/test_swarm.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from support.compose import assert_compose_accepts, assert_hadolint_clean, assert_yamllint_strict_clean
from support.project import VALID_PROFILE, RunCli
from tempo_gen.bundle.files import Bundle, RenderedFile
from tempo_gen.errors import RenderError
from tempo_gen.models.profile import Profile
from tempo_gen.profile.edit import set_scalars
from tempo_gen.targets.swarm_stack import stack_bundle

SWARM_PROFILE = VALID_PROFILE.replace("203.0.113.10", "0.0.0.0") + "deploy:\n  mode: swarm\n"
UIDS = {"postgres": "70", "api": "1654", "frontend": "1000", "proxy": "101"}
HASH_TAG = re.compile(r"^tempo-gen\.invalid/demo-(api|frontend|postgres|proxy):[0-9a-f]{12}$")


def render(cli: RunCli, project: Path, text: str) -> Path:
    (project / "profiles" / "demo.yaml").write_text(text)
    result = cli("render")
    assert result.exit_code == 0, result.output
    return project / "out" / "demo"


@pytest.fixture
def stack(cli: RunCli, project: Path) -> Path:
    return render(cli, project, SWARM_PROFILE)


def document(bundle: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((bundle / "compose.yaml").read_text())
    return doc


def test_every_service_keeps_its_hardening_in_swarm_terms(stack: Path) -> None:
    doc = document(stack)
    assert "name" not in doc and doc["version"] == "3.9", "the stack name is given to docker stack deploy"
    assert set(doc["services"]) == set(UIDS)
    for name, service in doc["services"].items():
        assert service["user"] == f"{UIDS[name]}:{UIDS[name]}", name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        limits = service["deploy"]["resources"]["limits"]
        assert limits["pids"] > 0 and {"cpus", "memory"} <= set(limits), name
        assert service["deploy"]["restart_policy"] == {"condition": "any", "delay": "5s"}, name
        assert service["deploy"]["endpoint_mode"] == "vip", name
        assert service["healthcheck"]["test"][0] == "CMD" and service["logging"]["options"]["max-size"], name
        # What Swarm refuses or silently ignores is not left in the file to look like protection.
        for key in ("build", "restart", "tmpfs", "security_opt", "pids_limit", "depends_on", "container_name"):
            assert key not in service, (name, key)
        mounts = [v for v in service["volumes"] if isinstance(v, dict)]
        assert mounts and all(m["type"] == "tmpfs" and m["tmpfs"]["size"] > 0 for m in mounts), name
        assert "/tmp" in {m["target"] for m in mounts}, name
    assert {m["target"] for m in doc["services"]["postgres"]["volumes"] if isinstance(m, dict)} == {
        "/var/run/postgresql",
        "/tmp",
    }


def test_built_images_are_named_by_content_under_a_domain_no_registry_serves(
    stack: Path, cli: RunCli, project: Path
) -> None:
    doc = document(stack)
    images = {name: service["image"] for name, service in doc["services"].items()}
    assert all(HASH_TAG.match(image) for image in images.values()), images
    header = (stack / "compose.yaml").read_text().split("\nversion:")[0]
    for service in ("api", "frontend", "postgres"):
        assert f"#   docker build -t {images[service]} -f tempo/{service}.Dockerfile tempo\n" in header
    api = images["api"]
    assert "#   docker stack deploy --resolve-image never -c compose.yaml demo" in header
    # Same profile, same tag; a change to the build context (the API's uid) is a new tag.
    assert document(render(cli, project, SWARM_PROFILE))["services"]["api"]["image"] == api
    changed = document(render(cli, project, SWARM_PROFILE + "containers:\n  users:\n    api: 1655\n"))
    assert changed["services"]["api"]["image"] != api


def test_each_consumer_gets_its_own_copy_of_external_versioned_secrets(stack: Path) -> None:
    doc = document(stack)
    assert doc["secrets"] == {
        "db_password": {"external": True, "name": "demo_db_password_v1"},
        "jwt_key": {"external": True, "name": "demo_jwt_key_v1"},
    }
    services = doc["services"]
    assert services["postgres"]["secrets"] == [
        {"source": "db_password", "target": "db_password", "uid": "70", "gid": "70", "mode": 0o400}
    ]
    assert services["api"]["secrets"] == [
        {"source": name, "target": name, "uid": "1654", "gid": "1654", "mode": 0o400}
        for name in ("db_password", "jwt_key")
    ]
    assert "secrets" not in services["frontend"] and "secrets" not in services["proxy"]
    assert "        mode: 256  # 0400\n" in (stack / "compose.yaml").read_text()


def test_secret_versions_name_the_secrets(cli: RunCli, project: Path) -> None:
    doc = document(render(cli, project, SWARM_PROFILE + "secrets:\n  versions:\n    jwt_key: 4\n"))
    assert doc["secrets"]["jwt_key"]["name"] == "demo_jwt_key_v4"
    assert doc["secrets"]["db_password"]["name"] == "demo_db_password_v1"


def test_networks_are_overlays_and_only_the_proxy_publishes_in_host_mode(stack: Path) -> None:
    doc = document(stack)
    assert doc["networks"]["db"] == {"internal": True, "driver": "overlay"}
    assert doc["networks"]["app"] == {"internal": True, "driver": "overlay"}
    assert all(n["driver"] == "overlay" for n in doc["networks"].values())
    assert doc["services"]["postgres"]["networks"] == ["db"]
    assert {name for name, s in doc["services"].items() if s.get("ports")} == {"proxy"}
    assert doc["services"]["proxy"]["ports"] == [
        {"target": 8080, "published": 80, "protocol": "tcp", "mode": "host"},
        {"target": 8443, "published": 443, "protocol": "tcp", "mode": "host"},
    ]


def test_dnsrr_is_written_and_needs_no_proxy_restart(cli: RunCli, project: Path) -> None:
    """nginx re-resolves its upstreams every few seconds, so replaced tasks need no forced proxy update."""
    bundle = render(cli, project, SWARM_PROFILE + "  endpoint_mode: dnsrr\n")
    doc = document(bundle)
    assert {s["deploy"]["endpoint_mode"] for s in doc["services"].values()} == {"dnsrr"}
    assert "service update --force" not in (bundle / "compose.yaml").read_text()


def test_the_frontend_image_gets_a_cache_folder_a_root_owned_tmpfs_can_serve(
    stack: Path, cli: RunCli, project: Path
) -> None:
    assert "chmod 1777 /app/.next/cache" in (stack / "tempo" / "frontend.Dockerfile").read_text()
    compose = render(cli, project, VALID_PROFILE)
    assert "/app/.next/cache" not in (compose / "tempo" / "frontend.Dockerfile").read_text()


def test_traefik_builds_its_proxy_image_too(cli: RunCli, project: Path) -> None:
    doc = document(render(cli, project, SWARM_PROFILE.replace("proxy:\n", "proxy:\n  kind: traefik\n")))
    proxy = doc["services"]["proxy"]
    assert HASH_TAG.match(proxy["image"]) and "build" not in proxy
    assert proxy["user"] == "101:101" and proxy["ports"][0]["mode"] == "host"


def test_explicit_compose_mode_renders_the_same_bundle(cli: RunCli, project: Path, tmp_path: Path) -> None:
    before = render(cli, project, VALID_PROFILE)
    files = {p.relative_to(before): p.read_bytes() for p in before.rglob("*") if p.is_file()}
    after = render(cli, project, VALID_PROFILE + "deploy:\n  mode: compose\n")
    assert {p.relative_to(after): p.read_bytes() for p in after.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize(
    "change, field, fragment",
    [
        (lambda t: t.replace("proxy:\n", "proxy:\n  placement: host\n"), "deploy.mode", "cannot publish on 127.0.0.1"),
        (lambda t: t.replace("proxy:\n", "proxy:\n  kind: none\n"), "deploy.mode", "proxy container"),
        (lambda t: t.replace("0.0.0.0", "203.0.113.10"), "proxy.publish_addresses.0", "write 0.0.0.0"),
        (lambda t: t + "secrets:\n  dir: /srv/secrets\n", "secrets.dir", "keeps the secrets in the swarm"),
    ],
)
def test_swarm_refuses_what_it_cannot_honour(
    cli: RunCli, project: Path, change: Callable[[str], str], field: str, fragment: str
) -> None:
    (project / "profiles" / "demo.yaml").write_text(change(SWARM_PROFILE))
    result = cli("validate")
    assert result.exit_code == 2
    assert field in result.output and fragment in result.output, result.output


def test_a_compose_key_without_a_swarm_treatment_stops_the_render() -> None:
    profile = Profile.model_validate(yaml.safe_load(SWARM_PROFILE))
    compose = "services:\n  api:\n    user: '1:1'\n    privileged: true\nnetworks: {}\nvolumes: {}\nsecrets: {}\n"
    with pytest.raises(RenderError, match="privileged"):
        stack_bundle(Bundle([RenderedFile(PurePosixPath("compose.yaml"), compose)]), profile, "# header")


def test_the_firewall_lets_swarm_tasks_out_through_docker_gwbridge(cli: RunCli, project: Path) -> None:
    """Swarm tasks reach the outside through docker_gwbridge, not docker0 or br-*: without it the API's egress
    (and a Traefik proxy's ACME) would be dropped like traffic from the internet."""
    swarm = render(cli, project, SWARM_PROFILE)
    assert (
        "-A TEMPO-GEN-DOCKER -i docker_gwbridge -j RETURN\n" in (swarm / "firewall" / "docker-user.rules").read_text()
    )
    assert 'iifname "docker_gwbridge" accept' in (swarm / "firewall" / "nftables.conf").read_text()
    compose = render(cli, project, VALID_PROFILE)
    assert "gwbridge" not in "".join(p.read_text() for p in (compose / "firewall").rglob("*") if p.is_file())


def test_audit_reports_what_swarm_loses(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(SWARM_PROFILE)
    output = cli("audit").output
    assert "weakened  deploy.mode: swarm: no-new-privileges is not set" in output
    assert "weakened  deploy.mode: swarm: tmpfs mounts are owned by root" in output
    assert "weakened  proxy.publish_addresses: 0.0.0.0 publishes" in output


def test_secrets_commands_need_a_swarm_manager(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(SWARM_PROFILE)
    for args in (
        ("secrets", "init"),
        ("secrets", "check"),
        ("secrets", "rotate", "jwt", str(project / "profiles" / "demo.yaml")),
    ):
        result = cli(*args, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        assert result.exit_code == 1 and "cannot reach the Docker engine" in result.output, result.output
    assert not (project / "secrets").exists(), "no secret files in swarm mode"


def test_profile_edits_take_integers() -> None:
    assert (
        set_scalars("name: demo\n", {("secrets", "versions", "jwt_key"): 2})
        == "name: demo\nsecrets:\n  versions:\n    jwt_key: 2\n"
    )
    assert (
        set_scalars("secrets:\n  versions:\n    jwt_key: 2  # rotated\n", {("secrets", "versions", "jwt_key"): 3})
        == "secrets:\n  versions:\n    jwt_key: 3  # rotated\n"
    )


def test_yamllint_strict_is_clean(stack: Path) -> None:
    assert_yamllint_strict_clean(stack)


def test_hadolint_accepts_the_swarm_dockerfiles(stack: Path) -> None:
    assert_hadolint_clean(sorted((stack / "tempo").glob("*.Dockerfile")))


def test_docker_compose_accepts_it(stack: Path) -> None:
    assert_compose_accepts(stack / "compose.yaml")


def test_docker_stack_config_accepts_it_without_warnings(stack: Path) -> None:
    """The stack parser itself (Docker CLI >= 20.10's `docker stack config`; it needs no engine)."""
    docker = shutil.which("docker")
    usage = (
        subprocess.run([docker, "stack", "--help"], capture_output=True, text=True, timeout=120).stdout
        if docker
        else ""
    )
    if not re.search(r"^\s+config\s", usage, re.M):
        pytest.skip("this Docker CLI has no `docker stack config` (added in 20.10.x releases after Debian 12's)")
    assert docker is not None, "without a docker CLI the usage is empty and the test was skipped"
    result = subprocess.run(
        [docker, "stack", "config", "-c", str(stack / "compose.yaml")],
        capture_output=True,
        text=True,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "level=warning" not in result.stderr and "Ignoring" not in result.stderr, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert parsed["services"]["api"]["secrets"][1] == {
        "source": "jwt_key",
        "target": "jwt_key",
        "uid": "1654",
        "gid": "1654",
        "mode": 0o400,
    }
    assert parsed["services"]["proxy"]["ports"][0]["mode"] == "host"
