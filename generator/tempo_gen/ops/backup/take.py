"""Take a backup: pg_dump and the media volume streamed out of the running containers through age to disk.

Nothing is stopped: pg_dump reads one consistent snapshot, tar reads the media
as they are. The parts go into <name>.partial/, each re-read and checked
against the digest taken while it was written, and only then is the folder
renamed to its final name (layout.py): a run that fails or is killed leaves a
.partial folder, which the next run removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tempo_gen import __version__
from tempo_gen.errors import DeploymentError, UsageError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.crypt import Encryptor, Sealed, encrypting, stored_digest
from tempo_gen.ops.backup.layout import (
    INDEX,
    PARTIAL,
    TOUCHING,
    CorruptBackup,
    Index,
    Kind,
    Manifest,
    Part,
    backup_name,
    backup_names,
    partial_names,
    read_restore_journal,
)
from tempo_gen.ops.running.stack import RunningStack
from tempo_gen.policy.ports import MEDIA_ROOT
from tempo_gen.policy.releases import IMPORT_STAGING
from tempo_gen.safe_fs import open_dir_beneath, write_new

PAUSE_VARIABLE = "TEMPO_GEN_PAUSE_AT"
"""Test hook: a step name; the run says `paused at <step>` on stderr and waits there, so a test can kill it at a
known point. It changes nothing else."""
PAUSE_SECONDS = 300

# Inside the Postgres container, as its own (non-root) user, over the local socket: the password is read from
# the container's secret file into the tool's environment there, never into an argument or the exec's inspect.
_WITH_PASSWORD = (
    'if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")" || exit 1; '
    'export PGPASSWORD; fi; exec "$@" --username="$POSTGRES_USER" --dbname="$POSTGRES_DB"'
)


def in_postgres(*command: str) -> list[str]:
    """`command` run in the Postgres container with its password, user and database (its $POSTGRES_*)."""
    return ["sh", "-c", _WITH_PASSWORD, "sh", *command]


DUMP = in_postgres("pg_dump", "--format=custom")
LAST_MIGRATION = in_postgres(
    "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", 'SELECT max("MigrationId") FROM "__EFMigrationsHistory"'
)
# The media volume as the API container sees it, without the import staging (GNU tar; no compression: the
# media are mostly compressed already).
MEDIA_TAR = ["tar", "-C", MEDIA_ROOT, "--anchored", f"--exclude=./{IMPORT_STAGING}", "--numeric-owner", "-cf", "-", "."]


def pause_at(step: str) -> None:
    """The test hook (PAUSE_VARIABLE)."""
    if os.environ.get(PAUSE_VARIABLE) == step:
        print(f"paused at {step}", file=sys.stderr, flush=True)
        time.sleep(PAUSE_SECONDS)


@dataclass(frozen=True)
class Taken:
    """A complete, verified backup."""

    folder: Path
    name: str
    index: Index

    @property
    def stored_bytes(self) -> int:
        return sum(part.bytes for part in self.index.parts.values())


def backup_folder(profile: Profile) -> Path:
    return Path(profile.backup.folder(profile.name))


def open_backup_folder(profile: Profile) -> Path:
    """The profile's backup folder, created 0700 if missing; refused when it is a symlink or not a folder."""
    folder = backup_folder(profile)
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    with open_dir_beneath(folder, follow_root=False) as fd:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o700)
    return folder


def refuse_after_killed_restore(profile: Profile, folder: Path) -> None:
    """A restore killed after it touched the deployment: say exactly what puts it back (backing up the
    half-restored state would only hide it)."""
    journal = read_restore_journal(folder)
    if journal is not None and journal.step in TOUCHING:
        raise DeploymentError(
            f"a restore of {journal.backup} was interrupted at step {journal.step!r} ({folder}/restore.json): "
            "the API may be stopped or its data half-restored. Put it back first: "
            f"`tempo-gen restore {profile.name} {journal.safety} --identity KEYFILE` restores the safety backup "
            "taken just before it"
        )


def remove_partials(folder: Path) -> list[str]:
    """Remove what interrupted runs left (<name>.partial/); never follows a symlink."""
    removed = partial_names(folder)
    with open_dir_beneath(folder, follow_root=False) as fd:
        for name in removed:
            shutil.rmtree(name, dir_fd=fd)
    return removed


def require_recipients(profile: Profile) -> None:
    if not profile.backup.recipients:
        raise UsageError(
            f"profile {profile.name!r} has no backup.recipients: add the age public key(s) (age1...) backups are "
            "encrypted to (age-keygen -y KEYFILE); their private keys stay off this host"
        )


