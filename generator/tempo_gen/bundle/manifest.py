"""MANIFEST.json: every file's sha256, the profile's hash and the generator version (the only place it appears)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from tempo_gen.bundle.files import Bundle, RenderedFile

MANIFEST = "MANIFEST.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_file(bundle: Bundle, source: str, profile_sha256: str, version: str) -> RenderedFile:
    document = {
        "generator": {"name": "tempo-gen", "version": version},
        "profile": {"path": source, "sha256": profile_sha256},
        "files": {str(f.path): sha256(f.content.encode()) for f in bundle},
    }
    return RenderedFile(PurePosixPath(MANIFEST), json.dumps(document, indent=2, sort_keys=True) + "\n")


def recorded_hashes(bundle_dir: Path) -> dict[str, str]:
    """The hashes the manifest on disk recorded, or none when it is missing or unreadable."""
    try:
        files = json.loads((bundle_dir / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}
