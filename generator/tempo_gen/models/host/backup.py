"""Backups: where they go, who can read them (age recipients), how long they stay, when they run."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from tempo_gen.models.base import AbsPath, StrictModel

# An age X25519 public key: "age1" and 58 bech32 characters. Only public keys: the host never needs a private one.
_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
# Written into a systemd unit as OnCalendar=: no newline, quote, backslash or `%` (a unit specifier).
_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,64}")
# A local absolute path, or sftp:[user@]host:/path; handed to restic as one argument, never through a shell.
_RESTIC_REPOSITORY = re.compile(
    r"(?:/[A-Za-z0-9._@+-]+)+/?|sftp:(?:[a-z_][a-z0-9_-]{0,31}@)?[A-Za-z0-9.-]+:(?:/[A-Za-z0-9._@+-]+)+/?"
)


def _recipient(value: str) -> str:
    if not _AGE_RECIPIENT.fullmatch(value):
        raise ValueError(f"{value!r} is not an age public key (age1 followed by 58 characters, from age-keygen -y)")
    return value


def _calendar(value: str) -> str:
    if not _CALENDAR.fullmatch(value) or value != value.strip():
        raise ValueError(
            f"{value!r} is not a usable systemd calendar expression here, e.g. '*-*-* 03:15:00' or 'Sun 04:30' "
            "(letters, digits, spaces and * : , . / ~ -)"
        )
    return value


def _repository(value: str) -> str:
    if not _RESTIC_REPOSITORY.fullmatch(value) or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise ValueError(
            f"{value!r} is not a usable restic repository: an absolute path or sftp:[user@]host:/path "
            "(letters, digits and . _ - @ +, no spaces, quotes or '..')"
        )
    return value


AgeRecipient = Annotated[str, AfterValidator(_recipient)]
Calendar = Annotated[str, AfterValidator(_calendar)]
ResticRepository = Annotated[str, AfterValidator(_repository)]


class Retention(StrictModel):
    """How many backups to keep per period; the newest of each day, week and month counts. Pruned only after a
    new backup verified."""

    last: int = Field(
        3, ge=1, le=100, description="The N newest backups, whatever their age (a manual one taken today stays)."
    )
    daily: int = Field(7, ge=1, le=366, description="Newest backup of each of the last N days.")
    weekly: int = Field(4, ge=0, le=520, description="Newest backup of each of the last N ISO weeks.")
    monthly: int = Field(6, ge=0, le=240, description="Newest backup of each of the last N months.")


class Restic(StrictModel):
    """An off-host second destination: each verified backup (still age-encrypted) is copied into a restic
    repository."""

    repository: ResticRepository = Field(
        description="Local path (another disk, a mount) or sftp:[user@]host:/path (keys from root's ~/.ssh)."
    )
    password_file: AbsPath = Field(
        description=(
            "File on the host holding the repository password (root-owned, 0400 or 0600; never in out/ or git). "
            "restic reads it itself: the password is in no argument or environment."
        )
    )


class Backup(StrictModel):
    """Encrypted backups of Tempo's database and media, their retention, schedule and drill."""

    dir: AbsPath | None = Field(
        None,
        description=("Folder of the backups on the host (created 0700, root). Default: /var/backups/tempo-gen/<name>."),
    )
    recipients: list[AgeRecipient] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "age public keys (age1...) every backup is encrypted to; keep the private keys off this host. "
            "Backups refuse to run without one, and audit reports it."
        ),
    )
    retention: Retention = Retention()
    restic: Restic | None = Field(None, description="Optional off-host copy of every verified backup.")
    schedule: Calendar = Field(
        "*-*-* 03:15:00", description="When the rendered systemd timer runs `tempo-gen backup` (OnCalendar=)."
    )
    drill_schedule: Calendar = Field(
        "Sun *-*-* 04:30:00",
        description="When the rendered systemd timer runs `tempo-gen backup drill` (OnCalendar=).",
    )
    max_age_hours: int = Field(
        26, ge=1, le=24 * 366, description="`audit --live` reports the last backup overdue after this many hours."
    )
    drill_max_age_days: int = Field(
        8, ge=1, le=366, description="`audit --live` reports the last successful drill overdue after this many days."
    )

    def folder(self, name: str) -> str:
        return self.dir or f"/var/backups/tempo-gen/{name}"
