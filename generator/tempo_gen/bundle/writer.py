"""Write bundles atomically into out/<name>/: every file or none, and out/<name> is never missing.

A render builds each whole folder beside the old one (`.<name>.XXXXXXXX.new`) and
swaps them in only when every file of every bundle is written, so a failure leaves
the previous output untouched. Unchanged files are carried over by hard link,
keeping their mtime. A swap is one rename; should one still fail after another
bundle was swapped in, PartialWrite says which were replaced and which kept.

The swap is one renameat2(RENAME_EXCHANGE) system call (Linux, via ctypes): the
new folder and the old one trade names atomically, so at every instant -- even
under SIGKILL -- out/<name> is either the whole old bundle or the whole new one;
the staging name then holds the old bundle and is deleted. We chose this over a
symlink to a versioned folder because out/ stays plain folders that git and
Compose see unchanged. Where renameat2 is unavailable (other systems, some file
systems) the swap falls back to two renames through `.<name>.old`, and the next
render recovers: it renames `.<name>.old` back when out/<name> is missing and
deletes every other leftover. `render --check` reports leftovers as drift.

A folder at out/<name> that is not a previous bundle (no MANIFEST.json written by
tempo-gen) is never replaced; an empty folder may be. Nothing here writes through
a symlink: files are created with O_EXCL|O_NOFOLLOW inside a fresh mkdtemp folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.manifest import is_our_bundle
from tempo_gen.errors import PartialWrite, UnsafeFile, UsageError
from tempo_gen.safe_fs import open_dir_beneath, read_beneath, walk, write_new

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
MAX_PREVIOUS_BYTES = 16 * 1024 * 1024


@dataclass
class Summary:
    written: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass
class _Staged:
    target: Path
    staging: Path
    summary: Summary


def write_bundles(bundles: list[tuple[list[RenderedFile], Path]]) -> list[Summary]:
    """Replace each target with exactly its files: every bundle is checked and staged before the first
    swap, so any failure until then leaves all of them untouched."""
    for _, target in bundles:
        recover(target)
        check_replaceable(target)
    staged: list[_Staged] = []
    try:
        for files, target in bundles:
            staged.append(_stage(files, target))
        for done, item in enumerate(staged):
            try:
                _swap(item.staging, item.target)
            except OSError as exc:
                if done == 0:
                    raise
                raise PartialWrite(
                    f"{item.target}: {exc.strerror or exc} while swapping in its new bundle; "
                    f"already replaced: {', '.join(str(s.target) for s in staged[:done])}; "
                    f"kept as it was: {', '.join(str(s.target) for s in staged[done:])}. "
                    "Run the render again once the cause is fixed."
                ) from None
    finally:
        for item in staged:
            _remove(item.staging)  # gone already once swapped in
    return [item.summary for item in staged]


def _stage(files: list[RenderedFile], target: Path) -> _Staged:
    """Build `files` in a new folder beside `target`, carrying unchanged files over by hard link."""
    summary = Summary()
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = walk(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    try:
        for file in files:
            path = str(file.path)
            destination = staging / file.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            data = file.content.encode()
            if _same(target, path, previous, data, file.mode):
                _link(target, path, destination)
                summary.unchanged.append(path)
                continue
            write_new(destination, data, file.mode)
            (summary.changed if path in previous else summary.written).append(path)
        for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir() and not p.is_symlink())]:
            os.chmod(directory, 0o755)
    except BaseException:
        _remove(staging)
        raise
    kept = {str(f.path) for f in files}
    summary.removed = sorted(p for p, mode in previous.items() if not stat.S_ISDIR(mode) and p not in kept)
    return _Staged(target, staging, summary)


def check_replaceable(target: Path) -> None:
    """Refuse to replace anything at `target` but a previous bundle of ours or an empty folder."""
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UsageError(f"{target} is a symlink; refusing to replace it or write through it")
    if not stat.S_ISDIR(mode):
        raise UsageError(f"{target} exists and is not a folder; refusing to replace it")
    if os.listdir(target) and not is_our_bundle(target):
        raise UsageError(
            f"{target} exists and is not a tempo-gen bundle (no MANIFEST.json written by tempo-gen); "
            "refusing to replace it: move it away, rename the deployment or choose another --out"
        )


def leftovers(target: Path) -> list[Path]:
    """Staging and retired folders an interrupted render left beside `target`."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(old|[A-Za-z0-9_]{{8}}\.new)")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return sorted(target.parent / n for n in names if pattern.fullmatch(n))


def recover(target: Path) -> None:
    """Undo what an interrupted render left: restore `.<name>.old` if out/<name> is missing, delete the rest."""
    retired = target.with_name(f".{target.name}.old")
    for leftover in leftovers(target):
        if leftover == retired and not os.path.lexists(target) and _is_real_dir(leftover):
            os.rename(leftover, target)
        else:
            _remove(leftover)


def _same(target: Path, path: str, previous: dict[str, int], data: bytes, mode: int) -> bool:
    found = previous.get(path)
    if found is None or not stat.S_ISREG(found) or (found & 0o777) != mode:
        return False
    try:
        return read_beneath(target, path, MAX_PREVIOUS_BYTES) == data
    except (OSError, UnsafeFile):
        return False


def _link(target: Path, path: str, destination: Path) -> None:
    *parents, name = path.split("/")
    with open_dir_beneath(target, tuple(parents)) as dir_fd:
        os.link(name, destination, src_dir_fd=dir_fd, follow_symlinks=False)


def _swap(staging: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        _remove(staging)  # now the old bundle
        return
    retired = target.with_name(f".{target.name}.old")
    _remove(retired)
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(retired, target)
        raise
    _remove(retired)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically trade the names of `a` and `b`; False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(b))


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _remove(path: Path) -> None:
    """Delete `path`: a folder with everything in it, or the symlink or file itself (never what it points to)."""
    if _is_real_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
