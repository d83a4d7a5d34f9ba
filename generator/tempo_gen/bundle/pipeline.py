"""profile -> model -> targets -> bundle (-> Swarm stack file) -> validators: everything a render computes before writing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from tempo_gen import __version__
from tempo_gen.bundle.checks import validate
from tempo_gen.bundle.files import Bundle, RenderedFile
from tempo_gen.bundle.writer import manifest_file
from tempo_gen.profile.loader import LoadedProfile
from tempo_gen.targets import build_bundle
from tempo_gen.targets.base import Context
from tempo_gen.targets.swarm_stack import stack_bundle


def render_files(loaded: LoadedProfile, project_root: Path, bundle_dir: Path) -> list[RenderedFile]:
    """All files of one profile's bundle, MANIFEST.json included, validated."""
    profile = loaded.profile
    ctx = Context(profile, loaded.display_path, _secrets_dir(profile.secrets_dir, project_root, bundle_dir))
    bundle = build_bundle(ctx)
    if profile.deploy.mode == "swarm":
        bundle = stack_bundle(bundle, profile, ctx.header)
    validate(bundle)
    profile_hash = hashlib.sha256(profile.model_dump_json().encode()).hexdigest()
    return [*bundle, manifest_file(bundle, loaded.display_path, profile_hash, __version__)]


def _secrets_dir(secrets_dir: PurePosixPath, project_root: Path, bundle_dir: Path) -> str:
    """The secrets folder as Compose resolves it, relative to compose.yaml's folder."""
    if secrets_dir.is_absolute():
        return str(secrets_dir)
    absolute = (project_root / secrets_dir).resolve()
    return PurePosixPath(os.path.relpath(absolute, bundle_dir.resolve())).as_posix()


__all__ = ["Bundle", "render_files"]
