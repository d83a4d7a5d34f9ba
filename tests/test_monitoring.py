"""monitoring/ as rendered, the monitoring profile fields, audit's report and the audit trail (no root, no tools)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from support.project import VALID_PROFILE, RunCli
from support.proxy import dev_profile, target_input_for
from tempo_gen.models.profile import Profile
from tempo_gen.policy.access_log import SCANNER_PATHS
from tempo_gen.targets.host import monitoring


def rendered(kind: str = "nginx", **overlay: Any) -> dict[str, str]:
    firewall = {"admin_cidrs": ["198.51.100.0/24", "2001:db8::/32"], **overlay.pop("firewall", {})}
    profile = dev_profile(kind, firewall=firewall, **overlay)
    return {str(f.path): f.content for f in monitoring.files_for(target_input_for(profile))}


def test_jails_filters_action_ban_table_logrotate_and_install_script() -> None:
    files = rendered(monitoring={"bans": {"login_failures": 4, "ban_time": 900}, "access_log": {"max_size": "20m"}})
    prefix = "monitoring/fail2ban"
    assert sorted(files) == sorted(
        [
            "monitoring/bans.nft",
            "monitoring/install.sh",
            "monitoring/logrotate",
            "monitoring/nginx-utc.conf",  # a host nginx: UTC times through systemd
            f"{prefix}/action.d/tempo-gen-nginx-test.conf",
            f"{prefix}/jail.d/tempo-gen-nginx-test.local",
            *(f"{prefix}/filter.d/tempo-gen-nginx-test-{jail}.conf" for jail in ("login", "ratelimit", "scanner")),
        ]
    )
    jail = files[f"{prefix}/jail.d/tempo-gen-nginx-test.local"]
    login = jail.split("[tempo-gen-nginx-test-login]")[1].split("\n\n")[0] + "\n"
    assert "maxretry = 4\n" in login and "bantime = 900\n" in login
    assert "logpath = /var/log/tempo-gen/nginx-test/access.json\n" in login
    assert "ignoreip = 127.0.0.0/8 ::1 198.51.100.0/24 2001:db8::/32\n" in login
    bans = files["monitoring/bans.nft"]
    assert "add element inet tempo_gen_bans never_v4 { 198.51.100.0/24 }" in bans
    assert "add element inet tempo_gen_bans never_v6 { 2001:db8::/32 }" in bans
    assert "delete table" not in bans  # loading it keeps the bans
    for hook in ("input", "forward"):
        assert f"type filter hook {hook} priority filter - 20; policy accept;" in bans
    assert f"maxsize {20 * 1024 * 1024}\n" in files["monitoring/logrotate"]
    assert "copytruncate" in files["monitoring/logrotate"]
    action = files[f"{prefix}/action.d/tempo-gen-nginx-test.conf"]
    assert "actionban = nft add element inet tempo_gen_bans <set> '{ <ip> timeout <bantime>s }'" in action
    assert "alert.sh" not in action


def test_container_logs_are_owned_by_the_proxy_uid_and_traefik_gets_its_own_filters() -> None:
    files = rendered("traefik", proxy={"placement": "container"})
    assert "monitoring/nginx-utc.conf" not in files
    assert "install -d -m 0750 -o 101 -g 101 /var/log/tempo-gen/traefik-test" in files["monitoring/install.sh"]
    login = files["monitoring/fail2ban/filter.d/tempo-gen-traefik-test-login.conf"]
    assert '"DownstreamStatus":401,.*"RequestPath":"/api/auth/login",' in login
    assert 'datepattern = (?<="StartUTC":")' in login


def test_vpn_traffic_is_never_banned() -> None:
    files = rendered(firewall={"vpn": {"interface": "wg1"}})
    assert 'add rule inet tempo_gen_bans input iifname "wg1" accept' in files["monitoring/bans.nft"]
    assert 'add rule inet tempo_gen_bans forward iifname "wg1" accept' in files["monitoring/bans.nft"]


def test_nothing_without_monitoring_and_no_jails_without_bans() -> None:
    assert rendered(monitoring={"enabled": False}) == {}
    assert rendered(proxy={"kind": "none"}) == {}
    assert not any("fail2ban" in path for path in rendered(monitoring={"bans": {"enabled": False}}))


def test_an_alert_target_is_called_on_every_ban() -> None:
    files = rendered(monitoring={"alert": "https://hooks.example.org/tempo/abc123"})
    action = files["monitoring/fail2ban/action.d/tempo-gen-nginx-test.conf"]
    assert (
        "/etc/tempo-gen/monitoring/alert.sh 'tempo-gen nginx-test: banned <ip> for <bantime> s (<name>)' || true"
        in action
    )
    assert "readonly target='https://hooks.example.org/tempo/abc123'" in files["monitoring/alert.sh"]
    assert "install -m 0755" in files["monitoring/install.sh"]


@pytest.mark.parametrize(
    "value",
    ["http://hooks.example.org/x", "https://hooks.example.org/x?token=1", "relative/cmd", "/usr/bin/../bin/sh", "/a b"],
)
def test_an_alert_must_be_an_https_url_or_an_absolute_command(value: str) -> None:
    with pytest.raises(ValueError, match="neither an https webhook URL"):
        dev_profile("nginx", monitoring={"alert": value})


@pytest.mark.parametrize(
    ("path", "scanner"),
    [
        ("/wp-login.php", True),
        ("/index.php", True),
        ("/.env", True),
        ("/.git/config", True),
        ("/cgi-bin/luci", True),
        ("/api/workouts", False),
        ("/_next/static/chunks/app.js", False),
        ("/.well-known/acme-challenge/token", False),
        ("/dashboard", False),
    ],
)
def test_scanner_paths_are_paths_tempo_never_serves(path: str, scanner: bool) -> None:
    assert bool(re.match(SCANNER_PATHS, path + '"')) is scanner


def test_audit_reports_monitoring_and_missing_alerting(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    result = cli("audit")
    assert "ok        Monitoring and auditing: JSON access log in /var/log/tempo-gen/demo" in result.output
    assert "no alerting configured" in result.output
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE + "monitoring:\n  alert: /usr/local/bin/notify\n")
    assert "alerts to /usr/local/bin/notify" in cli("audit").output
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE + "monitoring:\n  enabled: false\n")
    result = cli("audit", "--strict")
    assert result.exit_code == 1
    assert "weakened  monitoring.enabled: the access log stays in the proxy's own output" in result.output
    assert "MISSING   Monitoring and auditing" in result.output


def test_secrets_init_appends_to_the_audit_trail_without_values(cli: RunCli, demo: Path) -> None:
    assert cli("secrets", "init").exit_code == 0
    trail = demo / "audit" / "demo.jsonl"
    entries = [json.loads(line) for line in trail.read_text().splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    assert {"time", "uid", "user", "deployment", "action", "outcome"} <= set(entry)
    assert (entry["deployment"], entry["action"], entry["outcome"]) == ("demo", "secrets init", "ok")
    assert entry["time"].endswith("+00:00")
    assert trail.stat().st_mode & 0o777 == 0o600
    text = trail.read_text()
    for name in ("jwt_key", "db_password"):
        assert (demo / "secrets" / "demo" / name).read_text().strip() not in text


def test_a_failed_operation_is_recorded_and_alerted(cli: RunCli, demo: Path, tmp_path: Path) -> None:
    received = tmp_path / "alerts.txt"
    notify = tmp_path / "notify"
    notify.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {received}\n')
    notify.chmod(0o755)
    profile = demo / "profiles" / "demo.yaml"
    profile.write_text(profile.read_text() + f"monitoring:\n  alert: {notify}\n")
    result = cli("secrets", "rotate", "jwt", str(profile))  # no secrets and no running stack: it fails
    assert result.exit_code != 0
    entry = json.loads((demo / "audit" / "demo.jsonl").read_text().splitlines()[-1])
    assert entry["action"] == "secrets rotate jwt" and entry["outcome"].startswith("failed: ")
    assert received.read_text().startswith("tempo-gen demo: secrets rotate jwt failed: ")


def test_without_alerting_nothing_is_sent(demo: Path) -> None:
    from tempo_gen.ops.audit_trail import alert

    profile = Profile.model_validate({"name": "demo", "domain": "tempo.example.com", "environment": "development"})
    assert alert(profile, "anything") is None


def test_logrotate_accepts_the_file_and_rotates_above_max_size(tmp_path: Path) -> None:
    """Debian's logrotate on the rendered file: a log above max_size is copied away and truncated in place."""
    import shutil
    import subprocess

    from support.engine import unavailable

    if shutil.which("logrotate") is None:
        unavailable("logrotate is not installed (apt-get install logrotate)")
    log = tmp_path / "access.json"
    profile = dev_profile("nginx", monitoring={"access_log": {"max_size": "1k", "max_age_days": 7}})
    runtime = monitoring.Runtime(log_file=str(log))
    files = {str(f.path): f.content for f in monitoring.files_for(target_input_for(profile), runtime)}
    conf = tmp_path / "logrotate.conf"
    conf.write_text(files["monitoring/logrotate"])
    log.write_text('{"time":"2026-01-01T00:00:00+00:00"}\n' * 100)  # about 4 KiB
    with log.open("a") as held:  # the proxy keeps the file open: copytruncate rotates under it
        done = subprocess.run(
            ["logrotate", "-v", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        held.write('{"after":"rotation"}\n')
    assert (tmp_path / "access.json.1").stat().st_size > 3000
    assert log.read_text() == '{"after":"rotation"}\n'


@pytest.mark.parametrize("folder", ["/", "/var/log", "/etc/tempo", "/usr/local/logs", "/srv", "/tmp", "/logs"])
def test_the_log_folder_is_never_a_system_or_shared_folder(folder: str) -> None:
    """install.sh chowns it to the proxy's uid: /var/log itself, /etc or / would be a disaster."""
    with pytest.raises(ValueError, match=r"system or shared folder|not a usable absolute path"):
        dev_profile("nginx", monitoring={"access_log": {"dir": folder}})
    assert dev_profile("nginx", monitoring={"access_log": {"dir": "/srv/tempo-logs"}})
