"""Restore a backup onto the running deployment; if anything fails, put back what was there.

Order: verify everything (ciphertext against index.json, plaintext against the
decrypted manifest) with nothing touched; refuse a newer Tempo or a key that
could not restore the safety backup; take that safety backup; then stop the
API and frontend, restore the database (pg_restore, one transaction) and the
media (everything but imports/), start them and wait until healthy.

restore.json in the backup folder records the step reached. A run killed
after it stopped the API leaves it there: the next `restore` puts the safety
backup back first, the next `backup` refuses and says what to run.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tempo_gen.errors import DeploymentError, TempoGenError, UsageError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.crypt import Decryption, Identity, stored_digest
from tempo_gen.ops.backup.layout import (
    CONTENTS,
    PARTS,
    RESTORE_JOURNAL,
    TOUCHING,
    CorruptBackup,
    Manifest,
    RestoreJournal,
    RestoreStep,
    backup_names,
    read_index,
    read_restore_journal,
)
from tempo_gen.ops.backup.take import (
    in_postgres,
    locked,
    open_backup_folder,
    pause_at,
    require_recipients,
    take_backup,
)
from tempo_gen.ops.running.oneoff import run_job
from tempo_gen.ops.running.stack import RunningStack
from tempo_gen.ops.running.tempo_api import import_in_progress
from tempo_gen.policy.ports import MEDIA_ROOT
from tempo_gen.policy.releases import IMPORT_STAGING
from tempo_gen.safe_fs import open_dir_beneath, stage_beside

_MANIFEST_LIMIT = 64 * 1024
SERVICES = ("frontend", "api")  # stopped in this order, started in the reverse one

RESTORE_DATABASE = in_postgres("pg_restore", "--clean", "--if-exists", "--single-transaction", "--exit-on-error")
RESTORE_DATABASE.insert(RESTORE_DATABASE.index("pg_restore") + 1, "--no-owner")
# Empty the media root but the import staging (an import's chunks are not part of a backup), then unpack;
# members under imports/ in the archive are skipped too. --no-overwrite-dir leaves the root's own owner,
# mode and times alone.
EXTRACT_MEDIA = [
    "sh",
    "-c",
    f'find "$1" -mindepth 1 -maxdepth 1 ! -name {IMPORT_STAGING} -exec rm -rf {{}} + && '
    f'exec tar -C "$1" --anchored --exclude=./{IMPORT_STAGING} --no-same-owner --no-overwrite-dir -xf -',
    "sh",
    MEDIA_ROOT,
]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def verify_backup(folder: Path, name: str, identity: Identity) -> Manifest:
    """Check backup `name` whole before anything is touched: every part against index.json, then decrypted
    against the manifest. CorruptBackup (exit 2) names the part; a wrong key is a UsageError."""
    if name not in backup_names(folder):
        raise UsageError(
            f"{folder / name} is not a complete backup (complete ones: {', '.join(backup_names(folder)) or 'none'})"
        )
    index = read_index(folder, name)
    with open_dir_beneath(folder, (name,), follow_root=False) as fd:
        for part in PARTS:
            shown = folder / name / part
            expected, found = index.parts.get(part), stored_digest(fd, part, shown)
            if expected is None:
                raise CorruptBackup(folder / name / "index.json", f"does not list {part}")
            if found != expected:
                raise CorruptBackup(
                    shown,
                    f"is not what was written ({found.bytes} bytes, index.json says {expected.bytes}; sha256 "
                    "differs): truncated, altered or replaced; nothing was touched",
                )
        shown = folder / name / "manifest.json.age"
        try:
            manifest = Manifest.model_validate_json(
                Decryption(identity, fd, "manifest.json.age", shown).read_all(_MANIFEST_LIMIT)
            )
        except ValidationError as exc:
            raise CorruptBackup(shown, f"is not a tempo-gen manifest ({exc.errors()[0]['msg']})") from None
        if (manifest.created, manifest.tempo_version, manifest.kind) != (
            index.created,
            index.tempo_version,
            index.kind,
        ):
            raise CorruptBackup(folder / name / "index.json", "does not match the backup's encrypted manifest")
        for part, content in CONTENTS.items():
            decryption = Decryption(identity, fd, part, folder / name / part)
            for _ in decryption.chunks():
                pass
            if decryption.content != manifest.contents[content]:
                raise CorruptBackup(folder / name / part, "decrypts to something else than its manifest describes")
    return manifest


def check_restorable(profile: Profile, folder: Path, name: str, identity: Identity) -> Manifest:
    """Everything restore refuses before it touches anything: a bad backup (verify_backup), a backup of a newer
    Tempo than the profile deploys, a key that could not put the safety backup back."""
    manifest = verify_backup(folder, name, identity)
    if _version(manifest.tempo_version) > _version(profile.tempo.version):
        raise UsageError(
            f"backup {name} is from Tempo {manifest.tempo_version}, newer than the deployed "
            f"{profile.tempo.version}: its database has migrations this release does not know. Upgrade to "
            f"{manifest.tempo_version} first, then restore; nothing was touched"
        )
    if not identity.recipients & set(profile.backup.recipients):
        raise UsageError(
            f"{identity.path} is not the key of any of backup.recipients: the safety backup taken before "
            "restoring could not be put back with it; nothing was touched"
        )
    return manifest


@dataclass(frozen=True)
class _Target:
    """Where the media go: the API's volume, and the image and uid to write it with (noted in the journal)."""

    volume: str
    image: str
    user: str

    @classmethod
    def of(cls, stack: RunningStack) -> _Target:
        api = stack.container("api")
        volume = next(
            (
                m.get("Name")
                for m in api.attrs.get("Mounts", [])
                if m.get("Destination") == MEDIA_ROOT and m.get("Type") == "volume"
            ),
            None,
        )
        if not volume:
            raise DeploymentError(f"the API container mounts no volume at {MEDIA_ROOT}: nothing to restore media into")
        user = str(api.attrs["Config"].get("User") or "")
        if not re.fullmatch(r"[1-9][0-9]{0,9}(:[0-9]{1,10})?", user):
            raise DeploymentError(
                f"the API container runs as {user or 'root'!r}, not a numeric non-root uid (render the bundle)"
            )
        return cls(str(volume), str(api.image.id if api.image else ""), user)


