"""What operations ask of the running Tempo API: its host commands, and whether an import is under way.

Both run inside the API's current container (a Compose container or a Swarm
task), through the image's entrypoint so Tempo gets its secrets, and with
anything secret on standard input only: never in arguments or environment,
which `docker inspect` of the exec would show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError, UsageError
from tempo_gen.policy.ports import MEDIA_ROOT
from tempo_gen.policy.releases import IMPORT_IDLE_MINUTES, IMPORT_STAGING, Release, first_with

if TYPE_CHECKING:
    from tempo_gen.ops.running.stack import RunningStack
    from tempo_gen.profile.loader import LoadedProfile

ENTRYPOINT = "tempo-api-entrypoint"
"""The API image's entrypoint (templates/tempo/api.Dockerfile.j2): secrets in, then `dotnet Tempo.Api.dll "$@"`."""
RESET_TIMEOUT = 120  # seconds: the command builds Tempo's whole host before it resets


def running_stack(loaded: LoadedProfile, bundle: Path) -> RunningStack:
    """The deployment's running stack, however it is deployed."""
    from tempo_gen.ops.running.stack import docker_client

    if loaded.profile.deploy.mode == "swarm":
        from tempo_gen.ops.running.swarm import SwarmProject

        return SwarmProject(loaded.profile, docker_client())
    from tempo_gen.ops.running.compose import ComposeProject

    return ComposeProject(loaded.profile.name, bundle)


def check_password(release: Release, password: str) -> None:
    """Tempo's own password policy for `release`, checked before anything runs."""
    shortest, longest = release.password_length
    if "\n" in password or "\r" in password:
        raise UsageError("the password is one line")
    if len(password) < shortest or (longest is not None and len(password) > longest):
        bound = f"{shortest} to {longest}" if longest is not None else f"at least {shortest}"
        raise UsageError(f"Tempo needs a password of {bound} characters (got {len(password)})")


def reset_password_command(release: Release, password: str, username: str | None) -> list[str]:
    """The exec that resets a password on `release`, after Tempo's own checks: refused before anything runs."""
    if "reset-password" not in release.host_commands:
        raise UsageError(
            f"this Tempo release has no reset-password command (it came in {first_with('reset-password')})"
        )
    check_password(release, password)
    command = [ENTRYPOINT, "reset-password", "--password-stdin"]
    if username is not None:
        if not username.isprintable() or username.startswith("-") or not username.strip():
            raise UsageError(f"{username!r} is not a user name")
        command += ["--username", username]
    return command


def reset_password(stack: RunningStack, command: list[str], password: str) -> str:
    """Run Tempo's `reset-password` in the API container, the password on stdin; return what Tempo said."""
    code, output = stack.exec_with_stdin("api", command, f"{password}\n", timeout=RESET_TIMEOUT)
    said = output.replace(password, "***").strip()
    if code != 0:
        raise DeploymentError(f"Tempo's reset-password failed (exit {code}): {said[-500:]}")
    return said


# Staged chunks or an assembled archive.zip: a job is receiving or being imported. A job whose chunks
# have not changed for IMPORT_IDLE_MINUTES is abandoned (Tempo replaces it when the next one starts).
_FIND_ACTIVE_IMPORT = [
    "find",
    f"{MEDIA_ROOT}/{IMPORT_STAGING}",
    "-mindepth",
    "2",
    "-maxdepth",
    "3",
    "(",
    "-name",
    "archive.zip",
    "-o",
    "-mmin",
    f"-{IMPORT_IDLE_MINUTES}",
    ")",
    "-print",
    "-quit",
]


def import_in_progress(stack: RunningStack) -> bool:
    """Whether the API is receiving or importing a bulk import now (its staging folder says so)."""
    try:
        stack.container("api")
    except DeploymentError:
        return False  # no API running: nothing is being imported
    code, output = stack.exec_with_stdin("api", _FIND_ACTIVE_IMPORT, "")
    if code != 0 and "No such file" not in output:  # no imports/ folder yet: nothing was ever imported
        raise DeploymentError(f"cannot look for an import in progress (exit {code}): {output.strip()[-300:]}")
    return code == 0 and bool(output.strip())


def restart_effects(release: Release, which: str) -> list[str]:
    """What rotating `which` (jwt or db) breaks on this release, to say before acting."""
    effects = []
    if which == "jwt":
        effects.append("every session ends: everyone signs in again")
        if release.jwt_key_encrypts_integrations:
            effects.append(
                "the stored intervals.icu key was encrypted with a key derived from the JWT key: "
                "reconnect intervals.icu in Tempo's settings afterwards"
            )
    effects.append("the API restarts: an import in progress would be interrupted")
    return effects
