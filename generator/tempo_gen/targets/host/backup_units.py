"""backup/: the systemd service and timer that run `tempo-gen backup` daily and `tempo-gen backup drill` weekly.

Both are oneshot services: the command logs one line per run to the journal and
a non-zero exit fails the unit, which OnFailure= turns into an alert through
monitoring.alert (alert.sh) when the profile has one; without it, a monitor of
failed units sees it. install.sh copies the units to /etc/systemd/system and
adds a drop-in naming the project folder (WorkingDirectory=), which the
committed bundle cannot know. The drill decrypts with an age identity kept on
the host at <install dir>/drill.key (root, 0400): systemd hands it to the
service as a credential, so only the drill's process reads it. Rendered only
when backup.recipients has a key: without one, a backup cannot run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.errors import RenderError
from tempo_gen.models.profile import Profile
from tempo_gen.targets.base import TargetInput

TEMPO_GEN = "/usr/local/bin/tempo-gen"
"""Where the units expect tempo-gen on the host (install.sh checks it is there)."""
DRILL_KEY = "drill.key"
BACKUP_TIMEOUT = "6h"
_PLAIN_WORD = re.compile(r"[A-Za-z0-9._/+@=:-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Runtime:
    """Where the units expect things on the host; tests point these at their own folders."""

    install_dir: str
    """Holds drill.key and alert.sh: /etc/tempo-gen/<name>."""
    tempo_gen: str = TEMPO_GEN


def runtime_for(profile: Profile) -> Runtime:
    return Runtime(install_dir=f"/etc/tempo-gen/{profile.name}")


def unit_prefix(profile: Profile) -> str:
    return f"tempo-gen-{profile.name}"


def unit_names(profile: Profile) -> dict[str, str]:
    """The rendered units by role (backup, backup_timer, drill, drill_timer, alert)."""
    prefix = unit_prefix(profile)
    return {
        "backup": f"{prefix}-backup.service",
        "backup_timer": f"{prefix}-backup.timer",
        "drill": f"{prefix}-backup-drill.service",
        "drill_timer": f"{prefix}-backup-drill.timer",
        "alert": f"{prefix}-alert@.service",
    }


def exec_argument(value: str) -> str:
    """`value` as one word of a systemd Exec line: plain, or double-quoted with C escapes, `%` and `$` doubled
    (systemd expands specifiers and variables in both)."""
    if _CONTROL.search(value):
        raise RenderError(f"refusing to write {value!r} into a systemd unit (control character)")
    if _PLAIN_WORD.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def exec_line(*words: str) -> str:
    return " ".join(exec_argument(word) for word in words)


def files_for(target_input: TargetInput, runtime: Runtime | None = None) -> list[RenderedFile]:
    profile = target_input.profile
    backup = profile.backup
    if not backup.recipients:
        return []
    runtime = runtime or runtime_for(profile)
    units = unit_names(profile)
    alert = profile.monitoring.alert is not None
    values = {
        "runtime": runtime,
        "units": units,
        "folder": backup.folder(profile.name),
        "alert": alert,
        "timeout": BACKUP_TIMEOUT,
        "drill_key": DRILL_KEY,
        "backup_exec": exec_line(runtime.tempo_gen, "backup", target_input.source),
        # %d: the service's credentials folder, where systemd puts drill.key for this run only.
        "drill_exec": exec_line(runtime.tempo_gen, "backup", "drill", target_input.source, "--identity")
        + f" %d/{DRILL_KEY}",
    }
    service, timer = "host/backup/service.j2", "host/backup/timer.j2"
    files = [
        target_input.file(f"backup/{units['backup']}", service, {**values, "role": "backup"}),
        target_input.file(f"backup/{units['backup_timer']}", timer, {**values, "role": "backup"}),
        target_input.file(f"backup/{units['drill']}", service, {**values, "role": "drill"}),
        target_input.file(f"backup/{units['drill_timer']}", timer, {**values, "role": "drill"}),
        target_input.file("backup/install.sh", "host/backup/install.sh.j2", values, mode=0o755),
    ]
    if alert:
        files.append(target_input.file(f"backup/{units['alert']}", "host/backup/alert@.service.j2", values))
        files.append(
            target_input.file(
                "backup/alert.sh",
                "host/monitoring/alert.sh.j2",
                {
                    **values,
                    "used_by": f"systemd runs it\n# ({runtime.install_dir}/alert.sh) through {units['alert']} "
                    "when a backup or drill fails.",
                },
                mode=0o755,
            )
        )
    return files
