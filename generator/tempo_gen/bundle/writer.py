"""Write a bundle atomically into out/<name>/, or compare it with what is there.

A render builds the whole folder beside the old one and swaps it in only when
every file is written, so a failure leaves the previous output untouched.
Unchanged files are carried over by hard link, keeping their mtime.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
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


@dataclass
class Summary:
    written: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def write_bundle(files: list[RenderedFile], target: Path) -> Summary:
    """Replace `target` with exactly `files`; untouched on any error before the swap."""
    summary = Summary()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    try:
        for file in files:
            path = str(file.path)
            destination = staging / file.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            data = file.content.encode()
            previous = target / file.path
            if _same(previous, data, file.mode):
                os.link(previous, destination)
                summary.unchanged.append(path)
                continue
            destination.write_bytes(data)
            os.chmod(destination, file.mode)
            (summary.changed if previous.exists() else summary.written).append(path)
        for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            os.chmod(directory, 0o755)
        summary.removed = sorted(set(_tree(target)) - {str(f.path) for f in files})
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _same(path: Path, data: bytes, mode: int) -> bool:
    try:
        return (
            path.is_file()
            and not path.is_symlink()
            and (path.stat().st_mode & 0o777) == mode
            and path.read_bytes() == data
        )
    except OSError:
        return False


def _swap(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _tree(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


@dataclass(frozen=True)
class Drift:
    path: str
    kind: str  # missing | changed | hand-edited | extra | mode
    diff: str = ""


def check_bundle(files: list[RenderedFile], target: Path) -> list[Drift]:
    """Every way `target` differs from what a render would write."""
    recorded = _recorded_hashes(target)
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
    drifts += [Drift(path, "extra") for path in _tree(target) if path not in expected]
    return drifts


def _recorded_hashes(target: Path) -> dict[str, str]:
    try:
        return json.loads((target / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _diff(path: str, old: bytes, new: str) -> str:
    old_text = old.decode("utf-8", errors="replace")
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )


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
