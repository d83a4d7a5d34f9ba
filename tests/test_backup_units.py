"""backup/ as rendered: the systemd services and timers (checked by systemd-analyze verify and calendar), and the
backup section's validators that keep hostile values out of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from support.engine import unavailable
from support.proxy import dev_profile, target_input_for
from tempo_gen.errors import RenderError
from tempo_gen.models.host.backup import Backup
from tempo_gen.profile.loader import load_profile
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.host import backup_units
from tempo_gen.targets.host.backup_units import Runtime, exec_argument

REPO = Path(__file__).resolve().parents[1]
OFFLINE = "age1az7lh68m9mwua556c0yvyadw8qz6lzawfmlgndy54jysurcgyqqqgqkz08"
DRILL = "age1clw5u978yethj8ns8aj8d6ayjv39ph4jx70mn78fmxtddjfy5spsgcu2p3"


def rendered(runtime: Runtime | None = None, source: str = "profiles/test.yaml", **overlay: Any) -> dict[str, str]:
    backup = {"recipients": [OFFLINE, DRILL], **overlay.pop("backup", {})}
    profile = dev_profile("nginx", backup=backup, **overlay)
    target_input = TargetInput(profile, source, target_input_for(profile).secrets_dir)
    return {str(f.path): f.content for f in backup_units.files_for(target_input, runtime)}


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("systemd-analyze"):
        unavailable("systemd-analyze (Debian: systemd) is not installed")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_daily_backup_and_weekly_drill_units_with_their_schedules() -> None:
    files = rendered(backup={"schedule": "*-*-* 02:05:00", "drill_schedule": "Sat *-*-* 05:00:00"})
    prefix = "backup/tempo-gen-nginx-test"
    assert sorted(files) == sorted(
        [
            "backup/install.sh",
            f"{prefix}-backup.service",
            f"{prefix}-backup.timer",
            f"{prefix}-backup-drill.service",
            f"{prefix}-backup-drill.timer",
        ]
    )
    backup, drill = files[f"{prefix}-backup.service"], files[f"{prefix}-backup-drill.service"]
    assert "ExecStart=/usr/local/bin/tempo-gen backup profiles/test.yaml\n" in backup
    assert "LoadCredential=drill.key:/etc/tempo-gen/nginx-test/drill.key\n" in drill
    assert "ExecStart=/usr/local/bin/tempo-gen backup drill profiles/test.yaml --identity %d/drill.key\n" in drill
    for service in (backup, drill):
        for option in ("Type=oneshot", "UMask=0077", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=full"):
            assert f"\n{option}\n" in service
        assert "OnFailure" not in service  # no monitoring.alert: a failed unit is what a monitor sees
    assert "OnCalendar=*-*-* 02:05:00\n" in files[f"{prefix}-backup.timer"]
    assert "OnCalendar=Sat *-*-* 05:00:00\n" in files[f"{prefix}-backup-drill.timer"]
    assert "Persistent=true\n" in files[f"{prefix}-backup.timer"]
    install = files["backup/install.sh"]
    assert "install -d -m 0700 /var/backups/tempo-gen/nginx-test\n" in install
    timers = "tempo-gen-nginx-test-backup.timer tempo-gen-nginx-test-backup-drill.timer"
    assert f"systemctl enable --now {timers}\n" in install


def test_a_failed_backup_or_drill_alerts_through_monitoring_alert() -> None:
    files = rendered(monitoring={"alert": "https://hooks.example.org/tempo"})
    for service in ("backup", "backup-drill"):
        unit = files[f"backup/tempo-gen-nginx-test-{service}.service"]
        assert "OnFailure=tempo-gen-nginx-test-alert@%n.service\n" in unit
    alert = files["backup/tempo-gen-nginx-test-alert@.service"]
    assert 'ExecStart=/etc/tempo-gen/nginx-test/alert.sh "tempo-gen on %H: %i failed' in alert
    assert "readonly target='https://hooks.example.org/tempo'" in files["backup/alert.sh"]
    assert "fail2ban" not in files["backup/alert.sh"]


def test_nothing_is_rendered_without_a_recipient() -> None:
    assert rendered(backup={"recipients": []}) == {}


def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart's programs exist: a stand-in tempo-gen and alert.sh where the units say.
    install_dir, program = tmp_path / "etc", tmp_path / "bin" / "tempo-gen"
    for executable in (program, install_dir / "alert.sh"):
        executable.parent.mkdir(exist_ok=True)
        executable.write_text("#!/bin/sh\nexit 0\n")
        executable.chmod(0o755)
    runtime = Runtime(install_dir=str(install_dir), tempo_gen=str(program))
    files = rendered(runtime, monitoring={"alert": "/usr/local/bin/page-me"}, backup={"restic": None})
    units = tmp_path / "units"
    units.mkdir()
    for path, content in files.items():
        if path.endswith((".service", ".timer")):
            (units / Path(path).name).write_text(content)
    for unit in sorted(units.iterdir()):
        done = systemd_analyze("verify", str(unit))
        assert done.returncode == 0 and not done.stderr.strip(), (unit.name, done.stderr)
    # verify does find a broken unit: the same service with a relative ExecStart.
    broken = units / "tempo-gen-nginx-test-backup.service"
    broken.write_text(broken.read_text().replace(f"ExecStart={program}", "ExecStart=tempo-gen-nowhere"))
    assert systemd_analyze("verify", str(broken)).returncode != 0


def test_the_profiles_calendars_are_what_systemd_accepts() -> None:
    schedules = {Backup().schedule, Backup().drill_schedule}
    for profile in sorted((REPO / "profiles").glob("*.yaml")):
        loaded = load_profile(profile, REPO).profile.backup
        schedules |= {loaded.schedule, loaded.drill_schedule}
    schedules |= {"daily", "weekly", "Mon..Fri *-*-* 01:00", "*-*-1 00:00:00", "Sun 04:30"}
    for calendar in sorted(schedules):
        assert systemd_analyze("calendar", calendar).returncode == 0, calendar


def test_the_profile_path_is_one_word_of_the_exec_line_whatever_it_holds() -> None:
    assert exec_argument("profiles/test.yaml") == "profiles/test.yaml"
    assert exec_argument('my "100%" $HOME\\x') == '"my \\"100%%\\" $$HOME\\\\x"'
    with pytest.raises(RenderError, match="control character"):
        exec_argument("profiles/a\nExecStartPre=/bin/sh")
    files = rendered(source="profiles/my 50% $site.yaml")
    assert 'backup "profiles/my 50%% $$site.yaml"\n' in files["backup/tempo-gen-nginx-test-backup.service"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipients", ["AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"]),
        ("recipients", [OFFLINE.upper()]),
        ("recipients", [OFFLINE[:-1]]),
        ("recipients", [OFFLINE + "\nExecStartPre=/bin/sh"]),
        ("recipients", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG"]),
        ("recipients", [OFFLINE] * 17),
        ("schedule", "*-*-* 03:00\nExecStartPre=/bin/sh"),
        ("schedule", "daily; rm -rf /"),
        ("schedule", "%H"),
        ("schedule", " daily"),
        ("schedule", "'daily'"),
        ("schedule", "x" * 65),
        ("drill_schedule", "Sun\\n"),
        ("drill_schedule", ""),
    ],
)
def test_hostile_recipients_and_calendars_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Backup.model_validate({field: value})


@pytest.mark.parametrize(
    "repository",
    [
        "relative/repo",
        "/srv/restic/../../etc",
        "/srv/restic/./x",
        "/srv/restic repo",
        "-o/srv",
        "s3:s3.amazonaws.com/bucket",
        "rest:https://host/",
        "sftp:host:relative",
        "sftp:-oProxyCommand=sh@host:/x",
        "sftp:user@host:/x'y",
        "sftp:user@ho st:/x",
        "/srv/restic\n",
    ],
)
def test_hostile_restic_repositories_are_refused(repository: str) -> None:
    with pytest.raises(ValidationError, match="not a usable restic repository"):
        Backup.model_validate({"restic": {"repository": repository, "password_file": "/etc/tempo-gen/pw"}})


def test_usable_values_are_accepted() -> None:
    backup = Backup.model_validate(
        {
            "recipients": [OFFLINE, DRILL],
            "schedule": "Mon..Fri *-*-* 01:00",
            "drill_schedule": "weekly",
            "restic": {"repository": "sftp:backup@backup.example.org:/srv/restic/tempo", "password_file": "/etc/pw"},
        }
    )
    assert backup.folder("demo") == "/var/backups/tempo-gen/demo"
    assert Backup.model_validate({"restic": {"repository": "/mnt/offsite/restic", "password_file": "/etc/pw"}})
