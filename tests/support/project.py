"""The repository under test and the minimal valid profile most tests start from."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from click.testing import Result

REPO = Path(__file__).resolve().parents[2]

VALID_PROFILE = """\
name: demo
domain: tempo.example.com
tempo:
  allow_unpinned: true
proxy:
  publish_addresses: [203.0.113.10]
firewall:
  admin_cidrs: [198.51.100.0/24]
"""


class RunCli(Protocol):
    """The `cli` fixture: run `tempo-gen --project <project> ARGS` and return click's Result."""

    def __call__(self, *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None) -> Result: ...


def profiles_of_kind(kind: str) -> list[Path]:
    """The example profiles whose proxy is `kind`, for tests that need that proxy's config."""
    from tempo_gen.profile.loader import load_profile
    from tempo_gen.project import discover_profiles

    return [p for p in discover_profiles(REPO) if load_profile(p, REPO).profile.proxy.kind == kind]


def tempo_gen_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m tempo_gen` child: it imports this checkout's generator,
    as the test process does (pytest's pythonpath), not whichever tempo_gen happens to be installed."""
    inherited = os.environ.get("PYTHONPATH")
    path = str(REPO / "generator") + (os.pathsep + inherited if inherited else "")
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_tempo_gen(
    project: Path, *args: str, timeout: float = 60, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, `stdin` its standard input and `env` added to its environment
    (a hang becomes a timeout failure, not a stuck suite)."""
    return subprocess.run(
        [sys.executable, "-m", "tempo_gen", "--project", str(project), *args],
        input=stdin,
        env=tempo_gen_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under `folder` with its bytes: two snapshots compare equal only if nothing changed."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class RenderedProject:
    """A throwaway project of one profile `name` under `root`: where its profile and bundle are."""

    root: Path
    name: str

    @property
    def bundle(self) -> Path:
        return self.root / "out" / self.name

    @property
    def profile(self) -> Path:
        return self.root / "profiles" / f"{self.name}.yaml"