class _Journal:
    """restore.json, rewritten (atomically) at each step."""

    def __init__(self, folder: Path, entry: RestoreJournal):
        self.folder, self.entry = folder, entry

    def mark(self, step: RestoreStep, safety: str | None = None) -> None:
        self.entry = self.entry.model_copy(update={"step": step, "safety": safety or self.entry.safety})
        with open_dir_beneath(self.folder, follow_root=False) as fd:
            staged = stage_beside(Path(RESTORE_JOURNAL), "new", self.entry.model_dump_json().encode(), 0o600, dir_fd=fd)
            os.replace(staged, RESTORE_JOURNAL, src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)

    def remove(self) -> None:
        with open_dir_beneath(self.folder, follow_root=False) as fd, contextlib.suppress(FileNotFoundError):
            os.unlink(RESTORE_JOURNAL, dir_fd=fd)


def restore(
    profile: Profile,
    stack: RunningStack,
    name: str,
    identity: Identity,
    say: Callable[[str], object],
    force: bool = False,
) -> str:
    """Restore backup `name` onto the running deployment; the name of the safety backup taken before.
    On failure the deployment is put back from it and DeploymentError says what happened. Refused while a
    bulk import is in progress (stopping the API would interrupt it) unless `force`."""
    require_recipients(profile)
    folder = open_backup_folder(profile)
    with locked(folder):
        recovered = recover(profile, stack, folder, identity, say)
        if recovered == name:
            return name  # what was asked for is what the recovery just put back
        check_restorable(profile, folder, name, identity)
        if import_in_progress(stack):
            if not force:
                raise DeploymentError(
                    "a bulk import is in progress and stopping the API would interrupt it; wait until it "
                    "finishes, or pass --force; nothing was touched"
                )
            say("note: --force: the import in progress is interrupted")
        target = _Target.of(stack)
        journal = _Journal(
            folder,
            RestoreJournal(
                backup=name, step="verified", media_volume=target.volume, api_image=target.image, api_user=target.user
            ),
        )
        journal.mark("verified")
        try:
            safety = take_backup(profile, stack, "safety").name
        except BaseException:
            journal.remove()
            raise
        journal.mark("safety", safety)
        say(f"safety backup {safety} taken; restoring {name}")
        try:
            _apply(stack, target, folder, name, identity, journal.mark)
        except (TempoGenError, OSError) as exc:
            _roll_back(stack, target, folder, journal, identity, exc, say)
        journal.remove()
        return safety


