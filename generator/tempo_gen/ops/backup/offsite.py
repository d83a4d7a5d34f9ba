"""Off-host copies: each verified backup folder (still age-encrypted) as one restic snapshot, pruned in step.

A snapshot is tagged `tempo-gen` and `backup:<name>`, `kind:<kind>`, dated by
the index's `created` and filed under the host name `tempo-gen-<deployment>`,
so the repository can serve several deployments and a copy is found by name.
`forget` applies retention.decide() itself to the snapshots (restic's own
--keep-* could not keep the newest pre-deploy backup) and removes the others by
id: the two destinations keep the same backups. restic is given the four file
names relative to the backup's folder, so every snapshot holds them at the same
stable paths (/index.json, /db.dump.age, ...) whatever the folder was.

The repository password never reaches an argument or the environment: the
password file is opened here (no symlink, root-owned, 0400/0600, checked on the
descriptor) and restic reads it as /dev/fd/N. RESTIC_* variables of the caller
are dropped so none can point restic at another repository or password.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tempo_gen.errors import DeploymentError, UnsafeFile, terminal_safe
from tempo_gen.models.host.backup import Retention
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.layout import INDEX, NAME, PARTS, read_index
from tempo_gen.ops.backup.retention import Backup, decide, prune
from tempo_gen.safe_fs import kind_of, open_dir_beneath

TAG = "tempo-gen"
_PASSWORD_LIMIT = 4096
_NOT_INITIALISED = "unable to open config file"
# Generous: a large media archive over SFTP; a hung transfer still ends and the unit fails.
COPY_TIMEOUT = 6 * 3600
SHORT_TIMEOUT = 3600
_FILES = (INDEX, *PARTS)


@dataclass(frozen=True)
class Offsite:
    """Where and as what a deployment's backups are copied."""

    repository: str
    password_file: Path
    deployment: str
    sftp_command: str | None = None
    """restic's sftp.command, for an SFTP server root's ssh config does not describe (tests on loopback)."""

    @classmethod
    def for_profile(cls, profile: Profile) -> Offsite | None:
        restic = profile.backup.restic
        if restic is None:
            return None
        return cls(restic.repository, Path(restic.password_file), profile.name)

    @property
    def host(self) -> str:
        return f"tempo-gen-{self.deployment}"


@dataclass(frozen=True)
class Snapshot:
    id: str
    """restic's short id."""
    backup: str
    created: datetime
    kind: str
    path: str
    """The backup's folder when it was copied."""


@contextmanager
def password_fd(path: Path) -> Iterator[int]:
    """The password file, opened without following a symlink and checked on the descriptor: a regular file
    owned by root, readable by root only (0400 or 0600), not empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeFile(path, "backup.restic.password_file is a symlink; name the file itself") from None
        raise UnsafeFile(path, f"backup.restic.password_file cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(path, f"backup.restic.password_file is {kind_of(info.st_mode)}, not a regular file")
        if info.st_uid != 0:
            raise UnsafeFile(path, f"backup.restic.password_file is owned by uid {info.st_uid}; chown root")
        if stat.S_IMODE(info.st_mode) not in (0o400, 0o600):
            raise UnsafeFile(
                path, f"backup.restic.password_file has mode {stat.S_IMODE(info.st_mode):04o}; chmod 0400 or 0600"
            )
        if not 0 < info.st_size <= _PASSWORD_LIMIT:
            raise UnsafeFile(path, f"backup.restic.password_file must hold 1 to {_PASSWORD_LIMIT} bytes")
        yield fd
    finally:
        os.close(fd)


def _environment() -> dict[str, str]:
    """The caller's environment without RESTIC_* (but the cache folder), in UTC for --time and listings."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_") or k == "RESTIC_CACHE_DIR"}
    return {**kept, "TZ": "UTC"}


