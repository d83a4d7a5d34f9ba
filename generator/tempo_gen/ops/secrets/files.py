"""The deployment's two secrets on the host: create, check and rotate them without ever showing a value.

Compose file secrets are bind mounts that keep the host file's owner and mode
(Compose does not apply uid/gid/mode to file secrets), so each file is owned
so that exactly the container users that need it can read it: the JWT key by
the API's uid (0400), the database password by the API's uid and Postgres's
gid (0440). FileStore is the Compose backend of the secret store (store.py);
its rotation is in rotation.py.

The folder may come from a checkout, so it is only ever reached by secrets_folder
(no symlink followed below the project folder, or below / for an absolute
secrets.dir) and used through its descriptor: init, check and rotate can never be
steered into writing, chmodding or reading another folder.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tempo_gen.errors import UnsafeFile
from tempo_gen.models.profile import Profile
from tempo_gen.ops.secrets.store import Created, SecretProblem, secret_to_rotate
from tempo_gen.ops.secrets.values import SECRET_NAMES, new_value, weaknesses
from tempo_gen.safe_fs import lexists_at, open_dir_beneath, read_at, stage_beside

# Only the Docker daemon (root) opens the folder; containers see the bind-mounted files.
DIR_MODE = 0o700
# A secret is one 64-character token; anything far bigger is not a secret file we made.
SECRET_SIZE_LIMIT = 4096


def secrets_dir(profile: Profile, root: Path) -> Path:
    folder = Path(profile.secrets_dir)
    return folder if folder.is_absolute() else root / folder


@contextmanager
def secrets_folder(profile: Profile, root: Path, *, create: bool = False) -> Iterator[int]:
    """A descriptor of the secrets folder; every file operation goes through it (dir_fd, fchmod).

    Each component below the anchor -- the project folder, or / for an absolute secrets.dir -- is
    opened with O_NOFOLLOW, so a symlink committed at secrets/ or secrets/<name> is refused
    (UnsafeFile naming it), never followed. With `create`, missing folders are made private."""
    folder = profile.secrets_dir
    anchor, parts = (Path("/"), folder.parts[1:]) if folder.is_absolute() else (root, folder.parts)
    with open_dir_beneath(anchor, parts, create=DIR_MODE if create else None, follow_root=True) as fd:
        yield fd


@contextmanager
def existing_secrets_folder(profile: Profile, root: Path) -> Iterator[int | None]:
    """secrets_folder, or None while it does not exist (nothing is created)."""
    with ExitStack() as stack:
        try:
            fd: int | None = stack.enter_context(secrets_folder(profile, root))
        except FileNotFoundError:
            fd = None
        yield fd


@dataclass(frozen=True)
class Ownership:
    uid: int
    gid: int
    mode: int


def ownership(profile: Profile, name: str) -> Ownership:
    """Who must be able to read secret `name`: its consumers' container users, nobody else."""
    users = profile.containers.users
    if name == "jwt_key":
        return Ownership(users.api, users.api, 0o400)
    return Ownership(users.api, users.postgres, 0o440)


def init_secrets(profile: Profile, root: Path) -> list[Created]:
    """Create every missing secret file; never overwrite one."""
    folder = secrets_dir(profile, root)
    result: list[Created] = []
    with secrets_folder(profile, root, create=True) as dir_fd:
        _own(dir_fd, Ownership(0, 0, DIR_MODE))
        for name in SECRET_NAMES:
            path = folder / name
            if lexists_at(dir_fd, name):  # a symlink too: _reown refuses it, never follows it
                result.append(Created(str(path), False, _reown(dir_fd, name, path, ownership(profile, name))))
                continue
            write_secret(dir_fd, name, new_value(), ownership(profile, name))
            result.append(Created(str(path), True))
    return result


