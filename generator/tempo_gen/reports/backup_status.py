"""`audit --live`: how old the last complete backup and the last successful drill are, against the profile's
thresholds (backup.max_age_hours, backup.drill_max_age_days), read from the backup folder's index and drill.json."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tempo_gen.errors import UnsafeFile
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.layout import read_drill_record
from tempo_gen.ops.backup.retention import read_backups

# A backup or drill dated this far ahead of the clock is not trusted as recent.
_CLOCK_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class LiveCheck:
    """One line of `audit --live`: `ok`, or OVERDUE / MISMATCH / unknown with the reason."""

    status: str
    subject: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        return f"{self.status:9} {self.subject}: {self.detail}"


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"


def last_backup(profile: Profile, now: datetime) -> LiveCheck:
    folder = Path(profile.backup.folder(profile.name))
    limit = timedelta(hours=profile.backup.max_age_hours)
    wanted = f"(at most {profile.backup.max_age_hours} h: backup.max_age_hours)"
    try:
        backups, unreadable = read_backups(folder)
    except UnsafeFile as exc:
        return LiveCheck("OVERDUE", "backup", f"{exc.path}: {exc.reason}")
    except OSError as exc:
        return LiveCheck("OVERDUE", "backup", f"cannot read {folder}: {exc.strerror or exc}")
    broken = f"; {len(unreadable)} backup(s) with an unreadable index.json" if unreadable else ""
    if not backups:
        return LiveCheck("OVERDUE", "backup", f"no complete backup in {folder} {wanted}{broken}")
    newest = max(backups, key=lambda b: (b.created, b.name))
    return _against(now, newest.created, limit, "backup", f"last complete backup {newest.name}", wanted, broken)


def last_drill(profile: Profile, now: datetime) -> LiveCheck:
    folder = Path(profile.backup.folder(profile.name))
    days = profile.backup.drill_max_age_days
    wanted = f"(at most {days} days: backup.drill_max_age_days)"
    try:
        record = read_drill_record(folder)
    except UnsafeFile as exc:
        return LiveCheck("OVERDUE", "drill", f"{exc.path}: {exc.reason}")
    except OSError as exc:
        return LiveCheck("OVERDUE", "drill", f"cannot read {folder}: {exc.strerror or exc}")
    if record is None:
        return LiveCheck("OVERDUE", "drill", f"no successful restore drill recorded in {folder} {wanted}")
    what = f"last successful drill restored {record.backup}"
    return _against(now, record.finished, timedelta(days=days), "drill", what, wanted, "")


def _against(
    now: datetime, moment: datetime, limit: timedelta, subject: str, what: str, wanted: str, extra: str
) -> LiveCheck:
    age = now.astimezone(UTC) - moment.astimezone(UTC)
    if age < -_CLOCK_SLACK:
        return LiveCheck("OVERDUE", subject, f"{what} is dated {_age(-age)} in the future: check the clock{extra}")
    return LiveCheck(
        "ok" if age <= limit else "OVERDUE", subject, f"{what}, {_age(max(age, timedelta(0)))} old {wanted}{extra}"
    )


def backup_checks(profile: Profile, now: datetime | None = None) -> list[LiveCheck]:
    """audit --live: the last backup's and the last drill's age, each ok or OVERDUE."""
    now = now or datetime.now(UTC)
    return [last_backup(profile, now), last_drill(profile, now)]