def _roll_back(
    stack: RunningStack,
    target: _Target,
    folder: Path,
    journal: _Journal,
    identity: Identity,
    failure: BaseException,
    say: Callable[[str], object],
) -> None:
    step, safety = journal.entry.step, journal.entry.safety
    assert safety is not None, "marked before any step that touches the deployment"
    say(f"restore failed at step {step!r}: putting back the safety backup {safety}")
    try:
        _apply(stack, target, folder, safety, identity, lambda _step: None)
    except (TempoGenError, OSError) as again:
        raise DeploymentError(
            f"restoring {journal.entry.backup} failed at step {step!r} ({failure}), and putting back the safety "
            f"backup {safety} failed too ({again}). {folder}/restore.json stays: once the cause is fixed, "
            f"`tempo-gen restore PROFILE {safety} --identity KEYFILE` puts it back"
        ) from None
    journal.remove()
    raise DeploymentError(
        f"restoring {journal.entry.backup} failed at step {step!r}: {failure}; the deployment is back as it was "
        f"(safety backup {safety})"
    ) from None


def recover(
    profile: Profile, stack: RunningStack, folder: Path, identity: Identity, say: Callable[[str], object]
) -> str | None:
    """Act on the journal of a killed restore: put its safety backup back when it had touched the deployment
    (the safety backup's name), else just drop the journal (None)."""
    entry = read_restore_journal(folder)
    if entry is None:
        return None
    journal = _Journal(folder, entry)
    if entry.step not in TOUCHING or entry.safety is None:
        say(f"note: an earlier restore of {entry.backup} stopped before touching the deployment; nothing to undo")
        journal.remove()
        return None
    say(
        f"an earlier restore of {entry.backup} was interrupted at step {entry.step!r}: "
        f"putting back the safety backup {entry.safety} taken before it"
    )
    verify_backup(folder, entry.safety, identity)
    target = _Target(entry.media_volume, entry.api_image, entry.api_user)
    _apply(stack, target, folder, entry.safety, identity, lambda _step: None)
    journal.remove()
    say(f"the deployment is back as it was before that restore (safety backup {entry.safety})")
    return entry.safety


def _apply(
    stack: RunningStack,
    target: _Target,
    folder: Path,
    name: str,
    identity: Identity,
    mark: Callable[[RestoreStep], None],
) -> None:
    """Stop the API and frontend, put backup `name`'s database and media in place, start them, wait."""
    try:  # the engine that runs the API holds its media volume (on a cluster, not always ours)
        engine = stack.container("api").client or stack.client
    except DeploymentError:
        engine = stack.client  # a recovery finds the API stopped already
    mark("stopped")
    for service in SERVICES:
        stack.stop(service)
    with open_dir_beneath(folder, (name,), follow_root=False) as fd:
        mark("database")
        database = Decryption(identity, fd, "db.dump.age", folder / name / "db.dump.age")
        code, stderr = stack.exec_stream("postgres", RESTORE_DATABASE, source=_paused(database.chunks(), "database"))
        if code != 0:
            raise DeploymentError(f"pg_restore failed (exit {code}): {stderr.strip()[-400:]}")
        mark("media")
        media = Decryption(identity, fd, "media.tar.age", folder / name / "media.tar.age")
        code, stderr = run_job(
            engine,
            target.image,
            EXTRACT_MEDIA,
            name=f"{target.volume}-restore",
            user=target.user,
            volumes={target.volume: (MEDIA_ROOT, "rw")},
            source=_paused(media.chunks(), "media"),
        )
        if code != 0:
            raise DeploymentError(f"unpacking the media failed (exit {code}): {stderr.strip()[-400:]}")
    mark("started")
    for service in reversed(SERVICES):
        stack.start(service)
    for service in reversed(SERVICES):
        stack.wait_healthy(service)


def _paused(chunks: Iterable[bytes], step: str) -> Iterator[bytes]:
    """`chunks`, with the test hook (take.pause_at) after the first one went in."""
    for number, chunk in enumerate(chunks):
        yield chunk
        if number == 0:
            pause_at(f"restore:{step}")
