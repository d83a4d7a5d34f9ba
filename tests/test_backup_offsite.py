"""Off-host copies with real restic: a local repository and SFTP to a real sshd on loopback. Copies restore
byte-identical, retention prunes them in step, and the repository password is in no argv or environment."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.proxy import dev_profile
from support.sshd import sftp_server
from tempo_gen.errors import DeploymentError, UnsafeFile
from tempo_gen.models.host.backup import Retention
from tempo_gen.ops.backup.layout import INDEX, PARTS, Index, backup_name, backup_names
from tempo_gen.ops.backup.offsite import (
    Offsite,
    after_verified_backup,
    check,
    copy,
    forget,
    restic,
    restore_copy,
    snapshots,
)
from tempo_gen.ops.backup.retention import Backup, decide

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def write_backup(folder: Path, created: datetime, size: int = 4096, kind: str = "scheduled") -> Path:
    """A backup folder as tempo-gen writes it: random stand-ins for the encrypted parts, and their index."""
    backup = folder / backup_name(created)
    backup.mkdir(mode=0o700, parents=True)
    digests = {}
    for part in PARTS:
        data = os.urandom(size)
        (backup / part).write_bytes(data)
        digests[part] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    index = {"created": created, "kind": kind, "tempo_version": "2.10.1", "parts": digests}
    (backup / INDEX).write_text(Index.model_validate(index).model_dump_json())
    return backup


@pytest.fixture
def password(tmp_path: Path) -> tuple[Path, str]:
    value = secrets.token_urlsafe(24)
    path = tmp_path / "restic.password"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path, value


@pytest.fixture
def local(tmp_path: Path, password: tuple[Path, str]) -> Offsite:
    return Offsite(str(tmp_path / "repo"), password[0], "demo")


def same_files(left: Path, right: Path) -> None:
    for file in (INDEX, *PARTS):
        assert (left / file).read_bytes() == (right / file).read_bytes(), file


def test_a_local_copy_is_made_once_restores_byte_identical_and_checks(local: Offsite, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    original = write_backup(folder, NOW, kind="pre-deploy")
    made = copy(local, folder, original.name)
    assert (Path(local.repository) / "config").is_file()  # initialised on first use
    assert (made.backup, made.created, made.kind, made.path) == (original.name, NOW, "pre-deploy", str(original))
    assert snapshots(local) == [made]
    assert copy(local, folder, original.name).id == made.id  # a second copy of the same backup is none
    check(local)
    check(local, read_data_subset="100%")
    (tmp_path / "restored").mkdir()
    restored = restore_copy(local, original.name, tmp_path / "restored")
    same_files(original, restored)
    assert {f.stat().st_mode & 0o777 for f in restored.iterdir()} == {0o600}
    assert restored.stat().st_mode & 0o777 == 0o700
    with pytest.raises(DeploymentError, match="no copy of backup 20200101T000000Z"):
        restore_copy(local, "20200101T000000Z", tmp_path / "restored")


def test_forget_prunes_the_copies_by_the_folders_own_rule(local: Offsite, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    times = [NOW - timedelta(days=d, hours=3) for d in (0, 1, 2, 9, 40)]
    for created in times:
        copy(local, folder, write_backup(folder, created).name)
    retention = Retention(daily=2, weekly=1, monthly=1)
    expected = decide([Backup(backup_name(t), t, "scheduled") for t in times], retention, NOW)
    forgotten = forget(local, retention, NOW)
    assert sorted(s.backup for s in forgotten) == sorted(expected.remove)
    assert [s.backup for s in snapshots(local)] == list(expected.keep)
    check(local)
    assert forget(local, retention, NOW) == []


def test_the_password_file_must_be_root_only_and_no_symlink(
    local: Offsite, tmp_path: Path, password: tuple[Path, str]
) -> None:
    folder = tmp_path / "backups"
    name = write_backup(folder, NOW).name
    path = password[0]
    link = tmp_path / "link"
    link.symlink_to(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    empty = tmp_path / "empty"
    empty.touch(mode=0o600)
    cases = {link: "symlink", fifo: "FIFO", empty: "1 to 4096 bytes", tmp_path / "missing": "cannot be read"}
    for bad, reason in cases.items():
        with pytest.raises(UnsafeFile, match=reason):
            copy(Offsite(local.repository, bad, "demo"), folder, name)
    path.chmod(0o644)
    with pytest.raises(UnsafeFile, match="mode 0644; chmod 0400 or 0600"):
        copy(local, folder, name)
    path.chmod(0o400)
    os.chown(path, 65534, 65534)
    with pytest.raises(UnsafeFile, match="owned by uid 65534; chown root"):
        copy(local, folder, name)
    assert not Path(local.repository).exists()  # restic never ran
    os.chown(path, 0, 0)
    copy(local, folder, name)


def test_a_wrong_password_or_a_planted_restic_environment_changes_nothing(
    local: Offsite, tmp_path: Path, password: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "backups"
    first = write_backup(folder, NOW - timedelta(days=1)).name
    copy(local, folder, first)
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("RESTIC_REPOSITORY", str(elsewhere))
    monkeypatch.setenv("RESTIC_PASSWORD", "not-the-password")
    monkeypatch.setenv("RESTIC_PASSWORD_COMMAND", "echo not-the-password")
    second = write_backup(folder, NOW).name
    copy(local, folder, second)
    assert not elsewhere.exists()
    assert {s.backup for s in snapshots(local)} == {first, second}
    wrong = tmp_path / "wrong.password"
    wrong.write_text("wrong\n")
    wrong.chmod(0o400)
    with pytest.raises(DeploymentError, match="restic cannot open") as refused:
        copy(Offsite(local.repository, wrong, "demo"), folder, second)
    assert password[1] not in str(refused.value)


def test_backups_of_another_deployment_in_the_same_repository_are_not_counted(local: Offsite, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    other = Offsite(local.repository, local.password_file, "other")
    copy(other, folder, write_backup(folder, NOW - timedelta(days=5)).name)
    copy(local, folder, write_backup(folder, NOW).name)
    # A snapshot under this deployment's host and tag that tempo-gen did not make is no copy: never forgotten.
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes").write_text("by hand")
    foreign = ("--host", local.host, "--tag", "tempo-gen", "--tag", "backup:../../etc")
    restic(local, "backup", *foreign, "notes", cwd=stray)
    assert forget(local, Retention(daily=1, weekly=0, monthly=0), NOW) == []
    assert [s.backup for s in snapshots(local)] == [backup_name(NOW)]
    assert [s.backup for s in snapshots(other)] == [backup_name(NOW - timedelta(days=5))]
    listed = restic(local, "snapshots", "--json", "--host", local.host).stdout
    assert b"backup:../../etc" in listed


def _secret_in_processes(secret: bytes, seen: list[str]) -> list[str]:
    """Processes whose argv or environment hold `secret`; restic and ssh processes seen are added to `seen`."""
    leaks = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # gone meanwhile
        words = argv.split(b"\0")
        if words and os.path.basename(words[0]) in (b"restic", b"ssh"):
            seen.append(argv.replace(b"\0", b" ").decode(errors="replace"))
        if secret in argv or secret in environ:
            leaks.append(pid)
    return leaks


@pytest.fixture
def sftp(tmp_path: Path, password: tuple[Path, str]) -> Iterator[Offsite]:
    with sftp_server(tmp_path / "sshd") as server:
        repository = f"sftp:root@127.0.0.1:{tmp_path / 'remote' / 'repo'}"
        yield Offsite(repository, password[0], "demo", sftp_command=server.command)


def test_an_sftp_copy_over_real_sshd_restores_and_the_password_is_in_no_argv_or_environment(
    sftp: Offsite, tmp_path: Path, password: tuple[Path, str]
) -> None:
    folder = tmp_path / "backups"
    original = write_backup(folder, NOW, size=24 * 1024 * 1024)  # big enough to be seen running
    seen: list[str] = []
    leaks: list[str] = []
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            copy(sftp, folder, original.name)
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    for _ in range(20_000):  # bounded: about 100 s of 5 ms polls
        leaks += _secret_in_processes(password[1].encode(), seen)
        if done.wait(0.005):
            break
    worker.join(timeout=60)
    assert not failure, failure
    assert not leaks
    assert any("restic" in argv and "--password-file /dev/fd/" in argv for argv in seen)
    assert any(argv.startswith("ssh ") for argv in seen)
    assert (tmp_path / "remote" / "repo" / "config").is_file()
    (tmp_path / "restored").mkdir()
    restored = restore_copy(sftp, original.name, tmp_path / "restored")
    same_files(original, restored)
    check(sftp)
    assert backup_names(tmp_path / "restored") == [original.name]


def test_after_a_verified_backup_the_folder_is_pruned_and_the_copies_follow(
    tmp_path: Path, password: tuple[Path, str]
) -> None:
    folder, repository = tmp_path / "backups", tmp_path / "repo"
    backup = {
        "dir": str(folder),
        "recipients": ["age1az7lh68m9mwua556c0yvyadw8qz6lzawfmlgndy54jysurcgyqqqgqkz08"],
        "retention": {"last": 1, "daily": 1, "weekly": 0, "monthly": 0},
        "restic": {"repository": str(repository), "password_file": str(password[0])},
    }
    profile = dev_profile("nginx", backup=backup)
    write_backup(folder, NOW - timedelta(days=2))
    first = write_backup(folder, NOW).name
    lines = after_verified_backup(profile, first, NOW)
    assert lines[0] == "retention: kept 1, removed 1"
    assert lines[1].startswith(f"restic: {first} as snapshot ") and lines[1].endswith(", 0 old copies forgotten")
    later = NOW + timedelta(days=1)
    second = write_backup(folder, later).name
    assert after_verified_backup(profile, second, later)[1].endswith(", 1 old copies forgotten")
    local = Offsite(str(repository), password[0], profile.name)
    assert backup_names(folder) == [second] and [s.backup for s in snapshots(local)] == [second]
    plain = dev_profile("nginx", backup={**backup, "restic": None})
    assert after_verified_backup(plain, second, later) == ["retention: kept 1, removed 0"]