def restic(
    offsite: Offsite,
    *args: str,
    timeout: float = SHORT_TIMEOUT,
    cwd: Path | None = None,
    check: bool = True,
    stdout: int = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """Run `restic ARGS` on the repository; a failure is a DeploymentError quoting restic's last words."""
    with password_fd(offsite.password_file) as fd:
        command = ["restic", "--repo", offsite.repository, "--password-file", f"/dev/fd/{fd}", "--quiet"]
        if offsite.sftp_command:
            command += ["--option", f"sftp.command={offsite.sftp_command}"]
        try:
            done = subprocess.run(
                [*command, *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                pass_fds=(fd,),
                env=_environment(),
                cwd=cwd,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise DeploymentError("restic is not installed (Debian: apt-get install restic)") from None
        except subprocess.TimeoutExpired:
            raise DeploymentError(f"restic {args[0]} on {offsite.repository} took over {timeout:.0f} s") from None
    if check and done.returncode != 0:
        raise DeploymentError(f"restic {args[0]} on {offsite.repository} failed: {_last_words(done.stderr)}")
    return done


def _last_words(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return terminal_safe(" / ".join(lines[-3:]) or "no message")


def snapshots(offsite: Offsite, *, initialise: bool = False) -> list[Snapshot]:
    """This deployment's copies in the repository, newest first. With `initialise`, a repository that does
    not exist yet is created (restic init) and has none."""
    args = ("snapshots", "--json", "--no-lock", "--host", offsite.host, "--tag", TAG)
    done = restic(offsite, *args, check=False)
    if done.returncode != 0:
        if not (initialise and _NOT_INITIALISED in done.stderr.decode(errors="replace")):
            raise DeploymentError(f"restic cannot open {offsite.repository}: {_last_words(done.stderr)}")
        restic(offsite, "init")
        return []
    try:
        entries = json.loads(done.stdout or b"[]")
    except ValueError:
        raise DeploymentError(f"restic listed the snapshots of {offsite.repository} in no JSON it knows") from None
    found = [snapshot for entry in entries if (snapshot := _snapshot(entry)) is not None]
    return sorted(found, key=lambda s: (s.created, s.backup), reverse=True)


def _snapshot(entry: object) -> Snapshot | None:
    """One entry of `restic snapshots --json` as a copy of a backup; None for anything tempo-gen did not make."""
    if not isinstance(entry, dict):
        return None
    try:
        tags = dict(tag.split(":", 1) for tag in entry.get("tags") or [] if ":" in tag)
        if not NAME.fullmatch(tags.get("backup", "")):
            return None
        created = datetime.fromisoformat(entry["time"]).astimezone(UTC)
        folder = str(PurePosixPath(entry["paths"][0]).parent)  # the paths are the backup's files
        return Snapshot(str(entry["short_id"]), tags["backup"], created, tags.get("kind", ""), folder)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def copy(offsite: Offsite, folder: Path, name: str) -> Snapshot:
    """Copy backup `name` of `folder` (verified by the caller) into the repository, initialising it on first
    use; a backup copied before is not copied again."""
    index = read_index(folder, name)  # also refuses a symlink at the backup's name
    for existing in snapshots(offsite, initialise=True):
        if existing.backup == name:
            return existing
    created = index.created.astimezone(UTC)
    done = restic(
        offsite,
        "backup",
        "--json",
        *("--host", offsite.host, "--tag", TAG, "--tag", f"backup:{name}", "--tag", f"kind:{index.kind}"),
        *("--time", created.strftime("%Y-%m-%d %H:%M:%S")),
        *_FILES,
        cwd=folder / name,
        timeout=COPY_TIMEOUT,
    )
    summary = [json.loads(line) for line in done.stdout.splitlines() if b'"summary"' in line]
    if not summary or not summary[-1].get("snapshot_id"):
        raise DeploymentError(f"restic saved no snapshot of {name} in {offsite.repository}")
    return Snapshot(summary[-1]["snapshot_id"], name, created.replace(microsecond=0), index.kind, str(folder / name))


def forget(offsite: Offsite, retention: Retention, now: datetime, *, keep: Collection[str] = ()) -> list[Snapshot]:
    """Forget and prune the copies retention does not keep (the same rule as the backup folder); returns them."""
    copies = snapshots(offsite)
    decision = decide([Backup(s.backup, s.created, s.kind) for s in copies], retention, now, keep)
    doomed = [s for s in copies if s.backup in set(decision.remove)]
    if doomed:
        restic(offsite, "forget", "--prune", *(s.id for s in doomed), timeout=COPY_TIMEOUT)
    return doomed


def check(offsite: Offsite, read_data_subset: str | None = None) -> None:
    """`restic check`: the repository's structure, and with `read_data_subset` (e.g. "1/7", "10%") that share
    of the data read back and verified."""
    subset = [f"--read-data-subset={read_data_subset}"] if read_data_subset else []
    restic(offsite, "check", *subset, timeout=COPY_TIMEOUT if subset else SHORT_TIMEOUT)


def restore_copy(offsite: Offsite, name: str, into: Path) -> Path:
    """Fetch the copy of backup `name` into the new folder `into/name` (`into` exists; 0700, files 0600), e.g.
    to restore from it after the host's disk was lost."""
    found = next((s for s in snapshots(offsite) if s.backup == name), None)
    if found is None:
        raise DeploymentError(f"{offsite.repository} holds no copy of backup {name}")
    with open_dir_beneath(into, follow_root=True) as parent:
        os.mkdir(name, 0o700, dir_fd=parent)  # new and empty: restic writes into nothing planted
        restic(offsite, "restore", found.id, "--target", str(into / name), timeout=COPY_TIMEOUT)
        with open_dir_beneath(into, (name,), follow_root=True) as target:
            for file in _FILES:
                _make_private(target, file, into / name / file)
    return into / name


def _make_private(dir_fd: int, file: str, shown: Path) -> None:
    """Mode 0600 on restored file `file`, which must be a regular file (never a symlink)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFile(shown, f"is not in the copy as a file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(shown, f"is {kind_of(info.st_mode)} in the copy, not a file")
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def after_verified_backup(profile: Profile, name: str, now: datetime) -> list[str]:
    """What `tempo-gen backup` does once backup `name` verified, one log fragment per step: prune the folder
    by the profile's retention (keeping `name`), copy `name` off the host and forget the copies retention
    drops. The prune goes first (local, and `name` is safe); a failed copy raises before any copy is
    forgotten, so the repository never loses what it had."""
    folder = Path(profile.backup.folder(profile.name))
    retention = profile.backup.retention
    done = [prune(folder, retention, now, keep={name}).summary()]
    offsite = Offsite.for_profile(profile)
    if offsite is not None:
        made = copy(offsite, folder, name)
        forgotten = forget(offsite, retention, now, keep={name})
        done.append(f"restic: {name} as snapshot {made.id}, {len(forgotten)} old copies forgotten")
    return done
