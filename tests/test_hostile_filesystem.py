"""A checkout is untrusted input: symlinks, FIFOs, devices and misplaced secrets, through the real CLI."""

from __future__ import annotations

import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest

from support.project import VALID_PROFILE, RunCli, run_tempo_gen

SECRET = "TOP-SECRET-CONTENT-0123456789"


@pytest.fixture
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside the project a planted symlink points at; nothing may read or change it."""
    path = tmp_path_factory.mktemp("outside") / "shadow"
    path.write_text(SECRET + "\n")
    return path


# 1. render --check never follows a symlink or reads a non-regular file inside out/


def test_check_reports_a_symlinked_file_without_reading_it(cli: RunCli, demo: Path, victim: Path) -> None:
    assert cli("render").exit_code == 0
    compose = demo / "out" / "demo" / "compose.yaml"
    compose.unlink()
    compose.symlink_to(victim)
    result = cli("render", "--check", "--diff")
    assert result.exit_code == 1
    assert f"symlink: {compose}" in result.output
    assert SECRET not in result.output
    assert "Traceback" not in result.output


def test_check_never_descends_into_a_symlinked_folder_or_follows_the_bundle_itself(
    cli: RunCli, demo: Path, victim: Path
) -> None:
    assert cli("render").exit_code == 0
    bundle = demo / "out" / "demo"
    folder = next(p for p in bundle.iterdir() if p.is_dir())
    planted = victim.parent / "planted"
    planted.mkdir()
    for path in folder.rglob("*"):
        if path.is_file():
            (planted / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
            (planted / path.relative_to(folder)).write_text(SECRET)
    os.rename(folder, bundle / "moved-away")
    folder.symlink_to(planted, target_is_directory=True)
    result = cli("render", "--check", "--diff")
    assert result.exit_code == 1
    assert f"symlink: {folder}" in result.output and SECRET not in result.output

    (bundle / "MANIFEST.json").unlink()
    (bundle / "MANIFEST.json").symlink_to(victim)
    os.rename(bundle, demo / "out" / "real")
    bundle.symlink_to(planted, target_is_directory=True)
    result = cli("render", "--check", "--diff")
    assert result.exit_code == 1
    assert f"symlink: {bundle}" in result.output and SECRET not in result.output


def test_check_reports_a_fifo_without_opening_it(demo: Path) -> None:
    assert run_tempo_gen(demo, "render").returncode == 0
    compose = demo / "out" / "demo" / "compose.yaml"
    compose.unlink()
    os.mkfifo(compose)
    result = run_tempo_gen(demo, "render", "--check", "--diff", timeout=30)
    assert result.returncode == 1
    assert f"not a regular file: {compose}" in result.stdout
    assert "Traceback" not in result.stderr


# 2. no command writes through a symlink


def test_render_refuses_a_symlinked_gitignore(cli: RunCli, demo: Path, victim: Path) -> None:
    (demo / ".gitignore").symlink_to(victim)
    result = cli("render")
    assert result.exit_code == 2
    assert f"{demo / '.gitignore'}: is a symlink, not a regular file; refusing to edit it" in result.output
    assert victim.read_text() == SECRET + "\n"


def test_render_refuses_a_symlinked_out_and_bundle_folder(cli: RunCli, demo: Path, victim: Path) -> None:
    elsewhere = victim.parent / "elsewhere"
    elsewhere.mkdir()
    (demo / "out").symlink_to(elsewhere, target_is_directory=True)
    result = cli("render")
    assert result.exit_code == 2 and "is a symlink or not a folder; refusing to write through it" in result.output
    assert list(elsewhere.iterdir()) == []
    (demo / "out").unlink()
    (demo / "out").mkdir()
    (demo / "out" / "demo").symlink_to(elsewhere, target_is_directory=True)
    result = cli("render")
    assert result.exit_code == 2 and "out/demo is a symlink; refusing" in result.output
    assert list(elsewhere.iterdir()) == []


def test_a_planted_old_folder_symlink_is_removed_not_followed(cli: RunCli, demo: Path, victim: Path) -> None:
    assert cli("render").exit_code == 0
    (demo / "out" / ".demo.old").symlink_to(victim.parent, target_is_directory=True)
    (demo / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("tempo.example.com", "other.example.com"))
    result = cli("render")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == SECRET + "\n"
    assert sorted(p.name for p in (demo / "out").iterdir()) == ["demo"]


PINNABLE = """\
name: demo
domain: tempo.example.com
tempo:
  images:
    api: HOST/tempo/api:v1
    frontend: HOST/tempo/frontend:v1
    postgres: HOST/pg:16
proxy:
  placement: container
  image: HOST/nginx:1
  publish_addresses: [203.0.113.10]
firewall:
  admin_cidrs: [198.51.100.0/24]
"""


def test_lock_never_writes_its_temp_file_through_a_symlink(cli: RunCli, project: Path, victim: Path) -> None:
    class Registry(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Docker-Content-Digest", "sha256:" + "a" * 64)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        profile = project / "profiles" / "demo.yaml"
        profile.write_text(PINNABLE.replace("HOST", host))
        (project / "profiles" / ".demo.yaml.lock-tmp").symlink_to(victim)
        result = cli("lock", "--insecure-registry", host)
        assert result.exit_code == 0, result.output
        assert victim.read_text() == SECRET + "\n"
        assert "@sha256:" + "a" * 64 in profile.read_text()
        assert not os.path.lexists(project / "profiles" / ".demo.yaml.lock-tmp")
    finally:
        server.shutdown()
        server.server_close()


def _planted_secrets(elsewhere: Path) -> dict[str, tuple[bytes, int, int]]:
    """A folder outside the project holding files named like our secrets; what they and it hold now."""
    (elsewhere / "demo").mkdir(parents=True)
    for name in ("jwt_key", "db_password"):
        (elsewhere / "demo" / name).write_text(SECRET + "\n")
    os.chmod(elsewhere / "demo", 0o755)
    return _state(elsewhere)


def _state(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry under `folder`, and the folder itself ("."): its bytes (files), mode and owner."""
    found = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        found[path.relative_to(folder).as_posix()] = (data, info.st_mode, info.st_uid)
    return found


@pytest.mark.parametrize("command", ["init", "check"])
@pytest.mark.parametrize("link", ["secrets/demo", "secrets"])
def test_secrets_commands_never_follow_a_symlinked_secrets_folder(
    cli: RunCli, demo: Path, victim: Path, link: str, command: str
) -> None:
    """A checkout can carry secrets/<name> (or secrets/) as a symlink: init must not write its files
    into the target or chmod it, and check must not read through it."""
    elsewhere = victim.parent / "elsewhere"
    before = _planted_secrets(elsewhere)
    if link == "secrets/demo":
        (demo / "secrets").mkdir()
    (demo / link).symlink_to(elsewhere / "demo" if link == "secrets/demo" else elsewhere, target_is_directory=True)
    result = cli("secrets", command)
    assert result.exit_code == 2, result.output
    assert f"{demo / link}: is a symlink; refusing to follow it" in result.output
    assert "Traceback" not in result.output
    assert _state(elsewhere) == before


def test_secrets_init_refuses_a_symlink_anywhere_in_an_absolute_secrets_dir(
    cli: RunCli, demo: Path, victim: Path
) -> None:
    elsewhere = victim.parent / "elsewhere"
    before = _planted_secrets(elsewhere)
    (victim.parent / "link").symlink_to(elsewhere, target_is_directory=True)
    profile = demo / "profiles" / "demo.yaml"
    profile.write_text(VALID_PROFILE + f"secrets:\n  dir: {victim.parent}/link/demo\n")
    result = cli("secrets", "init")
    assert result.exit_code == 2 and f"{victim.parent / 'link'}: is a symlink" in result.output, result.output
    assert _state(elsewhere) == before
    (victim.parent / "link").unlink()
    assert cli("secrets", "init").exit_code == 0, "missing folders of an absolute secrets.dir are created"
    assert stat.S_IMODE((victim.parent / "link" / "demo").stat().st_mode) == 0o700