def write_secret(dir_fd: int, name: str, value: str, owner: Ownership) -> None:
    """Write `value` to secret `name` in the open secrets folder atomically: a staged file, private and
    (as root) given its owner before the first byte, replaces it."""
    uid_gid = (owner.uid, owner.gid) if os.geteuid() == 0 else None
    staged = stage_beside(Path(name), "tmp", value.encode(), owner.mode, dir_fd=dir_fd, owner=uid_gid)
    os.replace(staged, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


_NOT_A_FILE = "not a regular file; remove it and run `tempo-gen secrets init`"


def _reown(dir_fd: int, name: str, path: Path, owner: Ownership) -> str:
    """As root, give a kept secret file the owner and mode the profile wants now (a uid may have
    changed since it was made); what changed, or "". Opened without following a symlink, so a
    planted link never hands its target to a container user (nor gets a `sudo chown` hint)."""
    if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        raise UnsafeFile(path, _NOT_A_FILE)
    if os.geteuid() != 0:
        return ""  # only root can chown: init_hints says what to run
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        raise UnsafeFile(path, _NOT_A_FILE) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped since the check above
            raise UnsafeFile(path, _NOT_A_FILE)
        changes = []
        if (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
            os.fchown(fd, owner.uid, owner.gid)
            changes.append(f"owner {info.st_uid}:{info.st_gid} -> {owner.uid}:{owner.gid}")
        if stat.S_IMODE(info.st_mode) != owner.mode:
            os.fchmod(fd, owner.mode)
            changes.append(f"mode {stat.S_IMODE(info.st_mode):o} -> {owner.mode:o}")
        return ", ".join(changes)
    finally:
        os.close(fd)


def read_secret(dir_fd: int, name: str, path: Path) -> str:
    """The value of secret `name` in the open secrets folder: never through a symlink, bounded, and UTF-8
    (the error names `path` and never quotes the value)."""
    raw = read_at(dir_fd, name, SECRET_SIZE_LIMIT, path)
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        raise UnsafeFile(path, "is not UTF-8 text; remove it and run `tempo-gen secrets init`") from None


def _own(fd: int, owner: Ownership) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, owner.uid, owner.gid)
    os.fchmod(fd, owner.mode)


def ownership_commands(profile: Profile, root: Path) -> list[str]:
    """What a non-root user must run to give the files their owners (empty when already right)."""
    folder = secrets_dir(profile, root)
    wanted = {".": Ownership(0, 0, DIR_MODE), **{n: ownership(profile, n) for n in SECRET_NAMES}}
    commands = []
    with existing_secrets_folder(profile, root) as dir_fd:
        for name, owner in wanted.items():
            if dir_fd is None or not lexists_at(dir_fd, name):
                continue
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
                commands.append(f"sudo chown {owner.uid}:{owner.gid} {folder / name}")
    return commands


def check_secrets(profile: Profile, root: Path) -> list[SecretProblem]:
    """Missing, weak, wrongly-owned or world-readable secret files (values are never reported)."""
    folder = secrets_dir(profile, root)
    problems: list[SecretProblem] = []
    with existing_secrets_folder(profile, root) as dir_fd:
        folder_mode = stat.S_IMODE(os.fstat(dir_fd).st_mode) if dir_fd is not None else DIR_MODE
        if folder_mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(
                SecretProblem(str(folder), f"folder is open to other users (mode {folder_mode:o}; want {DIR_MODE:o})")
            )
        for name in SECRET_NAMES:
            path = folder / name
            if dir_fd is None or not lexists_at(dir_fd, name):
                problems.append(SecretProblem(str(path), "missing (run `tempo-gen secrets init`)"))
                continue
            try:
                value = read_secret(dir_fd, name, path)
            except UnsafeFile as unreadable:
                problems.append(SecretProblem(str(path), unreadable.reason))
                continue
            info, owner = os.stat(name, dir_fd=dir_fd, follow_symlinks=False), ownership(profile, name)
            mode = stat.S_IMODE(info.st_mode)
            if mode & stat.S_IRWXO:
                problems.append(SecretProblem(str(path), f"world-accessible (mode {mode:o}; want {owner.mode:o})"))
            elif mode != owner.mode:
                problems.append(SecretProblem(str(path), f"mode {mode:o}; want {owner.mode:o}"))
            if (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
                problems.append(
                    SecretProblem(
                        str(path),
                        f"owned by {info.st_uid}:{info.st_gid}; want {owner.uid}:{owner.gid}, "
                        "the container users that read it",
                    )
                )
            problems += [SecretProblem(str(path), p) for p in weaknesses(name, value)]
    return problems


class FileStore:
    """The secret store of deploy.mode compose: files in the profile's secrets folder, mounted by Compose."""

    def __init__(self, profile: Profile, root: Path, bundle: Path):
        self.profile = profile
        self.root = root
        self.bundle = bundle  # the rendered bundle whose compose.yaml runs the stack

    def init(self) -> list[Created]:
        return init_secrets(self.profile, self.root)

    def init_hints(self) -> list[str]:
        commands = ownership_commands(self.profile, self.root)
        if not commands:
            return []
        return [
            "not running as root: give the files the owners that let only their containers read them:",
            *(f"  {command}" for command in commands),
        ]

    def check(self) -> list[SecretProblem]:
        return check_secrets(self.profile, self.root)

    def rotate(self, which: str) -> list[str]:
        # rotation.py builds on this module's file helpers: imported here, not at the top.
        from tempo_gen.ops.running.compose import ComposeProject
        from tempo_gen.ops.secrets.rotation import rotate_db, rotate_jwt

        secret = secret_to_rotate(which)
        stack = ComposeProject(self.profile.name, self.bundle)
        if secret == "jwt_key":
            rotate_jwt(self.profile, self.root, stack)
            return ["JWT key rotated and the API restarted: every session has ended; log in again."]
        rotate_db(self.profile, self.root, stack)
        return ["Database password rotated in Postgres and in the secret file; the API restarted with it."]