_held: dict[Path, int] = {}  # backup folders this process holds the lock of, with their open descriptor


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One backup, restore or drill of a deployment at a time (a flock on its backup folder; re-entrant in
    this process, so a restore's safety backup runs under the restore's lock)."""
    if folder in _held:
        yield
        return
    with open_dir_beneath(folder, follow_root=False) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeploymentError(
                f"another backup, restore or drill is using {folder}: try again when it ended"
            ) from None
        _held[folder] = fd
        try:
            yield
        finally:
            del _held[folder]


def take_backup(profile: Profile, stack: RunningStack, kind: Kind, *, running_version: str | None = None) -> Taken:
    """Back up the running deployment into its backup folder; the complete backup, verified.

    This is what every caller uses: `backup` (manual or scheduled), restore's safety backup, deploy's
    pre-deploy backup. Retention and off-host copies belong after it returned, never before.
    `running_version` is the release that runs (and wrote the data) when it is not yet the profile's: a
    deploy that is about to change it."""
    require_recipients(profile)
    folder = open_backup_folder(profile)
    with locked(folder):
        refuse_after_killed_restore(profile, folder)
        return _take(profile, stack, kind, folder, running_version or profile.tempo.version)


def _take(profile: Profile, stack: RunningStack, kind: Kind, folder: Path, version: str) -> Taken:
    remove_partials(folder)
    created = datetime.now(UTC).replace(microsecond=0)
    name = backup_name(created)
    if name in backup_names(folder):
        raise DeploymentError(f"a backup named {name} exists already in {folder}: wait a second and run again")
    with open_dir_beneath(folder, follow_root=False) as top:
        os.mkdir(name + PARTIAL, 0o700, dir_fd=top)
        try:
            with open_dir_beneath(folder, (name + PARTIAL,), follow_root=False) as fd:
                index = _write_parts(profile, stack, (kind, version), created, fd, folder / (name + PARTIAL))
                os.fsync(fd)
            os.rename(name + PARTIAL, name, src_dir_fd=top, dst_dir_fd=top)
            os.fsync(top)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(name + PARTIAL, dir_fd=top)
            raise
    return Taken(folder, name, index)


def _write_parts(
    profile: Profile, stack: RunningStack, what: tuple[Kind, str], created: datetime, fd: int, shown: Path
) -> Index:
    kind, version = what
    recipients = profile.backup.recipients
    sealed: dict[Part, Sealed] = {}
    with encrypting(recipients, fd, "db.dump.age") as db:
        _stream("postgres", "pg_dump", stack, DUMP, db)
        sealed["db.dump.age"] = db.close()
    with encrypting(recipients, fd, "media.tar.age") as media:
        _stream("api", "tar of the media", stack, MEDIA_TAR, media)
        sealed["media.tar.age"] = media.close()
    manifest = Manifest(
        created=created,
        kind=kind,
        tempo_version=version,
        last_migration=last_migration(stack),
        tempo_gen_version=__version__,
        contents={"db.dump": sealed["db.dump.age"].content, "media.tar": sealed["media.tar.age"].content},
    )
    with encrypting(recipients, fd, "manifest.json.age") as encryptor:
        encryptor.write(manifest.model_dump_json().encode())
        sealed["manifest.json.age"] = encryptor.close()
    for part, written in sealed.items():
        if stored_digest(fd, part, shown / part) != written.stored:
            raise CorruptBackup(shown / part, "reads back different from what was written (disk or file system)")
    index = Index(
        created=created,
        kind=kind,
        tempo_version=version,
        parts={part: written.stored for part, written in sealed.items()},
    )
    text = json.dumps(index.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    write_new(Path(INDEX), text.encode(), 0o600, dir_fd=fd, sync=True)
    return index


def _stream(service: str, what: str, stack: RunningStack, command: list[str], into: Encryptor) -> None:
    step = f"backup:{service}"
    first = True

    def sink(data: bytes) -> None:
        nonlocal first
        into.write(data)
        if first:
            first = False
            pause_at(step)

    code, stderr = stack.exec_stream(service, command, sink=sink)
    if code != 0:
        raise DeploymentError(f"{what} in the {service} container failed (exit {code}): {stderr.strip()[-400:]}")


def last_migration(stack: RunningStack) -> str | None:
    """The newest applied EF Core migration (None when Tempo has no migration history yet)."""
    output = bytearray()
    code, stderr = stack.exec_stream("postgres", LAST_MIGRATION, sink=output.extend)
    if code != 0 and "does not exist" in stderr:
        return None
    if code != 0:
        raise DeploymentError(f"reading __EFMigrationsHistory failed (exit {code}): {stderr.strip()[-300:]}")
    return output.decode(errors="replace").strip() or None