def test_secret_rotation_never_writes_through_a_symlinked_secrets_folder(demo: Path, victim: Path) -> None:
    """Rotation reads and replaces the secret files in the folder init made, through the same no-follow walk."""
    from tempo_gen.errors import UnsafeFile
    from tempo_gen.ops.running.compose import ComposeProject
    from tempo_gen.ops.secrets.rotation import rotate_db, rotate_jwt
    from tempo_gen.profile.loader import load_profile

    elsewhere = victim.parent / "elsewhere"
    before = _planted_secrets(elsewhere)
    (demo / "secrets").mkdir()
    (demo / "secrets" / "demo").symlink_to(elsewhere / "demo", target_is_directory=True)
    profile = load_profile(demo / "profiles" / "demo.yaml", demo).profile
    untouchable = cast(ComposeProject, object())  # any use of the stack would be an AttributeError
    with pytest.raises(UnsafeFile, match="is a symlink"):
        rotate_jwt(profile, demo, None)
    with pytest.raises(UnsafeFile, match="is a symlink"):
        rotate_db(profile, demo, untouchable)
    assert _state(elsewhere) == before


# 3. reads are bounded: FIFOs, devices and folders are refused with a located exit 2


def test_a_fifo_profile_is_refused_not_waited_on(project: Path) -> None:
    os.mkfifo(project / "profiles" / "demo.yaml")
    result = run_tempo_gen(project, "validate", timeout=30)
    assert result.returncode == 2
    assert "profiles/demo.yaml: is a FIFO, not a regular file" in result.stderr


def test_a_folder_profile_is_refused(project: Path) -> None:
    (project / "profiles" / "demo.yaml").mkdir()
    result = run_tempo_gen(project, "validate")
    assert result.returncode == 2
    assert "profiles/demo.yaml: is a directory, not a regular file" in result.stderr


def test_a_fifo_or_device_as_extends_target_is_refused(project: Path) -> None:
    os.mkfifo(project / "profiles" / "_base.yaml")
    (project / "profiles" / "demo.yaml").write_text("extends: _base.yaml\n" + VALID_PROFILE)
    result = run_tempo_gen(project, "validate", timeout=30)
    assert result.returncode == 2
    assert "profiles/_base.yaml: is a FIFO, not a regular file" in result.stderr
    (project / "profiles" / "demo.yaml").write_text("extends: /dev/zero\n" + VALID_PROFILE)
    result = run_tempo_gen(project, "validate", timeout=30)
    assert result.returncode == 2
    assert "/dev/zero: is a device, not a regular file" in result.stderr


def test_a_fifo_or_oversized_env_is_refused(demo: Path) -> None:
    os.mkfifo(demo / ".env")
    result = run_tempo_gen(demo, "validate", timeout=30)
    assert result.returncode == 2
    assert ".env: is a FIFO, not a regular file" in result.stderr
    (demo / ".env").unlink()
    (demo / ".env").write_text("A=1\n" * 100_000)
    result = run_tempo_gen(demo, "validate")
    assert result.returncode == 2 and ".env: file is 400000 bytes; it may be at most" in result.stderr
    (demo / ".env").write_text("DOMAIN=env.example.com\n")
    (demo / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("tempo.example.com", "${DOMAIN}"))
    assert run_tempo_gen(demo, "validate").returncode == 0


@pytest.mark.parametrize(
    "text", ["A=" + "${" * 30_000 + "\n", "".join(f"A{i}=${{B}}x${{C}}\n" for i in range(5000))], ids=["refs", "lines"]
)
def test_an_env_that_would_take_minutes_to_expand_is_refused_at_once(demo: Path, text: str) -> None:
    """python-dotenv's expansion is quadratic: 60 KB of `${` under the size cap ran for minutes."""
    (demo / ".env").write_text(text)
    result = run_tempo_gen(demo, "validate", timeout=15)
    assert result.returncode == 2 and ".env: over 1000 lines or 1000 ${...} references" in result.stderr


