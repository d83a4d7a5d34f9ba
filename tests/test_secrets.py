"""secrets init/check on the host, and the SCRAM verifier rotation relies on (the engine part is in e2e)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from support.project import RunCli
from tempo_gen.ops.secrets.rotation import scram_verifier
from tempo_gen.ops.secrets.values import weaknesses


def test_init_creates_strong_private_files_and_never_overwrites(cli: RunCli, demo: Path) -> None:
    result = cli("secrets", "init")
    assert result.exit_code == 0, result.output
    folder = demo / "secrets" / "demo"
    values = {name: (folder / name).read_text() for name in ("db_password", "jwt_key")}
    for name, value in values.items():
        assert len(value) >= 32 and not set(value) & set(";='\"\n "), name
        assert value not in result.output, "a value must never be printed"
    # Exactly the container users that read each file: the API (uid 1654) and Postgres (gid 70).
    expected = {"jwt_key": (0o400, 1654, 1654), "db_password": (0o440, 1654, 70)}
    for name, (mode, uid, gid) in expected.items():
        info = (folder / name).stat()
        assert stat.S_IMODE(info.st_mode) == mode, name
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (uid, gid), name
    assert values["db_password"] != values["jwt_key"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    again = cli("secrets", "init")
    assert "kept" in again.output and "created" not in again.output
    assert {name: (folder / name).read_text() for name in values} == values


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to other users")


@needs_root
def test_init_as_root_gives_kept_secrets_the_new_owners_after_a_uid_change(cli: RunCli, demo: Path) -> None:
    assert cli("secrets", "init").exit_code == 0
    folder = demo / "secrets" / "demo"
    values = {name: (folder / name).read_text() for name in ("db_password", "jwt_key")}
    os.chmod(folder / "jwt_key", 0o444)
    profile = demo / "profiles" / "demo.yaml"
    profile.write_text(profile.read_text() + "containers:\n  users:\n    api: 2571\n    postgres: 2570\n")
    result = cli("secrets", "init")
    assert result.exit_code == 0, result.output
    assert "sudo" not in result.output and "not running as root" not in result.output
    assert "owner 1654:1654 -> 2571:2571, mode 444 -> 400" in result.output
    assert "owner 1654:70 -> 2571:2570" in result.output
    for name, (mode, uid, gid) in {"jwt_key": (0o400, 2571, 2571), "db_password": (0o440, 2571, 2570)}.items():
        info = (folder / name).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, uid, gid), name
    assert {name: (folder / name).read_text() for name in values} == values
    assert cli("secrets", "check").exit_code == 0


@needs_root
def test_init_never_reowns_through_a_symlink(cli: RunCli, demo: Path, tmp_path: Path) -> None:
    assert cli("secrets", "init").exit_code == 0
    target = tmp_path / "host-file"
    target.write_text("not a secret")
    os.chmod(target, 0o600)
    (demo / "secrets" / "demo" / "jwt_key").unlink()
    (demo / "secrets" / "demo" / "jwt_key").symlink_to(target)
    result = cli("secrets", "init")
    assert result.exit_code == 2 and "not a regular file" in result.output
    info = target.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)


def test_init_without_root_refuses_a_linked_secret_instead_of_hinting_a_chown_through_it(
    cli: RunCli, demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sudo chown` follows a symlink: a hint naming a planted link would give its target to the API user."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli("secrets", "init").exit_code == 0
    target = tmp_path / "host-file"
    target.write_text("not a secret")
    (demo / "secrets" / "demo" / "jwt_key").unlink()
    (demo / "secrets" / "demo" / "jwt_key").symlink_to(target)
    result = cli("secrets", "init")
    assert result.exit_code == 2 and "jwt_key: not a regular file" in result.output, result.output
    assert "sudo chown" not in result.output


def test_check_passes_fresh_secrets_and_reports_every_problem(cli: RunCli, demo: Path) -> None:
    cli("secrets", "init")
    assert cli("secrets", "check").exit_code == 0
    folder = demo / "secrets" / "demo"
    os.chmod(folder / "jwt_key", 0o644)
    os.chmod(folder / "db_password", 0o600)
    (folder / "db_password").write_text("short;pw")
    result = cli("secrets", "check")
    assert result.exit_code == 1
    assert "jwt_key: world-accessible" in result.output
    assert "db_password: mode 600; want 440" in result.output
    assert "shorter than 32 characters" in result.output
    assert "break the Npgsql connection string" in result.output
    assert "short;pw" not in result.output
    (folder / "jwt_key").unlink()
    assert "jwt_key: missing" in cli("secrets", "check").output


def test_check_reports_an_undecodable_or_linked_secret_as_a_problem_of_that_secret(
    cli: RunCli, demo: Path, tmp_path: Path
) -> None:
    assert cli("secrets", "init").exit_code == 0
    folder = demo / "secrets" / "demo"
    os.chmod(folder / "jwt_key", 0o600)
    (folder / "jwt_key").write_bytes(b"\xff\xfe" + b"k" * 40)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("v" * 40)
    (folder / "db_password").unlink()
    (folder / "db_password").symlink_to(elsewhere)
    result = cli("secrets", "check")
    assert result.exit_code == 1, result.output
    assert "jwt_key: is not UTF-8 text" in result.output
    assert "db_password: is a symlink" in result.output
    assert "kkkk" not in result.output and "vvvv" not in result.output


def test_render_makes_git_ignore_the_secrets_folder(cli: RunCli, demo: Path) -> None:
    cli("render")
    assert "/secrets/" in (demo / ".gitignore").read_text().splitlines()
    cli("render")
    assert (demo / ".gitignore").read_text().count("/secrets/") == 1


@pytest.mark.parametrize(
    "value, problem",
    [
        ("", "empty"),
        ("x" * 31, "shorter than 32"),
        ("CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE", "placeholder"),
    ],
)
def test_weak_values_are_named(value: str, problem: str) -> None:
    assert any(problem in w for w in weaknesses("jwt_key", value))


def test_scram_verifier_matches_rfc_7677() -> None:
    """RFC 7677's example: password 'pencil', salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt, 4096)
    method, rest = verifier.split("$", 1)
    assert method == "SCRAM-SHA-256"
    iterations_salt, keys = rest.split("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    # RFC 7677 section 3: ServerSignature for the example exchange, derived from ServerKey.
    auth_message = (
        b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    signature = hmac.new(server_key, auth_message, "sha256").digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert stored_key == hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    assert iterations_salt == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
