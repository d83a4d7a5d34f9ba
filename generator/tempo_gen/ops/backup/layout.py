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
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, ValidationError

from tempo_gen.errors import UnsafeFile
from tempo_gen.models.base import StrictModel, VersionNumber
from tempo_gen.safe_fs import open_dir_beneath, read_at

FORMAT: Literal[1] = 1
PARTS = ("db.dump.age", "media.tar.age", "manifest.json.age")
INDEX = "index.json"
DRILL_RECORD = "drill.json"
PARTIAL = ".partial"
_NAME = re.compile(r"\d{8}T\d{6}Z")
_INDEX_LIMIT = 64 * 1024

Part = Literal["db.dump.age", "media.tar.age", "manifest.json.age"]
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


class DrillRecord(StrictModel):
    """drill.json: the last drill that restored a backup and found it equal to the live deployment."""

    format: Literal[1] = FORMAT
    finished: AwareDatetime
    backup: Annotated[str, Field(pattern=_NAME.pattern)]
    tables: int = Field(ge=0)
    rows: int = Field(ge=0)
    media_files: int = Field(ge=0)


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
    shown = folder / DRILL_RECORD
    if not os.path.lexists(shown):
        return None
    with open_dir_beneath(folder, follow_root=False) as fd:
        raw = read_at(fd, DRILL_RECORD, _INDEX_LIMIT, shown)
    try:
        return DrillRecord.model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptBackup(shown, f"is not a tempo-gen drill record ({exc.errors()[0]['msg']})") from None


def _is_backup_dir(dir_fd: int, name: str, suffix: str = "") -> bool:
    if not (name.endswith(suffix) and _NAME.fullmatch(name.removesuffix(suffix) if suffix else name)):
        return False
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
