"""File system access that never follows a planted symlink, never hangs on a FIFO and bounds every read.

Profiles, `.env`, out/ and secrets/ come from a checkout that a pull request can
change, so reads check the file's type and size on the opened descriptor (fstat,
not stat then open) and bundle and secrets folders are walked one component at a
time with O_NOFOLLOW, then used through their descriptors (dir_fd, fchmod).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tempo_gen.errors import UnsafeFile

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _CLOEXEC


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
    if stat.S_ISREG(mode):
        return "a regular file"
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
def open_dir_beneath(
    root: Path, parts: tuple[str, ...] = (), *, create: int | None = None, follow_root: bool = False
) -> Iterator[int]:
    """A descriptor of root/parts..., refusing a symlink at any part, and at `root` itself unless
    `follow_root` (a folder the user named); a refused component is an UnsafeFile naming it.

    With `create`, a missing part is made with that mode inside its opened parent (mkdirat), so a
    symlink swapped in along the way is refused like any other, never created through."""
    try:
        fd = os.open(root, _DIR_FLAGS | (0 if follow_root else _NOFOLLOW))
    except OSError as exc:
        raise _not_a_folder(exc, root, str(root), None) from None
    here = root
    try:
        for part in parts:
            here = here / part
            if create is not None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _not_a_folder(exc, here, part, fd) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _not_a_folder(error: OSError, path: Path, name: str, dir_fd: int | None) -> Exception:
    """What to raise when folder `path` (`name` in `dir_fd`) did not open: UnsafeFile saying what is there
    instead of a folder, else the OSError with the whole path (not just its last part) for the message."""
    if error.errno not in (errno.ENOTDIR, errno.ELOOP):
        return OSError(error.errno, error.strerror, str(path))
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return UnsafeFile(path, "is a symlink; refusing to follow it or write through it (use a real folder)")
    return UnsafeFile(path, f"is {kind_of(mode)}, not a folder")


def read_at(dir_fd: int, name: str, limit: int, shown: Path) -> bytes:
    """The bytes of regular file `name` in the open folder `dir_fd`, never following a symlink; errors name `shown`."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(shown, f"is {kind_of(info.st_mode)}, not a regular file")
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFile(shown, f"cannot read file: {exc.strerror}") from None
    try:
        return _read_fd(fd, shown, limit)
    finally:
        os.close(fd)


def read_beneath(root: Path, relative: str, limit: int) -> bytes:
    """The bytes of root/relative, never following a symlink anywhere on the way; raises UnsafeFile or OSError."""
    *parents, name = relative.split("/")
    with open_dir_beneath(root, tuple(parents)) as dir_fd:
        return read_at(dir_fd, name, limit, root / relative)


def lexists_at(dir_fd: int, name: str) -> bool:
    """Whether anything, a symlink included, is at `name` in the open folder `dir_fd`."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


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


def write_new(
    path: Path,
    data: bytes,
    mode: int = 0o644,
    *,
    dir_fd: int | None = None,
    owner: tuple[int, int] | None = None,
    sync: bool = False,
) -> None:
    """Create `path` (relative to the open folder `dir_fd`, if given) with `data`; never through a symlink
    and never over an existing file. `owner` (uid, gid) and `mode` are set on the descriptor before the
    first byte is written; `sync` makes the bytes durable, for a file about to replace another."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def stage_beside(
    path: Path,
    suffix: str,
    data: bytes,
    mode: int = 0o600,
    *,
    dir_fd: int | None = None,
    owner: tuple[int, int] | None = None,
) -> Path:
    """A new file `.<name>.<suffix>` beside `path` (in the open folder `dir_fd`, if given) holding `data`,
    for an os.replace over `path` once it checks out. A stale file or a planted symlink of that name is
    removed, never followed."""
    staged = path.with_name(f".{path.name}.{suffix}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged, dir_fd=dir_fd)
    write_new(staged, data, mode, dir_fd=dir_fd, owner=owner, sync=True)
    return staged


def remove_tree_at(dir_fd: int, name: str, shown: Path) -> None:
    """Remove folder `name` of the open folder `dir_fd` with everything in it, never following a symlink:
    a symlink inside is unlinked, not its target. shutil.rmtree walks through descriptors on Linux
    (avoids_symlink_attacks), so a folder swapped for a symlink mid-walk is refused, not entered."""
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - only platforms without openat()
        raise UnsafeFile(shown, "this platform cannot remove a folder without following symlinks")
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFile(shown, f"is {kind_of(info.st_mode)}, not a folder; refusing to remove it")
    shutil.rmtree(name, dir_fd=dir_fd)
