"""One render at a time per output folder: an flock(2) on the out/ folder itself.

Locking the folder (opened with O_NOFOLLOW|O_DIRECTORY) rather than a lock file
leaves nothing in out/ to commit or to plant a symlink at, and the kernel drops
the lock when the process dies, even by SIGKILL, so a stale lock cannot exist.
A second render waits up to LOCK_TIMEOUT seconds, then says who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tempo_gen.errors import UsageError

LOCK_TIMEOUT = 30.0
_POLL = 0.1


@contextmanager
def render_lock(out_root: Path, *, shared: bool = False, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock of `out_root` (created if missing) for the duration of the block."""
    out_root.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(out_root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UsageError(f"{out_root} is a symlink or not a folder; refusing to write through it") from None
        raise
    try:
        operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + LOCK_TIMEOUT
        announced = False
        while True:
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UsageError(
                        f"another tempo-gen render holds the lock on {out_root} (waited {LOCK_TIMEOUT:g} s); "
                        "try again when it has finished"
                    ) from None
                if not announced and waiting:
                    waiting()
                announced = True
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock
