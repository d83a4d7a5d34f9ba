"""Write a bundle atomically into out/<name>/: every file or none.

A render builds the whole folder beside the old one and swaps it in only when
every file is written, so a failure leaves the previous output untouched.
Unchanged files are carried over by hard link, keeping their mtime.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tempo_gen.bundle.files import RenderedFile


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
        summary.removed = sorted(set(tree(target)) - {str(f.path) for f in files})
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


def tree(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())
