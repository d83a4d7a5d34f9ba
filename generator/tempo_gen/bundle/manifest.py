"""MANIFEST.json: every file's sha256, the profile's hash and the generator version (the only place it appears)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from tempo_gen.bundle.files import Bundle, RenderedFile
from tempo_gen.errors import UnsafeFile
from tempo_gen.safe_fs import read_beneath

MANIFEST = "MANIFEST.json"
GENERATOR = "tempo-gen"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_file(bundle: Bundle, source: str, profile_sha256: str, version: str) -> RenderedFile:
    document = {
        "generator": {"name": GENERATOR, "version": version},
        "profile": {"path": source, "sha256": profile_sha256},
        "files": {str(f.path): sha256(f.content.encode()) for f in bundle},
    }
    return RenderedFile(PurePosixPath(MANIFEST), json.dumps(document, indent=2, sort_keys=True) + "\n")


def read_manifest(bundle_dir: Path) -> dict[str, Any] | None:
    """The manifest on disk, or None when missing, unreadable, a symlink or not a JSON object."""
    try:
        document = json.loads(read_beneath(bundle_dir, MANIFEST, MAX_MANIFEST_BYTES))
    except (OSError, UnsafeFile, ValueError, RecursionError):  # RecursionError: `[[[...` nested past the C stack
        return None
    return document if isinstance(document, dict) else None


def is_our_bundle(bundle_dir: Path) -> bool:
    """Whether `bundle_dir` holds a manifest written by tempo-gen."""
    generator = (read_manifest(bundle_dir) or {}).get("generator")
    return isinstance(generator, dict) and generator.get("name") == GENERATOR


def recorded_hashes(bundle_dir: Path) -> dict[str, str]:
    """The hashes the manifest on disk recorded, or none when it is missing or unreadable."""
    files = (read_manifest(bundle_dir) or {}).get("files")
    return files if isinstance(files, dict) else {}
