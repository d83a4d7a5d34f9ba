"""The backup folder's layout, the one contract of backup, restore, drill, retention and `audit --live`.

    <folder>/                      0700, root (profile: backup.dir)
      20261205T031500Z/            one complete backup, named by its UTC creation time, 0700
        db.dump.age                pg_dump custom format, encrypted to the profile's age recipients
        media.tar.age              the media volume without imports/ (tar), encrypted
        manifest.json.age          Tempo version, last migration, tempo-gen version, plaintext sizes and sha256
        index.json                 plaintext, no content: creation time, kind, Tempo version, and the bytes and
                                   sha256 of each encrypted file (what retention, audit and a key-less check read)
      20261205T031500Z.partial/    a backup being written: never read; the next run removes it
      drill.json                   the last successful drill
      restore.json                 only while a restore runs (or after one was killed): the backup being
                                   restored, the safety backup of what was there before, the step reached

A backup exists only once its folder has its final name: it is written as
<name>.partial and renamed after every part verified, so an interrupted run
never leaves a folder that looks complete. Every file here may have been
planted: names are matched, reads never follow a symlink and are bounded.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AwareDatetime, Field, ValidationError

from tempo_gen.errors import UnsafeFile
from tempo_gen.models.base import StrictModel, VersionNumber
from tempo_gen.safe_fs import open_dir_beneath, read_at

FORMAT: Literal[1] = 1
PARTS: tuple[Part, ...] = ("db.dump.age", "media.tar.age", "manifest.json.age")
INDEX = "index.json"
DRILL_RECORD = "drill.json"
RESTORE_JOURNAL = "restore.json"
PARTIAL = ".partial"
NAME = re.compile(r"\d{8}T\d{6}Z")  # a backup folder: its UTC creation time
_INDEX_LIMIT = 64 * 1024

Part = Literal["db.dump.age", "media.tar.age", "manifest.json.age"]
Content = Literal["db.dump", "media.tar"]
CONTENTS: dict[Part, Content] = {"db.dump.age": "db.dump", "media.tar.age": "media.tar"}
"""The encrypted parts whose plaintext the manifest describes (the manifest itself is the third part)."""
Kind = Literal["scheduled", "manual", "pre-deploy", "safety"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PartDigest(StrictModel):
    bytes: int = Field(ge=0)
    sha256: Sha256


class Index(StrictModel):
    """index.json: what can be known of a backup without its key."""

    format: Literal[1] = FORMAT
    created: AwareDatetime
    kind: Kind
    tempo_version: VersionNumber
    parts: dict[Part, PartDigest]


class Manifest(StrictModel):
    """manifest.json.age, decrypted: what the backup holds, checked by restore before anything is touched."""

    format: Literal[1] = FORMAT
    created: AwareDatetime
    kind: Kind
    tempo_version: VersionNumber
    last_migration: Annotated[str, Field(max_length=300)] | None
    """The newest row of Tempo's EF Core `__EFMigrationsHistory` (None: the table is missing)."""
    tempo_gen_version: Annotated[str, Field(max_length=64)]
    contents: dict[Content, PartDigest]
    """Plaintext size and sha256 of each encrypted part."""


# The steps of a restore, in order: a journal at "stopped" or later means the deployment may be half-restored.
RestoreStep = Literal["verified", "safety", "stopped", "database", "media", "started"]
TOUCHING: tuple[RestoreStep, ...] = ("stopped", "database", "media", "started")


class RestoreJournal(StrictModel):
    """restore.json: a restore under way; the next backup or restore run finds it if this one was killed."""

    format: Literal[1] = FORMAT
    backup: Annotated[str, Field(pattern=NAME.pattern)]
    safety: Annotated[str, Field(pattern=NAME.pattern)] | None = None
    step: RestoreStep
    # What the media are restored through, noted while the API still ran (a recovery finds it stopped).
    media_volume: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")]
    api_image: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    api_user: Annotated[str, Field(pattern=r"^[0-9]{1,10}(:[0-9]{1,10})?$")]


class DrillRecord(StrictModel):
    """drill.json: the last drill that restored a backup and found it equal to the live deployment."""

    format: Literal[1] = FORMAT
    finished: AwareDatetime
    backup: Annotated[str, Field(pattern=NAME.pattern)]
    tables: int = Field(ge=0)
    rows: int = Field(ge=0)
    media_files: int = Field(ge=0)


_Record = TypeVar("_Record", bound=StrictModel)


class CorruptBackup(UnsafeFile):
    """A file of the backup folder that is not what tempo-gen writes there."""


def backup_name(moment: datetime) -> str:
    """The folder name of a backup created at `moment`."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def backup_names(folder: Path) -> list[str]:
    """The complete backups in `folder`, newest first: real folders with a backup's name (no .partial, no
    symlink). A missing folder has none."""
    try:
        with open_dir_beneath(folder, follow_root=False) as fd:
            return sorted((name for name in os.listdir(fd) if _is_backup_dir(fd, name)), reverse=True)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise


def partial_names(folder: Path) -> list[str]:
    """Backups an interrupted run left half-written (for the next run to remove)."""
    try:
        with open_dir_beneath(folder, follow_root=False) as fd:
            return sorted(name for name in os.listdir(fd) if _is_backup_dir(fd, name, PARTIAL))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise


def read_index(folder: Path, name: str) -> Index:
    """The index.json of backup `name`; CorruptBackup when it is missing, planted or malformed."""
    shown = folder / name / INDEX
    with open_dir_beneath(folder, (name,), follow_root=False) as fd:
        raw = read_at(fd, INDEX, _INDEX_LIMIT, shown)
    try:
        return Index.model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptBackup(shown, f"is not a tempo-gen backup index ({exc.errors()[0]['msg']})") from None


def read_drill_record(folder: Path) -> DrillRecord | None:
    """The last successful drill, or None when no drill has passed yet."""
    return _read_record(folder, DRILL_RECORD, DrillRecord, "drill record")


def read_restore_journal(folder: Path) -> RestoreJournal | None:
    """The journal of a restore under way or killed, or None."""
    return _read_record(folder, RESTORE_JOURNAL, RestoreJournal, "restore journal")


def _read_record(folder: Path, name: str, model: type[_Record], what: str) -> _Record | None:
    shown = folder / name
    if not os.path.lexists(shown):
        return None
    with open_dir_beneath(folder, follow_root=False) as fd:
        raw = read_at(fd, name, _INDEX_LIMIT, shown)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptBackup(shown, f"is not a tempo-gen {what} ({exc.errors()[0]['msg']})") from None


def _is_backup_dir(dir_fd: int, name: str, suffix: str = "") -> bool:
    if not (name.endswith(suffix) and NAME.fullmatch(name.removesuffix(suffix) if suffix else name)):
        return False
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
