"""The audit trail: one JSON line per operation that changes a running deployment, and an alert when one fails.

Every such command (secrets init and rotate now; backup, restore and upgrade
later) wraps its work in `audited(root, profile, action)`. The line lands in
audit/<name>.jsonl beside profiles/ and out/: when (UTC), who (uid, user
name, and the sudo user if any), what (the action and its non-secret
details) and the outcome. Only the exception's type is recorded for a
failure, never its message: no secret value can reach the file. A failure
also goes to monitoring.alert, when the profile names one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from tempo_gen.models.profile import Profile

AUDIT_DIR = "audit"
ALERT_TIMEOUT = 10  # seconds an alert may take; a slow receiver never holds up the operation


def trail_path(root: Path, profile: Profile) -> Path:
    return root / AUDIT_DIR / f"{profile.name}.jsonl"


def _who() -> dict[str, object]:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    who: dict[str, object] = {"uid": uid, "user": user}
    if sudo_user := os.environ.get("SUDO_USER"):
        who["sudo_user"] = sudo_user
    return who


def record(
    root: Path, profile: Profile, action: str, outcome: str, details: Mapping[str, str] | None = None
) -> dict[str, object]:
    """Append one line to the deployment's trail (created 0600 in a 0700 folder); return what was written."""
    entry: dict[str, object] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        **_who(),
        "deployment": profile.name,
        "action": action,
        **(details or {}),
        "outcome": outcome,
    }
    path = trail_path(root, profile)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as trail:
        trail.write(json.dumps(entry, ensure_ascii=True) + "\n")
    return entry


def alert(profile: Profile, message: str) -> str | None:
    """Send `message` to monitoring.alert; None when sent or when none is configured, else why it failed."""
    target = profile.monitoring.alert
    if target is None:
        return None
    try:
        if target.startswith("https://"):
            request = urllib.request.Request(
                target, data=message.encode(), headers={"Content-Type": "text/plain; charset=utf-8"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=ALERT_TIMEOUT):
                pass
        else:
            subprocess.run([target, message], check=True, timeout=ALERT_TIMEOUT, capture_output=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"alert to {target} failed: {type(exc).__name__}"
    return None


@contextlib.contextmanager
def audited(
    root: Path,
    profile: Profile,
    action: str,
    details: Mapping[str, str] | None = None,
    warn: Callable[[str], object] | None = None,
) -> Iterator[None]:
    """Record `action` on `profile`'s deployment with its outcome; alert when it fails (or is interrupted)."""
    try:
        yield
    except BaseException as exc:
        outcome = f"failed: {type(exc).__name__}"
        record(root, profile, action, outcome, details)
        problem = alert(profile, f"tempo-gen {profile.name}: {action} {outcome}")
        if problem and warn is not None:
            warn(problem)
        raise
    record(root, profile, action, "ok", details)
