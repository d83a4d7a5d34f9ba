"""The deployment's secrets behind one interface (store.py), the backend chosen once from deploy.mode."""

from __future__ import annotations

from pathlib import Path

from tempo_gen.ops.secrets.store import Created, SecretProblem, SecretStore
from tempo_gen.profile.loader import LoadedProfile

__all__ = ["Created", "SecretProblem", "SecretStore", "secret_store"]


def secret_store(loaded: LoadedProfile, project_root: Path, bundle_dir: Path) -> SecretStore:
    """The store of `loaded`'s secrets: Swarm secrets in swarm mode, else secret files beside the bundle."""
    if loaded.profile.deploy.mode == "swarm":
        from tempo_gen.ops.secrets.swarm import SwarmStore

        return SwarmStore(loaded, project_root)
    from tempo_gen.ops.secrets.files import FileStore

    return FileStore(loaded.profile, project_root, bundle_dir)
