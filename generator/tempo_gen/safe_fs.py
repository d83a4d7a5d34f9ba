"""File system access that never follows a planted symlink, never hangs on a FIFO and bounds every read.

Profiles, `.env` and out/ come from a checkout that a pull request can change, so
reads check the file's type and size on the opened descriptor (fstat, not stat
then open) and bundle folders are walked one component at a time with O_NOFOLLOW.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tempo_gen.errors import UnsafeFile

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _read_fd(fd: int, path: Path | str, limit: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(path, f"is {kind_of(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise UnsafeFile(path, f"file is {info.st_size} bytes; it may be at most {limit} bytes")
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:  # grew while we read it
        raise UnsafeFile(path, f"file is over {limit} bytes")
    return b"".join(chunks)


def read_bounded(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """The bytes of regular file `path`, refusing FIFOs, devices, directories and files over `limit`.

    The type is checked before opening (so a device is never opened) and again on the
    descriptor; O_NONBLOCK keeps a FIFO swapped in between from blocking the open.
    """
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        raise UnsafeFile(path, f"cannot read file: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(path, f"is {kind_of(info.st_mode)}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow else _NOFOLLOW))
    except OSError as exc:
        raise UnsafeFile(path, f"cannot read file: {exc.strerror}") from None
    try:
        return _read_fd(fd, path, limit)
    finally:
        os.close(fd)


@contextmanager
def open_dir_beneath(root: Path, parts: tuple[str, ...] = ()) -> Iterator[int]:
    """A descriptor of root/parts..., refusing a symlink at `root` itself or at any part."""
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    try:
        for part in parts:
            child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def read_beneath(root: Path, relative: str, limit: int) -> bytes:
    """The bytes of root/relative, never following a symlink anywhere on the way; raises UnsafeFile or OSError."""
    *parents, name = relative.split("/")
    with open_dir_beneath(root, tuple(parents)) as dir_fd:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(root / relative, f"is {kind_of(info.st_mode)}, not a regular file")
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
        try:
            return _read_fd(fd, root / relative, limit)
        finally:
            os.close(fd)


def walk(root: Path) -> dict[str, int]:
    """Every entry under `root` (relative POSIX path -> lstat mode), not descending into symlinks."""
    found: dict[str, int] = {}

    def visit(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                mode = entry.stat(follow_symlinks=False).st_mode
                name = f"{prefix}{entry.name}"
                found[name] = mode
                if stat.S_ISDIR(mode):
                    visit(Path(entry.path), f"{name}/")

    try:
        if stat.S_ISDIR(os.lstat(root).st_mode):
            visit(root, "")
    except FileNotFoundError:
        pass
    return found


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create `path` with `data`; never through a symlink and never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def stage_beside(path: Path, suffix: str, data: bytes, mode: int = 0o600) -> Path:
    """A new file `.<name>.<suffix>` beside `path` holding `data`, for an os.replace over `path` once it
    checks out. A stale file or a planted symlink of that name is removed, never followed."""
    staged = path.with_name(f".{path.name}.{suffix}")
    staged.unlink(missing_ok=True)
    write_new(staged, data, mode)
    return staged
