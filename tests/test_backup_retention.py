"""Retention: restic's keep-daily/weekly/monthly rule over random backup histories (hypothesis), and pruning a
real backup folder without following planted symlinks or touching what it cannot read."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempo_gen.errors import UnsafeFile
from tempo_gen.models.host.backup import Retention
from tempo_gen.ops.backup.layout import INDEX, Index, backup_name, backup_names
from tempo_gen.ops.backup.retention import PROTECTED_KINDS, Backup, decide, prune

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
KINDS = ("scheduled", "manual", "pre-deploy", "safety")
HISTORY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def history(times: list[datetime], kinds: list[str] | None = None) -> list[Backup]:
    kinds = kinds or ["scheduled"] * len(times)
    return [Backup(backup_name(t), t, k) for t, k in zip(times, kinds, strict=True)]


def newest_per_period(backups: list[Backup], count: int, period: Callable[[datetime], Hashable]) -> set[str]:
    """The oracle: group by period, the `count` most recent periods, the newest backup of each."""
    groups: dict[Hashable, list[Backup]] = defaultdict(list)
    for backup in backups:
        groups[period(backup.created)].append(backup)
    recent = sorted(groups, key=lambda key: max(b.created for b in groups[key]), reverse=True)[:count]
    return {max(groups[key], key=lambda b: (b.created, b.name)).name for key in recent}


def expected_keep(backups: list[Backup], retention: Retention, now: datetime) -> set[str]:
    past = [b for b in backups if b.created <= now]
    kept = {b.name for b in backups if b.created > now}
    kept |= {max(backups, key=lambda b: (b.created, b.name)).name} if backups else set()
    kept |= {b.name for b in sorted(past, key=lambda b: (b.created, b.name), reverse=True)[: retention.last]}
    for kind in ("pre-deploy", "safety"):
        of_kind = [b for b in past if b.kind == kind]
        kept |= {max(of_kind, key=lambda b: (b.created, b.name)).name} if of_kind else set()
    kept |= newest_per_period(past, retention.daily, lambda t: t.date())
    kept |= newest_per_period(past, retention.weekly, lambda t: t.isocalendar()[:2])
    kept |= newest_per_period(past, retention.monthly, lambda t: (t.year, t.month))
    return kept


# Up to 40 backups in the three years before NOW (names are unique to the second), sometimes a few after it.
moments = st.integers(min_value=-3 * 366 * 86400, max_value=3 * 86400).map(lambda s: NOW + timedelta(seconds=s))
histories = st.lists(
    st.tuples(moments, st.sampled_from(KINDS)), max_size=40, unique_by=lambda pair: backup_name(pair[0])
)
retentions = st.builds(
    Retention,
    last=st.integers(min_value=1, max_value=5),
    daily=st.integers(min_value=1, max_value=10),
    weekly=st.integers(min_value=0, max_value=6),
    monthly=st.integers(min_value=0, max_value=8),
)


@HISTORY
@given(pairs=histories, retention=retentions)
def test_random_histories_keep_exactly_the_newest_of_each_recent_period(
    pairs: list[tuple[datetime, str]], retention: Retention
) -> None:
    backups = history([t for t, _ in pairs], [k for _, k in pairs])
    decision = decide(backups, retention, NOW)
    kept, removed = set(decision.keep), set(decision.remove)
    assert kept.isdisjoint(removed) and kept | removed == {b.name for b in backups}
    assert kept == expected_keep(backups, retention, NOW)
    if backups:
        assert max(backups, key=lambda b: b.created).name in kept
    future = sum(b.created > NOW for b in backups)
    assert (
        len(kept)
        <= retention.last + retention.daily + retention.weekly + retention.monthly + len(PROTECTED_KINDS) + future
    )
    assert list(decision.keep) == sorted(decision.keep, reverse=True)  # names sort like their times
    # Pruning what was kept keeps all of it: two runs in a row remove nothing more.
    again = decide([b for b in backups if b.name in kept], retention, NOW)
    assert set(again.keep) == kept and not again.remove


@HISTORY
@given(pairs=histories, retention=retentions, named=st.integers(min_value=0, max_value=39))
def test_a_backup_the_caller_names_is_always_kept(
    pairs: list[tuple[datetime, str]], retention: Retention, named: int
) -> None:
    backups = history([t for t, _ in pairs], [k for _, k in pairs])
    keep = {backups[named].name} if named < len(backups) else set()
    decision = decide(backups, retention, NOW, keep)
    assert keep <= set(decision.keep)
    assert set(decision.keep) == expected_keep(backups, retention, NOW) | keep


def test_a_hand_checked_history() -> None:
    # 2026-12-05 is a Saturday: ISO week 49 runs from Monday 2026-11-30.
    times = ["2026-12-05T03:15", "2026-12-04T03:15", "2026-12-03T03:15", "2026-12-01T03:15", "2026-11-30T03:15"]
    times += ["2026-11-15T03:15", "2026-10-01T03:15"]
    backups = history([at(t) for t in times])
    decision = decide(backups, Retention(last=1, daily=2, weekly=1, monthly=2), NOW)
    assert decision.keep == ("20261205T031500Z", "20261204T031500Z", "20261130T031500Z")
    assert decision.remove == ("20261203T031500Z", "20261201T031500Z", "20261115T031500Z", "20261001T031500Z")


def test_a_pause_in_backups_never_empties_the_folder() -> None:
    # The last backups are a year old: "the last 3 days that have a backup" are still 3 backups.
    backups = history([at("2025-11-01T03:15") + timedelta(days=d) for d in range(10)])
    assert len(decide(backups, Retention(last=1, daily=3, weekly=0, monthly=0), NOW).keep) == 3


def test_the_newest_pre_deploy_backup_outlives_the_daily_rule() -> None:
    times = [at("2026-12-05T03:15"), at("2026-12-04T16:00"), at("2026-12-04T03:15"), at("2026-12-03T09:00")]
    backups = history(times, ["scheduled", "scheduled", "pre-deploy", "pre-deploy"])
    decision = decide(backups, Retention(last=1, daily=2, weekly=0, monthly=0), NOW)
    assert decision.keep == ("20261205T031500Z", "20261204T160000Z", "20261204T031500Z")


def test_a_year_of_daily_backups_under_the_default_retention() -> None:
    backups = history([NOW - timedelta(days=d, hours=9) for d in range(400)])
    decision = decide(backups, Retention(), NOW)
    kept = [b for b in backups if b.name in decision.keep]
    # 7 days (Dec 5 back to Nov 29), the weeks of Nov 22 and Nov 15 (Nov 29 is a Sunday: week 48 is already
    # kept), and the month ends Oct 31, Sep 30, Aug 31 and Jul 31 (December's and November's are kept days).
    assert len(kept) == 7 + 2 + 4
    assert kept[0].created == NOW - timedelta(hours=9)
    assert [b.created.date().isoformat() for b in kept[7:]] == [
        "2026-11-22",
        "2026-11-15",
        "2026-10-31",
        "2026-09-30",
        "2026-08-31",
        "2026-07-31",
    ]


# --- pruning a folder ------------------------------------------------------------------------------------------


def write_backup(folder: Path, created: datetime, kind: str = "scheduled") -> Path:
    backup = folder / backup_name(created)
    backup.mkdir(mode=0o700, parents=True)
    digest = {"bytes": 3, "sha256": "0" * 64}
    parts = dict.fromkeys(("db.dump.age", "media.tar.age", "manifest.json.age"), digest)
    index = Index.model_validate({"created": created, "kind": kind, "tempo_version": "2.10.1", "parts": parts})
    (backup / INDEX).write_text(index.model_dump_json())
    for part in ("db.dump.age", "media.tar.age", "manifest.json.age"):
        (backup / part).write_bytes(b"age")
    return backup


def test_prune_removes_what_retention_drops_and_leaves_everything_else(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    for days in range(6):
        write_backup(folder, NOW - timedelta(days=days))
    partial = folder / f"{backup_name(NOW)}.partial"
    partial.mkdir()
    (folder / "drill.json").write_text("{}")
    report = prune(folder, Retention(last=1, daily=3, weekly=0, monthly=0), NOW)
    assert report.kept == tuple(backup_name(NOW - timedelta(days=d)) for d in range(3))
    assert report.removed == tuple(backup_name(NOW - timedelta(days=d)) for d in range(3, 6))
    assert backup_names(folder) == list(report.kept)
    assert partial.is_dir() and (folder / "drill.json").is_file()
    assert sorted(os.listdir(folder)) == sorted([*report.kept, partial.name, "drill.json"])
    assert report.summary() == "retention: kept 3, removed 3"


def test_prune_never_follows_a_symlink_planted_in_a_doomed_backup(tmp_path: Path) -> None:
    folder, outside = tmp_path / "backups", tmp_path / "precious"
    outside.mkdir()
    (outside / "file").write_text("keep me")
    write_backup(folder, NOW)
    old = write_backup(folder, NOW - timedelta(days=3))
    (old / "to-folder").symlink_to(outside)
    (old / "to-file").symlink_to(outside / "file")
    nested = old / "nested"
    nested.mkdir()
    (nested / "deeper").symlink_to(outside)
    # A symlink with a backup's name, pointing at a real folder elsewhere, is no backup: never listed, never removed.
    (folder / backup_name(NOW - timedelta(days=9))).symlink_to(outside)
    report = prune(folder, Retention(last=1, daily=1, weekly=0, monthly=0), NOW)
    assert report.removed == (old.name,)
    assert not os.path.lexists(old)
    assert (outside / "file").read_text() == "keep me"
    assert os.path.islink(folder / backup_name(NOW - timedelta(days=9)))


def test_a_backup_whose_index_cannot_be_read_is_reported_never_removed(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    write_backup(folder, NOW)
    garbled = write_backup(folder, NOW - timedelta(days=2))
    (garbled / INDEX).write_text("{not json")
    planted = write_backup(folder, NOW - timedelta(days=3))
    (planted / INDEX).unlink()
    (planted / INDEX).symlink_to(garbled / "db.dump.age")
    missing = write_backup(folder, NOW - timedelta(days=4))
    (missing / INDEX).unlink()
    report = prune(folder, Retention(last=1, daily=1, weekly=0, monthly=0), NOW)
    assert report.removed == ()
    assert report.unreadable_names == (garbled.name, planted.name, missing.name)
    assert "symlink" in dict(report.unreadable)[planted.name]
    assert all(p.is_dir() for p in (garbled, planted, missing))
    assert "3 with an unreadable index left alone" in report.summary()


def test_an_interrupted_prune_leaves_no_backup_lookalike_and_the_next_run_finishes(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    write_backup(folder, NOW)
    # What a prune killed between its rename and the end of the removal leaves behind.
    leftover = write_backup(folder, NOW - timedelta(days=1)).rename(folder / f".{backup_name(NOW)}.pruning")
    # ... or a symlink swapped in for a backup between the listing and the rename.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("keep me")
    planted = folder / f".{backup_name(NOW - timedelta(days=2))}.pruning"
    planted.symlink_to(outside)
    assert backup_names(folder) == [backup_name(NOW)]
    prune(folder, Retention(), NOW)
    assert not leftover.exists() and not os.path.lexists(planted)
    assert (outside / "file").read_text() == "keep me"


def test_the_caller_keeps_the_backup_it_just_verified(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    write_backup(folder, NOW)
    verified = write_backup(folder, NOW - timedelta(hours=1), kind="safety")
    report = prune(folder, Retention(last=1, daily=1, weekly=0, monthly=0), NOW, keep={verified.name})
    assert report.kept == (backup_name(NOW), verified.name) and verified.is_dir()


def test_a_symlinked_or_missing_backup_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_backup(real, NOW)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeFile, match="symlink"):
        prune(tmp_path / "link", Retention(), NOW)
    assert prune(tmp_path / "none", Retention(), NOW).kept == ()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=histories, retention=retentions)
def test_pruning_a_random_folder_leaves_exactly_the_kept_backups(
    tmp_path_factory: pytest.TempPathFactory, pairs: list[tuple[datetime, str]], retention: Retention
) -> None:
    folder = tmp_path_factory.mktemp("history") / "backups"
    folder.mkdir()
    for created, kind in pairs:
        write_backup(folder, created, kind)
    report = prune(folder, retention, NOW)
    backups = history([t for t, _ in pairs], [k for _, k in pairs])
    assert set(backup_names(folder)) == set(report.kept) == expected_keep(backups, retention, NOW)
