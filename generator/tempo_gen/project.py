"""The project folder: where profiles, out/ and the secrets live, and what git must never see."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

PROFILE_DIR = "profiles"
OUT_DIR = "out"


def discover_profiles(root: Path) -> list[Path]:
    """Every renderable profile: profiles/*.yaml, except partials named _*.yaml (bases for `extends`)."""
    return sorted(p for p in (root / PROFILE_DIR).glob("*.yaml") if not p.name.startswith("_"))


def compose_secrets_dir(secrets_dir: PurePosixPath, project_root: Path, bundle_dir: Path) -> str:
    """The secrets folder as Compose resolves it, relative to compose.yaml's folder."""
    if secrets_dir.is_absolute():
        return str(secrets_dir)
    absolute = (project_root / secrets_dir).resolve()
    return PurePosixPath(os.path.relpath(absolute, bundle_dir.resolve())).as_posix()


def ensure_ignored(root: Path, secrets_dir: PurePosixPath) -> None:
    """Make sure git ignores the secrets folder when it sits inside the project."""
    if secrets_dir.is_absolute():
        return
    rule = f"/{secrets_dir.parts[0]}/"
    gitignore = root / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    if rule in lines or f"{secrets_dir.parts[0]}/" in lines:
        return
    with gitignore.open("a") as f:
        f.write(
            ("\n" if lines and lines[-1] else "")
            + "# Secret files (tempo-gen secrets init); never committed.\n"
            + rule
            + "\n"
        )
