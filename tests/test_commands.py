"""init, audit and the profile schema beside the profiles, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from support.project import VALID_PROFILE, RunCli
from tempo_gen.cli import main
from tempo_gen.reports.schema import json_schema


def test_init_writes_a_valid_commented_starter(cli: RunCli, project: Path) -> None:
    result = cli(
        "init", "home", "--domain", "run.example.org", "--address", "198.51.100.7", "--admin-cidr", "198.51.100.0/24"
    )
    assert result.exit_code == 0, result.output
    path = project / "profiles" / "home.yaml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=./schema.json\n")
    assert "tempo-gen lock" in text, "explains how to pin the images"
    data = yaml.safe_load(text)
    assert data["domain"] == "run.example.org" and data["proxy"]["publish_addresses"] == ["198.51.100.7"]
    assert cli("validate", str(path)).exit_code == 0
    assert cli("render").exit_code == 0


INIT_ARGS = (
    "init",
    "home",
    "--domain",
    "run.example.org",
    "--address",
    "198.51.100.7",
    "--admin-cidr",
    "198.51.100.0/24",
)


def test_init_in_a_new_folder_writes_the_schema_its_profile_points_at(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--project", str(tmp_path), *INIT_ARGS], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    profile = tmp_path / "profiles" / "home.yaml"
    assert profile.read_text().startswith("# yaml-language-server: $schema=./schema.json\n")
    assert (profile.parent / "schema.json").read_text() == json_schema()
    assert "schema.json" in result.output
    render = runner.invoke(main, ["--project", str(tmp_path), "render"], catch_exceptions=False)
    assert render.exit_code == 0, render.output
    check = runner.invoke(main, ["--project", str(tmp_path), "render", "--check"], catch_exceptions=False)
    assert check.exit_code == 0, check.output


def test_init_replaces_an_outdated_schema(cli: RunCli, project: Path) -> None:
    schema = project / "profiles" / "schema.json"
    schema.write_text("{}\n")
    assert cli(*INIT_ARGS).exit_code == 0
    assert schema.read_text() == json_schema()


def test_render_refreshes_an_outdated_schema_and_check_reports_it(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    assert cli("render").exit_code == 0
    schema = project / "profiles" / "schema.json"
    schema.write_text("{}\n")
    check = cli("render", "--check")
    assert check.exit_code == 1
    assert f"changed: {schema}" in check.output
    assert schema.read_text() == "{}\n", "--check writes nothing"
    assert cli("render", "--check", str(project / "profiles" / "demo.yaml")).exit_code == 0, "whole-project checks only"
    render = cli("render")
    assert render.exit_code == 0 and "schema.json: refreshed" in render.output
    assert schema.read_text() == json_schema()
    assert cli("render", "--check").exit_code == 0


def test_render_does_not_create_a_schema_nobody_asked_for(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "schema.json").unlink()
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    assert cli("render").exit_code == 0
    assert cli("render", "--check").exit_code == 0
    assert not (project / "profiles" / "schema.json").exists()


def test_init_refuses_to_overwrite_and_needs_flags_off_a_terminal(cli: RunCli, project: Path) -> None:
    assert cli(*INIT_ARGS).exit_code == 0
    again = cli(*INIT_ARGS)
    assert again.exit_code == 2 and "exists" in again.output
    missing = cli("init", "other")
    assert missing.exit_code == 2 and "--domain is required" in missing.output


def test_init_never_writes_through_a_dangling_symlink(cli: RunCli, project: Path, tmp_path: Path) -> None:
    planted = tmp_path / "elsewhere" / "planted.yaml"
    planted.parent.mkdir()
    (project / "profiles" / "home.yaml").symlink_to(planted)
    result = cli(*INIT_ARGS)
    assert result.exit_code == 2 and "exists" in result.output
    assert not planted.exists()


def test_init_refuses_a_bad_domain_and_leaves_no_file(cli: RunCli, project: Path) -> None:
    result = cli("init", "home", "--domain", "bad domain;", "--proxy", "none", "--admin-cidr", "198.51.100.0/24")
    assert result.exit_code == 2
    assert "not a valid domain" in result.output
    assert not (project / "profiles" / "home.yaml").exists()


def test_audit_reports_each_weakening_and_the_checklist(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("203.0.113.10", "0.0.0.0"))
    result = cli("audit")
    assert result.exit_code == 0
    assert (
        "weakened  tempo.allow_unpinned: images not pinned by digest: api, frontend, postgres, proxy" in result.output
    )
    assert "weakened  proxy.publish_addresses: 0.0.0.0 publishes the proxy on every interface" in result.output
    assert "ok        HTTPS configured" in result.output
    assert cli("audit", "--strict").exit_code == 1


def test_audit_flags_a_missing_proxy(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(
        VALID_PROFILE.replace("proxy:\n  publish_addresses: [203.0.113.10]\n", "proxy:\n  kind: none\n")
    )
    result = cli("audit", "--strict")
    assert result.exit_code == 1
    assert "weakened  proxy.kind" in result.output
    assert "MISSING   HTTPS configured" in result.output


def test_audit_names_firewall_header_and_limit_weakenings(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(
        VALID_PROFILE.replace("  allow_unpinned: true\n", "  allow_unpinned: true\n  import_max_mb: 900\n")
        .replace(
            "proxy:\n",
            "proxy:\n  headers:\n    x_xss_protection: '1; mode=block'\n  rate_limits:\n    login_per_minute: 60\n",
        )
        .replace("firewall:\n  admin_cidrs: [198.51.100.0/24]\n", "firewall:\n  enabled: false\n")
    )
    result = cli("audit")
    assert "weakened  firewall.enabled: no host firewall" in result.output
    assert "MISSING   Firewall rules set" in result.output
    assert "weakened  proxy.headers.x_xss_protection: '1; mode=block'" in result.output
    assert "weakened  tempo.import_max_mb: raised to 900 (default 500)" in result.output
    assert "weakened  proxy.rate_limits.login_per_minute: raised to 60 (default 5)" in result.output


def test_audit_of_the_secure_default_has_only_the_pinning_finding(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    result = cli("audit")
    assert [line for line in result.output.splitlines() if "weakened" in line] == [
        "  weakened  tempo.allow_unpinned: images not pinned by digest: api, frontend, postgres, proxy"
        " (run `tempo-gen lock`)"
    ]
    # Backups need the owner's age public key: no default can supply it.
    assert [line for line in result.output.splitlines() if "MISSING" in line] == [
        "  MISSING   Backups encrypted, stored securely and restore-tested: backup.recipients is empty: "
        "backups cannot run (they are encrypted to these age keys)"
    ]
    recipient = "age1az7lh68m9mwua556c0yvyadw8qz6lzawfmlgndy54jysurcgyqqqgqkz08"
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE + f"backup:\n  recipients: [{recipient}]\n")
    assert "MISSING" not in cli("audit").output


def test_init_asks_on_a_terminal(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import tempo_gen.cli as cli_module

    monkeypatch.setattr(cli_module, "_interactive", lambda: True)
    answers = "home\nrun.example.org\nnginx\n198.51.100.7\n198.51.100.0/24\n"
    result = CliRunner().invoke(cli_module.main, ["--project", str(project), "init"], input=answers)
    assert result.exit_code == 0, result.output
    for prompt in ("Deployment name", "Public domain", "Reverse proxy", "publishes 80/443", "SSH"):
        assert prompt in result.output
    data = yaml.safe_load((project / "profiles" / "home.yaml").read_text())
    assert data["firewall"]["admin_cidrs"] == ["198.51.100.0/24"]
