"""What was last deployed successfully: the bundle it ran and the image ids of its services.

Kept in `.tempo-gen/<name>/` beside out/ (same depth, so the bundle's relative
paths, the secrets folder's included, resolve alike), the record in it as
DEPLOYED.json, both swapped in at once by the bundle writer: outside out/
(committed, writable by whoever merges) and outside git. The folder is the
deploying user's alone (0700); everything read back is checked before a
rollback trusts it: owner and mode, no symlink anywhere, every file's sha256
against the copy's manifest, and each record field against a strict pattern.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.manifest import MANIFEST, recorded_hashes, sha256
from tempo_gen.bundle.writer import write_bundles
from tempo_gen.errors import UnsafeFile, UsageError
from tempo_gen.policy.releases import SUPPORTED
from tempo_gen.safe_fs import read_beneath, walk

STATE_DIR = ".tempo-gen"
RECORD = "DEPLOYED.json"
MAX_RECORD_BYTES = 64 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024
SERVICES = ("postgres", "api", "frontend", "proxy")
_IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]{0,200}(:[A-Za-z0-9._-]{1,128})?")
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Deployed:
    """The last successful deploy: Tempo's release, each service's image (name it ran as, id), when."""

    version: str
    images: dict[str, tuple[str, str]]
    deployed_at: str
    bundle: Path


def state_root(bundle: Path) -> Path:
    """`.tempo-gen/` beside the out/ folder holding `bundle`."""
    return bundle.parent.parent / STATE_DIR


def _checked_root(bundle: Path, create: bool) -> Path | None:
    root = state_root(bundle)
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{root} is not a folder (a symlink or a file); refusing to use it as deploy state")
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise UsageError(
            f"{root} must belong to uid {os.geteuid()} with mode 0700 (it is uid {info.st_uid}, mode "
            f"{info.st_mode & 0o777:o}); refusing to trust deploy state others can change"
        )
    return root


def load(bundle: Path) -> Deployed | None:
    """The last successful deploy of `bundle`'s deployment, checked; None when none was recorded."""
    root = _checked_root(bundle, create=False)
    if root is None:
        return None
    record_path = root / bundle.name / RECORD
    if not os.path.lexists(root / bundle.name):
        return None
    try:
        record = json.loads(read_beneath(root, f"{bundle.name}/{RECORD}", MAX_RECORD_BYTES))
    except (OSError, UnsafeFile, ValueError, RecursionError) as exc:
        raise UsageError(f"{record_path}: unreadable deploy record ({exc}); refusing to roll back from it") from None
    copy = root / bundle.name
    deployed = _parse(record, record_path, copy)
    _verify_copy(copy, record["manifest_sha256"])
    return deployed


def _parse(record: object, path: Path, copy: Path) -> Deployed:
    def bad(what: str) -> UsageError:
        return UsageError(f"{path}: {what}; refusing to roll back from a record that was changed")

    if not isinstance(record, dict) or set(record) != {"version", "images", "deployed_at", "manifest_sha256"}:
        raise bad("not a deploy record written by tempo-gen")
    if record["version"] not in SUPPORTED:
        raise bad(f"version {str(record['version'])[:40]!r} is not a supported release")
    if not isinstance(record["manifest_sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", record["manifest_sha256"]):
        raise bad("manifest_sha256 is not a sha256")
    if not isinstance(record["deployed_at"], str) or not re.fullmatch(r"[0-9T:+.-]{10,40}", record["deployed_at"]):
        raise bad("deployed_at is not a time")
    images = record["images"]
    if not isinstance(images, dict) or not set(images) <= set(SERVICES):
        raise bad(f"images must name only {', '.join(SERVICES)}")
    parsed: dict[str, tuple[str, str]] = {}
    for service, entry in images.items():
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and all(isinstance(part, str) for part in entry)
            and _IMAGE_NAME.fullmatch(entry[0])
            and _IMAGE_ID.fullmatch(entry[1])
        ):
            raise bad(f"images.{service} is not [image name, sha256 id]")
        parsed[service] = (entry[0], entry[1])
    return Deployed(record["version"], parsed, record["deployed_at"], copy)


def _verify_copy(copy: Path, manifest_sha256: str) -> None:
    """Every file of the kept bundle is what its manifest (the one the record names) says; nothing else is there."""
    try:
        manifest = read_beneath(copy, MANIFEST, MAX_FILE_BYTES)
    except (OSError, UnsafeFile) as exc:
        raise UsageError(f"{copy}: the kept bundle has no readable manifest ({exc})") from None
    if sha256(manifest) != manifest_sha256:
        raise UsageError(f"{copy}/{MANIFEST} is not the one recorded at the last deploy; refusing to roll back to it")
    expected = recorded_hashes(copy)
    for path, mode in walk(copy).items():
        if stat.S_ISDIR(mode):
            continue
        if path in (MANIFEST, RECORD) and stat.S_ISREG(mode):
            continue
        if not stat.S_ISREG(mode) or path not in expected:
            raise UsageError(f"{copy}/{path}: not a file of the kept bundle; refusing to roll back to it")
        if sha256(read_beneath(copy, path, MAX_FILE_BYTES)) != expected[path]:
            raise UsageError(f"{copy}/{path} changed since the last deploy; refusing to roll back to it")


def save(bundle: Path, files: list[RenderedFile], version: str, images: dict[str, tuple[str, str]]) -> None:
    """Record a successful deploy: the bundle's files and the record, swapped in at once by out/'s writer."""
    root = _checked_root(bundle, create=True)
    assert root is not None, "created above"
    manifest = next(f for f in files if str(f.path) == MANIFEST)
    record = {
        "version": version,
        "images": {service: list(entry) for service, entry in sorted(images.items())},
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "manifest_sha256": sha256(manifest.content.encode()),
    }
    document = RenderedFile(PurePosixPath(RECORD), json.dumps(record, indent=2, sort_keys=True) + "\n", 0o600)
    write_bundles([([*files, document], root / bundle.name)])


@contextlib.contextmanager
def deploy_lock(bundle: Path) -> Iterator[None]:
    """One deploy or upgrade at a time per project: an flock on the state folder (dropped when the process dies)."""
    root = _checked_root(bundle, create=True)
    fd = os.open(root or state_root(bundle), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                "another tempo-gen deploy or upgrade is running in this project; try again later"
            ) from None
        yield
    finally:
        os.close(fd)
