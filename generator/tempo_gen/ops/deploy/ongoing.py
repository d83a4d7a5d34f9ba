"""`audit --live`: the ongoing part of Tempo's security guide, read from the running deployment.

- the age of each secret against secrets.max_age_days (the secret file's last
  write, or the Swarm secret's creation: every rotation makes a new one);
- whether each running service was built FROM the image the profile pins (its
  layers start with that image's layers, so a rebuilt or swapped base shows);
- whether the deployed Tempo (the last deploy's record, else the profile) is the
  newest release tempo-gen supports, overdue tempo.update_within_days after the
  last deploy.
Each is a LiveCheck (reports/backup_status.py), like the backup and drill ages.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError, TempoGenError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.deploy import state
from tempo_gen.ops.secrets.values import SECRET_NAMES
from tempo_gen.policy.releases import NEWEST
from tempo_gen.reports.backup_status import LiveCheck

if TYPE_CHECKING:
    from docker import DockerClient

DAY = 86400


def _age_check(what: str, written: float, limit: int, now: float, action: str) -> LiveCheck:
    days = int((now - written) // DAY)
    if days > limit:
        return LiveCheck("OVERDUE", what, f"{days} days old, over the {limit} allowed: {action}")
    return LiveCheck("ok", what, f"{days} days old (at most {limit})")


def secret_ages(profile: Profile, root: Path, now: float, client: DockerClient | None = None) -> list[LiveCheck]:
    """One line per secret: its age against secrets.max_age_days."""
    limit, lines = profile.secrets.max_age_days, []
    for name in SECRET_NAMES:
        what, action = f"secret {name}", f"run `tempo-gen secrets rotate {'db' if name == 'db_password' else 'jwt'}`"
        try:
            written = _written(profile, root, name, client)
        except (OSError, TempoGenError) as exc:
            lines.append(LiveCheck("unknown", what, f"cannot tell its age ({exc})"))
            continue
        lines.append(_age_check(what, written, limit, now, action))
    return lines


def _written(profile: Profile, root: Path, name: str, client: DockerClient | None) -> float:
    if profile.deploy.mode == "swarm":
        from tempo_gen.targets.swarm_stack import secret_name

        if client is None:
            raise DeploymentError("no Docker engine to ask")
        created = client.secrets.get(secret_name(profile, name)).attrs["CreatedAt"]
        return datetime.fromisoformat(str(created)[:26].rstrip("Z") + "+00:00").timestamp()
    from tempo_gen.ops.secrets.files import secrets_folder

    with secrets_folder(profile, root) as fd:
        return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime


def image_pins(profile: Profile, client: DockerClient) -> list[LiveCheck]:
    """One line per service: whether the image it runs was built FROM the profile's image reference."""
    lines = []
    for service, ref in profile.images().items():
        what = f"image {service}"
        running = client.containers.list(
            filters={"label": [f"com.docker.compose.project={profile.name}", f"com.docker.compose.service={service}"]}
        )
        if not running:
            lines.append(LiveCheck("unknown", what, "not running"))
            continue
        import docker

        try:
            base = client.images.get(ref)
        except docker.errors.ImageNotFound:
            lines.append(LiveCheck("unknown", what, f"{ref} is not on this host to compare with (build it first)"))
            continue
        layers = list(running[0].image.attrs["RootFS"]["Layers"]) if running[0].image else []
        wanted = list(base.attrs["RootFS"]["Layers"])
        if layers[: len(wanted)] == wanted:
            lines.append(LiveCheck("ok", what, f"runs a build FROM {ref}"))
        else:
            lines.append(
                LiveCheck("MISMATCH", what, f"what runs was not built FROM {ref}: `tempo-gen deploy` rebuilds it")
            )
    return lines


def release_check(profile: Profile, bundle: Path, now: float) -> LiveCheck:
    """The deployed release against the newest supported, due tempo.update_within_days after the last deploy."""
    deployed = state.load(bundle)
    version = deployed.version if deployed else profile.tempo.version
    if version == NEWEST:
        return LiveCheck("ok", "release", f"Tempo {version} is the newest release tempo-gen supports")
    limit = profile.tempo.update_within_days
    action = f"run `tempo-gen upgrade --to {NEWEST}`"
    if deployed is None:
        return LiveCheck("OVERDUE", "release", f"Tempo {version} (no deploy recorded), newest is {NEWEST}: {action}")
    since = datetime.fromisoformat(deployed.deployed_at).timestamp()
    return _age_check(f"release Tempo {version} (newest {NEWEST}), deployed", since, limit, now, action)


def ongoing_checks(profile: Profile, root: Path, bundle: Path) -> list[LiveCheck]:
    """Every ongoing check of one deployment."""
    now = datetime.now(UTC).timestamp()
    try:
        from tempo_gen.ops.running.stack import docker_client

        client: DockerClient | None = docker_client()
    except DeploymentError:
        client = None
    lines = secret_ages(profile, root, now, client)
    if client is None:
        lines.append(LiveCheck("unknown", "images", "the Docker engine does not answer"))
    elif profile.deploy.mode == "compose":
        lines += image_pins(profile, client)
    else:
        lines.append(LiveCheck("unknown", "images", "compared in compose mode only"))
    lines.append(release_check(profile, bundle, now))
    return lines
