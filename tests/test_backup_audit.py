"""audit: the backup checklist item, and `audit --live`'s age of the last backup and the last successful drill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.project import VALID_PROFILE, RunCli
from support.proxy import dev_profile
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.layout import DRILL_RECORD, INDEX, DrillRecord, Index, backup_name
from tempo_gen.reports.audit import checklist
from tempo_gen.reports.backup_status import LiveCheck, backup_checks

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
RECIPIENT = "age1az7lh68m9mwua556c0yvyadw8qz6lzawfmlgndy54jysurcgyqqqgqkz08"


def profile_in(folder: Path, **backup: object) -> Profile:
    return dev_profile("nginx", backup={"dir": str(folder), "recipients": [RECIPIENT], **backup})


def write_backup(folder: Path, created: datetime) -> Path:
    backup = folder / backup_name(created)
    backup.mkdir(parents=True)
    parts = {part: {"bytes": 1, "sha256": "0" * 64} for part in ("db.dump.age", "media.tar.age", "manifest.json.age")}
    index = {"created": created, "kind": "scheduled", "tempo_version": "2.10.1", "parts": parts}
    (backup / INDEX).write_text(Index.model_validate(index).model_dump_json())
    return backup


def write_drill(folder: Path, finished: datetime, backup: str) -> None:
    record = DrillRecord(finished=finished, backup=backup, tables=12, rows=3400, media_files=17)
    (folder / DRILL_RECORD).write_text(record.model_dump_json())


def lines(checks: list[LiveCheck]) -> list[str]:
    return [check.line() for check in checks]


def test_a_fresh_backup_and_drill_are_ok(tmp_path: Path) -> None:
    name = write_backup(tmp_path, NOW - timedelta(hours=5)).name
    write_backup(tmp_path, NOW - timedelta(hours=29))
    write_drill(tmp_path, NOW - timedelta(days=2), name)
    assert lines(backup_checks(profile_in(tmp_path), NOW)) == [
        f"ok        backup: last complete backup {name}, 5 h old (at most 26 h: backup.max_age_hours)",
        f"ok        drill: last successful drill restored {name}, 2.0 days old "
        "(at most 8 days: backup.drill_max_age_days)",
    ]


def test_old_ones_are_overdue_against_the_profiles_thresholds(tmp_path: Path) -> None:
    name = write_backup(tmp_path, NOW - timedelta(hours=30)).name
    write_drill(tmp_path, NOW - timedelta(days=9), name)
    backup, drill = backup_checks(profile_in(tmp_path), NOW)
    assert not backup.ok and backup.line().startswith("OVERDUE   backup: ") and "30 h old" in backup.detail
    assert not drill.ok and "9.0 days old (at most 8 days" in drill.detail
    relaxed = backup_checks(profile_in(tmp_path, max_age_hours=48, drill_max_age_days=10), NOW)
    assert all(check.ok for check in relaxed)


def test_nothing_yet_is_overdue(tmp_path: Path) -> None:
    backup, drill = backup_checks(profile_in(tmp_path / "missing"), NOW)
    assert not backup.ok and f"no complete backup in {tmp_path / 'missing'}" in backup.detail
    assert not drill.ok and "no successful restore drill recorded" in drill.detail


def test_partial_unreadable_and_future_backups_do_not_count_as_recent(tmp_path: Path) -> None:
    older = write_backup(tmp_path, NOW - timedelta(hours=40)).name
    (tmp_path / f"{backup_name(NOW)}.partial").mkdir()
    broken = write_backup(tmp_path, NOW - timedelta(hours=1))
    (broken / INDEX).write_text("{")
    backup = backup_checks(profile_in(tmp_path), NOW)[0]
    assert not backup.ok and older in backup.detail
    assert "1 backup(s) with an unreadable index.json" in backup.detail
    ahead = write_backup(tmp_path, NOW + timedelta(days=3)).name
    backup = backup_checks(profile_in(tmp_path), NOW)[0]
    assert not backup.ok and f"{ahead} is dated 3.0 days in the future: check the clock" in backup.detail


def test_a_planted_folder_or_drill_record_is_reported_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    name = write_backup(real, NOW - timedelta(hours=1)).name
    (tmp_path / "link").symlink_to(real)
    backup, drill = backup_checks(profile_in(tmp_path / "link"), NOW)
    assert not backup.ok and "symlink" in backup.detail
    assert not drill.ok
    write_drill(real, NOW, name)
    (real / DRILL_RECORD).write_text('{"format": 1, "finished": "yesterday"}')
    drill = backup_checks(profile_in(real), NOW)[1]
    assert not drill.ok and "is not a tempo-gen drill record" in drill.detail
    (real / DRILL_RECORD).unlink()
    (real / DRILL_RECORD).symlink_to(tmp_path / "elsewhere.json")
    drill = backup_checks(profile_in(real), NOW)[1]
    assert not drill.ok and "symlink" in drill.detail


def test_the_checklist_says_whether_backups_can_run(tmp_path: Path) -> None:
    missing = {c.item: c for c in checklist(dev_profile("nginx"))}[
        "Backups encrypted, stored securely and restore-tested"
    ]
    assert not missing.met and "backup.recipients is empty: backups cannot run" in missing.how
    item = {c.item: c for c in checklist(profile_in(tmp_path))}["Backups encrypted, stored securely and restore-tested"]
    assert item.met and f"age to 1 recipient(s) into {tmp_path}" in item.how
    assert "no off-host copy" in item.how


def test_audit_live_prints_both_ages_and_plain_audit_neither(cli: RunCli, project: Path) -> None:
    folder = project / "backups"
    write_backup(folder, datetime.now(UTC) - timedelta(days=3))
    text = VALID_PROFILE.replace("proxy:\n  publish_addresses: [203.0.113.10]\n", "proxy:\n  kind: none\n")
    (project / "profiles" / "demo.yaml").write_text(text + f"backup:\n  dir: {folder}\n  recipients: [{RECIPIENT}]\n")
    live = cli("audit", "--live")
    assert live.exit_code == 0
    assert "  OVERDUE   backup: last complete backup " in live.output and "3.0 days old" in live.output
    assert "  OVERDUE   drill: no successful restore drill recorded in " in live.output
    assert cli("audit", "--live", "--strict").exit_code == 1
    plain = cli("audit")
    assert "OVERDUE" not in plain.output and "ok        Backups encrypted" in plain.output
