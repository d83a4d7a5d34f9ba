"""`tempo-gen upgrade --to VERSION`: the new release written into the profile, rendered and deployed.

The profile and out/<name> keep the new release only when the deploy
succeeded; after any failure (the deploy's rollback included) both are put
back byte for byte: the profile's own bytes, and out/ rendered again from
them (a render is deterministic, and out/ was checked to be that render).
API and frontend images written with the release's tag (`...:v<old>`) follow
it to `...:v<new>`; pinned images are then pinned again (`lock --update`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tempo_gen.bundle.pipeline import render_bundle
from tempo_gen.bundle.writer import write_bundles
from tempo_gen.errors import UsageError
from tempo_gen.models.base import image_parts
from tempo_gen.ops.deploy.rollout import Say, deploy, preflight
from tempo_gen.policy.releases import unsupported_reason
from tempo_gen.profile.edit import set_scalars
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.profile.source import FieldPath
from tempo_gen.safe_fs import read_bounded, stage_beside

MAX_PROFILE_BYTES = 1024 * 1024


def upgrade_edits(loaded: LoadedProfile, to: str) -> dict[FieldPath, str]:
    """The profile values to write: the version, and the API and frontend images that name the old release."""
    tempo = loaded.profile.tempo
    edits: dict[FieldPath, str] = {("tempo", "version"): to}
    for service in ("api", "frontend"):
        explicit = getattr(tempo.images, service)
        if explicit is None:
            continue  # the default image follows tempo.version by itself
        name, tag, _ = image_parts(explicit)
        if tag == f"v{tempo.version}":
            edits[("tempo", "images", service)] = f"{name}:v{to}"
    return edits


def _write(path: Path, data: bytes) -> None:
    staged = stage_beside(path, "upgrade-tmp", data)
    shutil.copymode(path, staged)
    os.replace(staged, path)


def upgrade(loaded: LoadedProfile, root: Path, bundle: Path, to: str, say: Say) -> list[str]:
    """Upgrade `loaded`'s deployment to release `to`; the deploy's summary, or the error after putting all back."""
    if reason := unsupported_reason(to):
        raise UsageError(reason)
    if to == loaded.profile.tempo.version:
        raise UsageError(f"{loaded.display_path} is on Tempo {to} already; `tempo-gen deploy` applies it")
    old_files = preflight(loaded, root, bundle)  # the committed state must be clean before it is edited
    original = read_bounded(loaded.path, MAX_PROFILE_BYTES, follow=False)
    edits = upgrade_edits(loaded, to)
    text = set_scalars(original.decode("utf-8"), edits)
    pinned = any(image_parts(ref)[2] for ref in loaded.profile.images().values())
    say(f"{loaded.display_path}: tempo.version {loaded.profile.tempo.version} -> {to}")
    _write(loaded.path, text.encode("utf-8"))
    try:
        if pinned:
            from tempo_gen.ops.lock import lock
            from tempo_gen.ops.registry import Registry

            for line in lock([loaded.path], root, Registry(()), update=True):
                say(line)
        upgraded = load_profile(loaded.path, root)
        write_bundles([(render_bundle(upgraded, root, bundle), bundle)])
        say(f"{bundle}: rendered for Tempo {to}")
        return deploy(upgraded, root, bundle, say)
    except BaseException:
        _write(loaded.path, original)
        write_bundles([(old_files, bundle)])
        say(f"{loaded.display_path} and {bundle} are back as they were (Tempo {loaded.profile.tempo.version})")
        raise