# 4. secrets.dir stays out of what git sees, and .gitignore names exactly that folder


@pytest.mark.parametrize(
    "folder, reason",
    [
        ("out/keys", "points into out/"),
        ("out", "points into out/"),
        ("profiles/keys", "points into profiles/"),
        (".", "is the project folder itself"),
        ("keys/../", "climbs with `..`"),
        ("keys[1]", "not a usable directory path"),
        ("'#keys'", "not a usable directory path"),
    ],
)
def test_secrets_dir_inside_the_project_tree_is_refused_with_its_line(
    cli: RunCli, project: Path, folder: str, reason: str
) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE + f"secrets:\n  dir: {folder}\n")
    result = cli("validate")
    assert result.exit_code == 2
    line = len(VALID_PROFILE.splitlines()) + 2
    assert f"profiles/demo.yaml:{line}: secrets.dir:" in result.output and reason in result.output


def test_secrets_dir_inside_a_bundle_of_a_custom_out_is_refused(cli: RunCli, project: Path, tmp_path: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE + "secrets:\n  dir: build/demo/keys\n")
    result = cli("render", "--out", str(project / "build"))
    assert result.exit_code == 2 and "secrets.dir" in result.output and "points into out/" in result.output
    assert not (project / "build" / "demo").exists()


def test_gitignore_names_exactly_the_secrets_folder(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE + "secrets:\n  dir: private/demo\n")
    (project / "private").mkdir()
    assert cli("render").exit_code == 0
    lines = (project / ".gitignore").read_text().splitlines()
    assert "/private/demo/" in lines and "/private/" not in lines
    assert cli("render").exit_code == 0
    assert (project / ".gitignore").read_text().count("/private/demo/") == 1


def test_swarm_rotation_records_its_version_without_writing_through_a_symlink(demo: Path, victim: Path) -> None:
    """After a Swarm rotation the new secret version is written into the profile through a staged file;
    a symlink planted at that name is removed, never followed."""
    from tempo_gen.ops.secrets.swarm import _with_version, _write_profile
    from tempo_gen.profile.loader import load_profile

    profile = demo / "profiles" / "demo.yaml"
    loaded = load_profile(profile, demo)
    (demo / "profiles" / ".demo.yaml.rotate-tmp").symlink_to(victim)
    _write_profile(loaded, demo, _with_version(loaded, "jwt_key", 2), "jwt_key", 2)
    assert victim.read_text() == SECRET + "\n"
    assert load_profile(profile, demo).profile.secrets.versions.jwt_key == 2
    assert not os.path.lexists(demo / "profiles" / ".demo.yaml.rotate-tmp")


def test_a_manifest_nested_past_the_parser_stack_is_drift_not_a_traceback(cli: RunCli, demo: Path) -> None:
    assert cli("render").exit_code == 0
    (demo / "out" / "demo" / "MANIFEST.json").write_text("[" * 200_000 + "]" * 200_000)
    check = run_tempo_gen(demo, "render", "--check")
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
    again = run_tempo_gen(demo, "render")
    assert again.returncode == 2 and "is not a tempo-gen bundle" in again.stderr, again.stderr


def test_check_and_diff_never_pass_escape_sequences_to_the_terminal(demo: Path) -> None:
    """A committed file or file name in out/ is attacker-written; an OSC or CSI sequence would drive the terminal."""
    assert run_tempo_gen(demo, "render").returncode == 0
    bundle = demo / "out" / "demo"
    (bundle / "compose.yaml").write_text("\x1b]0;pwned\x07\x1b[2J\n")
    (bundle / "stray\x1b[31m.txt").write_text("x")
    result = run_tempo_gen(demo, "render", "--check", "--diff")
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
    assert "\\x1b]0;pwned\\x07" in result.stdout and "stray\\x1b[31m.txt" in result.stdout
