"""`deploy` and `upgrade` refuse before touching anything (no engine needed), and the deploy state they keep
outside out/ is trusted only as written: owner, mode, no symlink, every file and field checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.project import RunCli
from tempo_gen.bundle.pipeline import render_bundle
from tempo_gen.errors import UsageError
from tempo_gen.ops.deploy import state
from tempo_gen.ops.deploy.upgrade import upgrade_edits
from tempo_gen.policy.releases import NEWEST, SUPPORTED
from tempo_gen.profile.loader import load_profile

IMAGE_ID = "sha256:" + "ab" * 32


@pytest.fixture
def rendered(cli: RunCli, demo: Path) -> Path:
    """The demo project with its secrets and its bundle rendered: everything a deploy checks first is in order."""
    for command in (("secrets", "init"), ("render",)):
        result = cli(*command)
        assert result.exit_code == 0, result.output
    return demo


def test_deploy_refuses_a_bundle_that_is_not_what_the_profile_renders(cli: RunCli, rendered: Path) -> None:
    compose = rendered / "out" / "demo" / "compose.yaml"
    compose.write_text(compose.read_text().replace("memory: 2g", "memory: 8g"))
    result = cli("deploy", str(rendered / "profiles" / "demo.yaml"))
    assert result.exit_code == 2
    assert "is not what profiles/demo.yaml renders (hand-edited compose.yaml)" in result.output
    assert "tempo-gen render" in result.output


def test_deploy_refuses_when_the_secrets_fail_their_check(cli: RunCli, demo: Path) -> None:
    assert cli("render").exit_code == 0  # no `secrets init`
    result = cli("deploy", str(demo / "profiles" / "demo.yaml"))
    assert result.exit_code == 2
    assert "fail `tempo-gen secrets check`" in result.output and "db_password" in result.output


def test_deploy_refuses_swarm_mode_for_now(cli: RunCli, demo: Path) -> None:
    profile = demo / "profiles" / "demo.yaml"
    swarm = profile.read_text().replace("[203.0.113.10]", "[0.0.0.0]") + "deploy:\n  mode: swarm\n"
    profile.write_text(swarm)
    result = cli("deploy", str(profile))
    assert result.exit_code == 2
    assert "deploy.mode is swarm" in result.output and "docker stack deploy" in result.output


@pytest.mark.parametrize(
    ("version", "message"),
    [("9.9.9", "not a release tempo-gen knows"), (NEWEST, "is on Tempo " + NEWEST + " already")],
)
def test_upgrade_refuses_unknown_and_current_releases_leaving_the_profile(
    cli: RunCli, rendered: Path, version: str, message: str
) -> None:
    profile = rendered / "profiles" / "demo.yaml"
    before = profile.read_bytes()
    result = cli("upgrade", str(profile), "--to", version)
    assert result.exit_code == 2
    assert message in result.output
    assert profile.read_bytes() == before


def test_upgrade_moves_explicit_images_that_name_the_release(demo: Path) -> None:
    profile = demo / "profiles" / "demo.yaml"
    old = SUPPORTED[0]
    profile.write_text(
        profile.read_text().replace(
            "tempo:\n",
            f"tempo:\n  version: {old}\n  images:\n    api: registry.test/api:v{old}\n"
            "    frontend: registry.test/frontend:stable\n",
        )
    )
    edits = upgrade_edits(load_profile(profile, demo), NEWEST)
    assert edits == {("tempo", "version"): NEWEST, ("tempo", "images", "api"): f"registry.test/api:v{NEWEST}"}


def _saved(project: Path) -> Path:
    bundle = project / "out" / "demo"
    files = render_bundle(load_profile(project / "profiles" / "demo.yaml", project), project, bundle)
    state.save(bundle, files, NEWEST, {"api": ("demo-api", IMAGE_ID)})
    return bundle


def test_state_round_trip_is_private(rendered: Path) -> None:
    bundle = _saved(rendered)
    deployed = state.load(bundle)
    assert deployed is not None
    assert (deployed.version, deployed.images) == (NEWEST, {"api": ("demo-api", IMAGE_ID)})
    assert os.stat(rendered / ".tempo-gen").st_mode & 0o777 == 0o700
    assert (deployed.bundle / "compose.yaml").read_bytes() == (bundle / "compose.yaml").read_bytes()


def _record(bundle: Path) -> Path:
    return bundle.parent.parent / ".tempo-gen" / "demo" / "DEPLOYED.json"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b: (b.parent.parent / ".tempo-gen").chmod(0o755), "with mode 0700"),
        (lambda b: (b.parent.parent / ".tempo-gen" / "demo" / "compose.yaml").write_text("services: {}\n"), "changed"),
        (
            lambda b: (b.parent.parent / ".tempo-gen" / "demo" / "proxy" / "evil").symlink_to("/etc/shadow"),
            "not a file of the kept bundle",
        ),
        (
            lambda b: _record(b).write_text(_record(b).read_text().replace(IMAGE_ID, "sha256:../../x")),
            "is not [image name, sha256 id]",
        ),
        (
            lambda b: _record(b).write_text(json.dumps({**json.loads(_record(b).read_text()), "version": "0.0.1"})),
            "not a supported release",
        ),
        (lambda b: _record(b).write_text("[" * 100_000), "unreadable deploy record"),
    ],
)
def test_a_changed_state_folder_is_refused(rendered: Path, tamper: object, message: str) -> None:
    bundle = _saved(rendered)
    assert callable(tamper)
    tamper(bundle)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        state.load(bundle)


def test_deploy_refuses_a_state_folder_that_is_a_symlink(cli: RunCli, rendered: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (rendered / ".tempo-gen").symlink_to(elsewhere)
    result = cli("deploy", str(rendered / "profiles" / "demo.yaml"))
    assert result.exit_code == 2
    assert "is not a folder (a symlink or a file)" in result.output
    assert not os.listdir(elsewhere)
    assert "/.tempo-gen/" in (rendered / ".gitignore").read_text().splitlines()


def test_deploy_refuses_after_an_interrupted_deploy_left_its_database_copy(cli: RunCli, rendered: Path) -> None:
    _saved(rendered)
    leftover = rendered / ".tempo-gen" / ".demo.db-rollback.tar"
    leftover.write_bytes(b"a stopped database's files")
    result = cli("deploy", str(rendered / "profiles" / "demo.yaml"))
    assert result.exit_code == 2
    assert "the database rollback point of a deploy that was interrupted" in result.output
    assert leftover.read_bytes() == b"a stopped database's files"
