"""Retention: which complete backups to keep, and removing the others without following a planted symlink.

The rule is restic's `forget --keep-daily/--keep-weekly/--keep-monthly`, so the
off-host copy (offsite.py) can apply the very same rule: the newest backup of
each of the last `daily` days that have a backup, of each of the last `weekly`
ISO weeks, of each of the last `monthly` months (UTC, by the index's `created`).
Counting days that have a backup, not calendar days, means a pause in backups
never empties the folder. Never pruned: the newest backup, backups dated after
`now` (the clock went back: nothing to reason with), the newest pre-deploy
backup (the way back across Tempo's forward-only migrations after an upgrade),
the newest safety backup (the state the last restore replaced),
whatever the caller names in `keep`, and a backup whose index cannot be read
(reported instead). A removal renames the folder out of the backup names first,
so an interrupted prune never leaves a half-deleted folder that looks complete.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tempo_gen.errors import UnsafeFile
from tempo_gen.models.host.backup import Retention
from tempo_gen.ops.backup.layout import NAME, Index, backup_names, read_index
from tempo_gen.safe_fs import open_dir_beneath, remove_tree_at

PRUNING = ".pruning"
# A folder being removed: `.<backup name>.pruning`, invisible to backup_names().
_PRUNING_NAME = re.compile(rf"\.{NAME.pattern}\.pruning")


@dataclass(frozen=True)
class Backup:
    """What retention needs of one complete backup."""

    name: str
    created: datetime
    kind: str


@dataclass(frozen=True)
class Decision:
    keep: tuple[str, ...]
    """Names kept, newest first."""
    remove: tuple[str, ...]
    """Names to remove, newest first."""


@dataclass(frozen=True)
class PruneReport:
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]
    """(name, reason) of backups whose index could not be read: never removed, for a person to look at."""

    def summary(self) -> str:
        """One line for the backup's log."""
        line = f"retention: kept {len(self.kept)}, removed {len(self.removed)}"
        if self.unreadable:
            line += f", {len(self.unreadable)} with an unreadable index left alone ({', '.join(self.unreadable_names)})"
        return line

    @property
    def unreadable_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.unreadable)


def _day(moment: datetime) -> tuple[int, int, int]:
    return moment.year, moment.month, moment.day


def _iso_week(moment: datetime) -> tuple[int, int]:
    year, week, _ = moment.isocalendar()
    return year, week


def _month(moment: datetime) -> tuple[int, int]:
    return moment.year, moment.month


def _newest_per_period(
    newest_first: list[Backup], count: int, period: Callable[[datetime], tuple[int, ...]]
) -> set[str]:
    """The newest backup of each of the `count` most recent periods that have one (restic's rule)."""
    kept: set[str] = set()
    last: tuple[int, ...] | None = None
    for backup in newest_first:
        if len(kept) == count:
            break
        bucket = period(backup.created)
        if bucket != last:
            kept.add(backup.name)
            last = bucket
    return kept


PROTECTED_KINDS = ("pre-deploy", "safety")


def decide(backups: Collection[Backup], retention: Retention, now: datetime, keep: Collection[str] = ()) -> Decision:
    """Which of `backups` (complete, with a readable index) to keep under `retention` at `now`; pure."""
    now = now.astimezone(UTC)
    ordered = sorted(backups, key=lambda b: (b.created.astimezone(UTC), b.name), reverse=True)
    utc = [Backup(b.name, b.created.astimezone(UTC), b.kind) for b in ordered]
    kept = {b.name for b in utc if b.created > now or b.name in keep}
    past = [b for b in utc if b.created <= now]
    kept |= {b.name for b in utc[:1]} | {b.name for b in past[: retention.last]}  # the newest; the last N
    for kind in PROTECTED_KINDS:  # the newest of each: a way back that a routine backup does not replace
        kept |= {b.name for b in [b for b in past if b.kind == kind][:1]}
    kept |= _newest_per_period(past, retention.daily, _day)
    kept |= _newest_per_period(past, retention.weekly, _iso_week)
    kept |= _newest_per_period(past, retention.monthly, _month)
    return Decision(
        keep=tuple(b.name for b in utc if b.name in kept),
        remove=tuple(b.name for b in utc if b.name not in kept),
    )


def read_backups(folder: Path) -> tuple[list[Backup], list[tuple[str, str]]]:
    """The complete backups of `folder` with a readable index, and (name, reason) of those without."""
    readable: list[Backup] = []
    unreadable: list[tuple[str, str]] = []
    for name in backup_names(folder):
        try:
            index: Index = read_index(folder, name)
        except UnsafeFile as exc:
            unreadable.append((name, exc.reason))
        except OSError as exc:
            unreadable.append((name, exc.strerror or str(exc)))
        else:
            readable.append(Backup(name, index.created, index.kind))
    return readable, unreadable


def prune(folder: Path, retention: Retention, now: datetime, *, keep: Collection[str] = ()) -> PruneReport:
    """Remove the backups of `folder` that `retention` does not keep at `now`; call it only after a new
    backup verified, naming that backup in `keep`. Leftovers of an interrupted prune are removed too."""
    backups, unreadable = read_backups(folder)
    decision = decide(backups, retention, now, keep)
    if not os.path.lexists(folder):
        return PruneReport(kept=(), removed=(), unreadable=())
    with open_dir_beneath(folder, follow_root=False) as fd:
        for leftover in sorted(n for n in os.listdir(fd) if _PRUNING_NAME.fullmatch(n)):
            _remove(fd, leftover, folder)
        for name in decision.remove:
            doomed = f".{name}{PRUNING}"
            os.rename(name, doomed, src_dir_fd=fd, dst_dir_fd=fd)
            _remove(fd, doomed, folder)
        os.fsync(fd)
    return PruneReport(kept=decision.keep, removed=decision.remove, unreadable=tuple(unreadable))


def _remove(dir_fd: int, name: str, folder: Path) -> None:
    """Remove `name`: a folder with all it holds, anything else (a symlink swapped in) by unlinking it alone."""
    try:
        if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        remove_tree_at(dir_fd, name, folder / name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UnsafeFile(folder / name, f"cannot remove it: {exc.strerror or exc}") from None
