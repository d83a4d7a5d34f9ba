"""age, streamed: a part is encrypted on its way to disk and decrypted on its way into a container.

Debian's `age` CLI does the cryptography (encrypting needs only the profile's
public keys); tempo-gen only pipes bytes through it and hashes them on the
way, so no plaintext copy ever exists on the host. The identity (private key)
of a restore is read once, refused when planted (symlink, FIFO, huge), and
handed to each age process through a memfd, never by a path age would reopen.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tempo_gen.errors import DeploymentError, UsageError
from tempo_gen.ops.backup.layout import CorruptBackup, PartDigest
from tempo_gen.safe_fs import kind_of, read_bounded

CHUNK = 1 << 20
_IDENTITY_LIMIT = 64 * 1024
_AGE_TIMEOUT = 60  # seconds age may take to finish once its input ended
_NOFOLLOW_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DeploymentError(f"the {name} command is not installed (Debian: apt-get install age)")
    return found


@dataclass(frozen=True)
class Sealed:
    """One written part: the digest of what went in (plaintext) and of what is on disk (ciphertext)."""

    content: PartDigest
    stored: PartDigest


class _Digest:
    def __init__(self) -> None:
        self.hash, self.bytes = hashlib.sha256(), 0

    def update(self, data: bytes) -> None:
        self.hash.update(data)
        self.bytes += len(data)

    def result(self) -> PartDigest:
        return PartDigest(bytes=self.bytes, sha256=self.hash.hexdigest())


class Encryptor:
    """A new file `name` in the open folder `dir_fd` (0600, never through a symlink or over a file) receiving
    age's output for the plaintext given to write(); close() returns both digests once age succeeded."""

    def __init__(self, recipients: list[str], dir_fd: int, name: str):
        if not recipients:
            raise UsageError("no age recipients to encrypt to")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        os.fchmod(self.fd, 0o600)
        arguments = [item for recipient in recipients for item in ("-r", recipient)]
        self.process = subprocess.Popen(
            [_tool("age"), "-e", *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.plain, self.cipher = _Digest(), _Digest()
        self.failure: OSError | None = None
        self.copier = threading.Thread(target=self._copy_out, daemon=True)
        self.copier.start()

    def _copy_out(self) -> None:
        out = self._pipe(self.process.stdout)
        try:
            while chunk := out.read(CHUNK):
                self.cipher.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.fd, view) :]
        except OSError as exc:  # e.g. the disk is full: close() reports it
            self.failure = exc
            self.process.kill()

    @staticmethod
    def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
        assert pipe is not None, "created with PIPE"
        return pipe

    def write(self, data: bytes) -> None:
        self.plain.update(data)
        try:
            self._pipe(self.process.stdin).write(data)
        except BrokenPipeError:
            raise DeploymentError(f"age stopped encrypting: {self._error()}") from None

    def _error(self) -> str:
        if self.failure is not None:
            return f"writing the backup failed: {self.failure.strerror}"
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_AGE_TIMEOUT)
        return self._pipe(self.process.stderr).read(4096).decode(errors="replace").strip() or "no reason given"

    def close(self) -> Sealed:
        with contextlib.suppress(BrokenPipeError):
            self._pipe(self.process.stdin).close()
        self.copier.join(_AGE_TIMEOUT)
        try:
            code = self.process.wait(_AGE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = -1
        if code != 0 or self.failure is not None or self.copier.is_alive():
            raise DeploymentError(f"encrypting with age failed: {self._error()}")
        os.fsync(self.fd)
        self._close_fd()
        return Sealed(self.plain.result(), self.cipher.result())

    def abort(self) -> None:
        self.process.kill()
        self.process.wait()
        self.copier.join(_AGE_TIMEOUT)
        self._close_fd()

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def encrypting(recipients: list[str], dir_fd: int, name: str) -> Iterator[Encryptor]:
    """An Encryptor that is aborted (age killed, file closed) when the block fails."""
    encryptor = Encryptor(recipients, dir_fd, name)
    try:
        yield encryptor
    except BaseException:
        encryptor.abort()
        raise


def stored_digest(dir_fd: int, name: str, shown: Path) -> PartDigest:
    """The size and sha256 of file `name` as it is on disk now (re-read, never through a symlink)."""
    digest = _Digest()
    with _open_part(dir_fd, name, shown) as part:
        while chunk := os.read(part, CHUNK):
            digest.update(chunk)
    return digest.result()


@contextlib.contextmanager
def _open_part(dir_fd: int, name: str, shown: Path) -> Iterator[int]:
    try:
        fd = os.open(name, _NOFOLLOW_READ, dir_fd=dir_fd)
    except OSError as exc:
        raise CorruptBackup(shown, f"cannot be read ({exc.strerror}): a symlink, or missing") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CorruptBackup(shown, f"is {kind_of(mode)}, not a regular file")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


class Identity:
    """An age identity file (private key) for a restore, read once and kept in a memfd."""

    def __init__(self, path: Path):
        self.path = path
        try:
            info = os.stat(path)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the identity file: {exc.strerror}") from None
        if info.st_mode & 0o077:
            raise UsageError(f"{path}: the identity (private key) must be readable by its owner only (chmod 600)")
        key = read_bounded(path, _IDENTITY_LIMIT, follow=True)
        self.fd = os.memfd_create("age-identity", os.MFD_CLOEXEC)
        os.write(self.fd, key)
        recipients = self._run(_tool("age-keygen"), "-y")
        self.recipients = frozenset(line.strip() for line in recipients.splitlines() if line.strip())
        if not self.recipients:
            raise UsageError(f"{path}: not an age identity file (age-keygen -y finds no key in it)")

    @property
    def argument(self) -> str:
        return f"/dev/fd/{self.fd}"

    def _run(self, *command: str) -> str:
        result = subprocess.run(
            [*command, self.argument], pass_fds=(self.fd,), capture_output=True, text=True, timeout=_AGE_TIMEOUT
        )
        if result.returncode != 0:
            raise UsageError(f"{self.path}: not an age identity file ({result.stderr.strip()[-200:]})")
        return result.stdout

    def close(self) -> None:
        os.close(self.fd)


class Decryption:
    """The plaintext of encrypted part `name`, streamed in chunks; `content` is its digest once fully read."""

    def __init__(self, identity: Identity, dir_fd: int, name: str, shown: Path):
        self.identity, self.dir_fd, self.name, self.shown = identity, dir_fd, name, shown
        self.digest = _Digest()

    def chunks(self) -> Iterator[bytes]:
        with _open_part(self.dir_fd, self.name, self.shown) as part:
            process = subprocess.Popen(
                [_tool("age"), "-d", "-i", self.identity.argument],
                stdin=part,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(self.identity.fd,),
            )
            try:
                assert process.stdout is not None and process.stderr is not None, "created with PIPE"
                while chunk := process.stdout.read(CHUNK):
                    self.digest.update(chunk)
                    yield chunk
                error = process.stderr.read(4096).decode(errors="replace").strip()
                code = process.wait(_AGE_TIMEOUT)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if code != 0:
            raise self._failure(error)

    def _failure(self, error: str) -> Exception:
        if "no identity matched" in error:
            return UsageError(
                f"{self.identity.path} is not a key this backup was encrypted to "
                f"({self.shown}: age found no identity matching its recipients); nothing was touched"
            )
        return CorruptBackup(self.shown, f"does not decrypt: {error.removeprefix('age: error: ')[:300]}")

    def read_all(self, limit: int) -> bytes:
        """The whole plaintext of a small part (the manifest)."""
        data = bytearray()
        for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise CorruptBackup(self.shown, f"decrypts to more than {limit} bytes")
        return bytes(data)

    @property
    def content(self) -> PartDigest:
        return self.digest.result()
