"""profile -> model -> targets -> bundle (-> Swarm stack file) -> output checks: a render, up to the writer."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tempo_gen import __version__
from tempo_gen.bundle.checks import check_outputs
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.manifest import manifest_file
from tempo_gen.profile.loader import LoadedProfile
from tempo_gen.project import compose_secrets_dir
from tempo_gen.targets import bundle_for
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.swarm_stack import stack_bundle


def render_bundle(loaded: LoadedProfile, project_root: Path, bundle_dir: Path) -> list[RenderedFile]:
    """All files of one profile's bundle, MANIFEST.json included, checked."""
    profile = loaded.profile
    target_input = TargetInput(
        profile, loaded.display_path, compose_secrets_dir(profile.secrets_dir, project_root, bundle_dir)
    )
    bundle = bundle_for(target_input)
    if profile.deploy.mode == "swarm":
        bundle = stack_bundle(bundle, profile, target_input.header)
    check_outputs(bundle)
    profile_hash = hashlib.sha256(profile.model_dump_json().encode()).hexdigest()
    return [*bundle, manifest_file(bundle, loaded.display_path, profile_hash, __version__)]
