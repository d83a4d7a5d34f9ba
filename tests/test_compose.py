"""compose.yaml: hardened on every service, and clean for the real Compose parser and the linters."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.compose import (
    DIGEST,
    PINNED_PROFILE,
    assert_compose_accepts,
    assert_hadolint_clean,
    assert_yamllint_strict_clean,
    compose_lint,
    render,
)
from support.project import REPO, RunCli


@pytest.fixture
def pinned(cli: RunCli, project: Path) -> Path:
    return render(cli, project, PINNED_PROFILE)


def test_every_service_is_hardened(pinned: Path) -> None:
    services = yaml.safe_load((pinned / "compose.yaml").read_text())["services"]
    assert set(services) == {"postgres", "api", "frontend", "proxy"}
    for name, service in services.items():
        uid, _, gid = service["user"].partition(":")
        assert int(uid) > 0 and int(gid) > 0, name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["pids_limit"] > 0, name
        assert {"cpus", "memory"} <= set(service["deploy"]["resources"]["limits"]), name
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["logging"]["options"]["max-size"], name
        assert "privileged" not in service and "network_mode" not in service, name


def test_only_the_proxy_is_published_and_backends_are_internal(pinned: Path) -> None:
    document = yaml.safe_load((pinned / "compose.yaml").read_text())
    published = {name for name, s in document["services"].items() if s.get("ports")}
    assert published == {"proxy"}
    assert document["services"]["proxy"]["ports"] == ["203.0.113.10:80:8080", "203.0.113.10:443:8443"]
    assert document["networks"]["db"] == {"internal": True}
    assert document["networks"]["app"] == {"internal": True}
    assert document["services"]["postgres"]["networks"] == ["db"]
    assert "db" not in document["services"]["proxy"]["networks"]
    assert document["services"]["frontend"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_host_placement_publishes_upstreams_on_loopback_only(cli: RunCli, project: Path) -> None:
    out = render(cli, project, PINNED_PROFILE.replace("proxy:\n", "proxy:\n  placement: host\n"))
    services = yaml.safe_load((out / "compose.yaml").read_text())["services"]
    assert "proxy" not in services
    assert services["frontend"]["ports"] == ["127.0.0.1:3004:3000"]
    assert services["api"]["ports"] == ["127.0.0.1:5001:5001"]
    assert "ports" not in services["postgres"]


def test_secrets_are_files_outside_the_bundle_and_never_values(pinned: Path) -> None:
    document = yaml.safe_load((pinned / "compose.yaml").read_text())
    assert document["secrets"] == {
        "db_password": {"file": "../../secrets/demo/db_password"},
        "jwt_key": {"file": "../../secrets/demo/jwt_key"},
    }
    api = document["services"]["api"]
    assert api["secrets"] == ["db_password", "jwt_key"]
    assert not any(k in api["environment"] for k in ("JWT__SecretKey", "ConnectionStrings__DefaultConnection"))
    assert document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "secrets" not in document["services"]["frontend"]
    assert "CHANGE_THIS" not in (pinned / "compose.yaml").read_text()


def test_docker_compose_accepts_it(pinned: Path) -> None:
    assert_compose_accepts(pinned / "compose.yaml")


def test_yamllint_strict_is_clean(pinned: Path) -> None:
    assert_yamllint_strict_clean(pinned)


def test_compose_lint_finds_nothing_when_images_are_pinned(pinned: Path) -> None:
    assert compose_lint(pinned / "compose.yaml") == []


def test_every_service_is_built_so_the_pins_live_in_the_dockerfiles() -> None:
    """No service pulls an image at deploy time: each is built FROM its pinned image (checked below),
    so compose-lint has no image reference left to flag, even on the unpinned example."""
    example = REPO / "out" / "example"
    services = yaml.safe_load((example / "compose.yaml").read_text())["services"]
    assert all("build" in service and "image" not in service for service in services.values())
    assert compose_lint(example / "compose.yaml") == []


def test_hadolint_accepts_the_dockerfiles(pinned: Path) -> None:
    dockerfiles = sorted([*(pinned / "tempo").glob("*.Dockerfile"), *(pinned / "proxy").glob("*.Dockerfile")])
    assert [d.name for d in dockerfiles] == [
        "nginx.Dockerfile",
        "api.Dockerfile",
        "frontend.Dockerfile",
        "postgres.Dockerfile",
    ]
    assert_hadolint_clean(dockerfiles)


def test_dockerfiles_build_from_the_pinned_release_and_end_non_root(pinned: Path) -> None:
    api = (pinned / "tempo" / "api.Dockerfile").read_text()
    assert f"FROM ghcr.io/trevordavies095/tempo/api:v2.10.1{DIGEST}\n" in api
    assert api.rstrip().splitlines()[-1].startswith("ENTRYPOINT")
    assert [line for line in api.splitlines() if line.startswith("USER ")][-1] == "USER 1654:1654"
    frontend = (pinned / "tempo" / "frontend.Dockerfile").read_text()
    assert [line for line in frontend.splitlines() if line.startswith("USER ")][-1] == "USER 1000:1000"
    postgres = (pinned / "tempo" / "postgres.Dockerfile").read_text()
    assert f"FROM postgres:16-alpine{DIGEST}\n" in postgres
    assert "chown 70:70 /var/lib/postgresql/data" in postgres
    assert [line for line in postgres.splitlines() if line.startswith("USER ")][-1] == "USER 70:70"
