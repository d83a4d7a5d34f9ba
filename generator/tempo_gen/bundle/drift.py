"""`render --check`: every way a bundle folder on disk differs from what a render would write."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.manifest import recorded_hashes, sha256
from tempo_gen.bundle.writer import tree


@dataclass(frozen=True)
class Drift:
    path: str
    kind: str  # missing | changed | hand-edited | extra | mode
    diff: str = ""


def check_bundle(files: list[RenderedFile], target: Path) -> list[Drift]:
    """Every way `target` differs from what a render would write."""
    recorded = recorded_hashes(target)
    drifts = []
    expected = {str(f.path): f for f in files}
    for path, file in expected.items():
        on_disk = target / path
        if not on_disk.is_file():
            drifts.append(Drift(path, "missing"))
            continue
        data = on_disk.read_bytes()
        if data != file.content.encode():
            kind = "hand-edited" if path in recorded and recorded[path] != sha256(data) else "changed"
            drifts.append(Drift(path, kind, _diff(path, data, file.content)))
        elif (on_disk.stat().st_mode & 0o777) != file.mode:
            drifts.append(Drift(path, "mode", f"mode {on_disk.stat().st_mode & 0o777:o}, expected {file.mode:o}\n"))
    drifts += [Drift(path, "extra") for path in tree(target) if path not in expected]
    return drifts


def _diff(path: str, old: bytes, new: str) -> str:
    old_text = old.decode("utf-8", errors="replace")
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )
