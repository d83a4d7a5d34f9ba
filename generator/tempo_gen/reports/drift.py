"""`render --check`: every way a bundle folder on disk differs from what a render would write.

out/ comes from a checkout a pull request can change, so nothing here follows a
symlink or reads anything but a regular file: a symlink (to a file or a folder,
or out/<name> itself) or a FIFO/device is reported as drift without being opened.
"""

from __future__ import annotations

import difflib
import stat
from dataclasses import dataclass
from pathlib import Path

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.manifest import recorded_hashes, sha256
from tempo_gen.bundle.writer import leftovers
from tempo_gen.errors import UnsafeFile
from tempo_gen.safe_fs import kind_of, read_beneath, walk

MAX_BUNDLE_FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Drift:
    path: str
    kind: str  # missing | changed | hand-edited | extra | mode | symlink | not a regular file | leftover
    diff: str = ""


def check_bundle(files: list[RenderedFile], target: Path) -> list[Drift]:
    """Every way `target` differs from what a render would write."""
    drifts = [Drift(f"../{p.name}", "leftover", "left by an interrupted render\n") for p in leftovers(target)]
    try:
        top = target.lstat().st_mode
    except FileNotFoundError:
        top = None
    if top is not None and not stat.S_ISDIR(top):
        kind = "symlink" if stat.S_ISLNK(top) else "not a regular file"
        return [*drifts, Drift("", kind, f"{target} is {kind_of(top)}, not a bundle folder\n")]
    entries = walk(target)
    recorded = recorded_hashes(target)
    expected = {str(f.path): f for f in files}
    for path, file in expected.items():
        mode = entries.get(path)
        if mode is None or _under_bad_folder(path, entries):
            drifts.append(Drift(path, "missing"))
            continue
        if not stat.S_ISREG(mode):
            drifts.append(_odd(path, mode))
            continue
        try:
            data = read_beneath(target, path, MAX_BUNDLE_FILE_BYTES)
        except (OSError, UnsafeFile) as exc:
            drifts.append(Drift(path, "changed", f"{exc}\n"))
            continue
        if data != file.content.encode():
            kind = "hand-edited" if path in recorded and recorded[path] != sha256(data) else "changed"
            drifts.append(Drift(path, kind, _diff(path, data, file.content)))
        elif (mode & 0o777) != file.mode:
            drifts.append(Drift(path, "mode", f"mode {mode & 0o777:o}, expected {file.mode:o}\n"))
    for path, mode in entries.items():
        if path in expected or _under_bad_folder(path, entries):
            continue
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            drifts.append(_odd(path, mode))
        elif stat.S_ISREG(mode):
            drifts.append(Drift(path, "extra"))
    return drifts


def _odd(path: str, mode: int) -> Drift:
    kind = "symlink" if stat.S_ISLNK(mode) else "not a regular file"
    return Drift(path, kind, f"{path} is {kind_of(mode)}; never read, never followed\n")


def _under_bad_folder(path: str, entries: dict[str, int]) -> bool:
    """Whether a parent of `path` is not a real folder (then `path` itself was never looked at)."""
    parts = path.split("/")
    return any(not stat.S_ISDIR(entries.get("/".join(parts[:i]), stat.S_IFDIR)) for i in range(1, len(parts)))


def _diff(path: str, old: bytes, new: str) -> str:
    old_text = old.decode("utf-8", errors="replace")
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )
