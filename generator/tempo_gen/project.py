"""The project folder: where profiles, out/ and the secrets live, and what git must never see."""

from __future__ import annotations

import errno
import os
import posixpath
from pathlib import Path, PurePosixPath

from tempo_gen.errors import UnsafeFile, UsageError
from tempo_gen.safe_fs import read_bounded

PROFILE_DIR = "profiles"
OUT_DIR = "out"
MAX_GITIGNORE_BYTES = 1024 * 1024
_GITIGNORE_SPECIAL = set("*?[]!#\\")


def discover_profiles(root: Path) -> list[Path]:
    """Every renderable profile: profiles/*.yaml, except partials named _*.yaml (bases for `extends`)."""
    return sorted(p for p in (root / PROFILE_DIR).glob("*.yaml") if not p.name.startswith("_"))


def compose_secrets_dir(secrets_dir: PurePosixPath, project_root: Path, bundle_dir: Path) -> str:
    """The secrets folder as Compose resolves it, relative to compose.yaml's folder."""
    if secrets_dir.is_absolute():
        return str(secrets_dir)
    absolute = (project_root / secrets_dir).resolve()
    return PurePosixPath(os.path.relpath(absolute, bundle_dir.resolve())).as_posix()


def misplaced_secrets_dir(secrets_dir: PurePosixPath, project_root: Path, out_root: Path | None = None) -> str | None:
    """Why `secrets_dir` may not hold secrets (the project root, or inside out/ or profiles/), or None."""
    folder = (project_root / secrets_dir).resolve()
    root = project_root.resolve()
    if folder == root:
        return "is the project folder itself; secrets need a folder of their own (e.g. secrets/<name>)"
    for name, place in ((OUT_DIR, out_root or project_root / OUT_DIR), (PROFILE_DIR, project_root / PROFILE_DIR)):
        resolved = place.resolve()
        if folder == resolved or resolved in folder.parents:
            return f"points into {name}/ ({place}), which is committed; keep secrets out of it"
    return None


def unignorable(secrets_dir: PurePosixPath) -> str | None:
    """Why no .gitignore line can name `secrets_dir` literally, or None."""
    for part in secrets_dir.parts:
        if _GITIGNORE_SPECIAL & set(part) or part != part.strip():
            return (
                f"holds a character .gitignore treats specially in {part!r} "
                "(* ? [ ] ! # \\ or leading/trailing spaces); choose a plain folder name"
            )
    return None


def ignore_rule(secrets_dir: PurePosixPath) -> str | None:
    """The .gitignore line that ignores exactly `secrets_dir`, or None when it lies outside the project."""
    if secrets_dir.is_absolute():
        return None
    normal = posixpath.normpath(secrets_dir.as_posix())
    if normal in {".", ".."} or normal.startswith("../"):
        return None
    if reason := unignorable(PurePosixPath(normal)):
        raise UsageError(f"secrets.dir {str(secrets_dir)!r} {reason}")
    return f"/{normal}/"


def ensure_ignored(
    root: Path, secrets_dirs: list[PurePosixPath], why: str = "Secret files (tempo-gen secrets init)"
) -> None:
    """Make sure git ignores every secrets folder (or other private folder, `why` says which) that sits
    inside the project, in one append; never writes through a symlink."""
    rules = [rule for folder in secrets_dirs if (rule := ignore_rule(folder))]
    if not rules:
        return
    gitignore = root / ".gitignore"
    try:
        text = read_bounded(gitignore, MAX_GITIGNORE_BYTES, follow=False).decode("utf-8", errors="replace")
    except UnsafeFile as exc:
        if os.path.lexists(gitignore):
            raise UsageError(f"{gitignore}: {exc.reason}; refusing to edit it") from None
        text = ""
    lines = [line.rstrip() for line in text.splitlines()]
    added: list[str] = []
    for rule in rules:
        if not _covered(rule, lines + added):
            added.append(rule)
    if not added:
        return
    addition = (
        ("\n" if text and not text.endswith("\n") else "")
        + ("\n" if lines and lines[-1] else "")
        + f"# {why}; never committed.\n"
        + "".join(f"{rule}\n" for rule in added)
    )
    try:
        fd = os.open(gitignore, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{gitignore} is a symlink; refusing to write through it") from None
        raise
    try:
        os.write(fd, addition.encode())
    finally:
        os.close(fd)


def _covered(rule: str, lines: list[str]) -> bool:
    """Whether a .gitignore line already ignores the folder of `rule` (that folder, or one above it)."""
    parts = rule.strip("/").split("/")
    covering = {f"{'/'.join(parts[:i])}/" for i in range(1, len(parts) + 1)}
    return any(line in covering or line.removeprefix("/") in covering for line in lines)
