"""`audit --live`'s ongoing checks that need no engine: each secret's age and the deployed release."""

from __future__ import annotations

import os
import time
from pathlib import Path

from support.project import RunCli
from tempo_gen.bundle.pipeline import render_bundle
from tempo_gen.ops.deploy import state
from tempo_gen.ops.deploy.ongoing import release_check, secret_ages
from tempo_gen.policy.releases import NEWEST, SUPPORTED
from tempo_gen.profile.loader import load_profile

DAY = 86400


def test_a_secret_older_than_max_age_days_is_overdue(cli: RunCli, demo: Path) -> None:
    profile_file = demo / "profiles" / "demo.yaml"
    profile_file.write_text(profile_file.read_text() + "secrets:\n  max_age_days: 90\n")
    assert cli("secrets", "init").exit_code == 0
    old = time.time() - 100 * DAY
    os.utime(demo / "secrets" / "demo" / "jwt_key", (old, old))
    profile = load_profile(profile_file, demo).profile
    lines = [check.line() for check in secret_ages(profile, demo, time.time())]
    assert lines[0].startswith("ok ") and "db_password: 0 days old (at most 90)" in lines[0]
    assert lines[1].startswith("OVERDUE") and "100 days old, over the 90 allowed" in lines[1]
    assert "tempo-gen secrets rotate jwt" in lines[1]


def test_missing_secrets_are_unknown_not_ok(demo: Path) -> None:
    profile = load_profile(demo / "profiles" / "demo.yaml", demo).profile
    assert all(check.status == "unknown" for check in secret_ages(profile, demo, time.time()))


def test_release_is_ok_only_when_newest_or_within_the_grace(cli: RunCli, demo: Path) -> None:
    profile_file = demo / "profiles" / "demo.yaml"
    profile_file.write_text(profile_file.read_text().replace("tempo:\n", f"tempo:\n  version: {SUPPORTED[0]}\n"))
    assert cli("render").exit_code == 0
    loaded = load_profile(profile_file, demo)
    bundle = demo / "out" / "demo"
    now = time.time()
    assert release_check(loaded.profile, bundle, now).line().startswith("OVERDUE")  # nothing deployed on record
    state.save(bundle, render_bundle(loaded, demo, bundle), SUPPORTED[0], {})
    assert release_check(loaded.profile, bundle, now).line().startswith("ok ")  # deployed today: within 30 days
    overdue = release_check(loaded.profile, bundle, now + 31 * DAY).line()
    assert overdue.startswith("OVERDUE") and f"upgrade --to {NEWEST}" in overdue
    state.save(bundle, render_bundle(loaded, demo, bundle), NEWEST, {})
    assert release_check(loaded.profile, bundle, now + 400 * DAY).line().startswith("ok ")
