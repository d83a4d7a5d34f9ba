"""A checkout is untrusted input: symlinks, FIFOs, devices and misplaced secrets, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO, VALID_PROFILE

GENERATOR = str(REPO / "generator")
SECRET = "TOP-SECRET-CONTENT-0123456789"


@pytest.fixture
def demo(project: Path) -> Path:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    return project


@pytest.fixture
def victim(tmp_path_factory) -> Path:
    """A file outside the project a planted symlink points at; nothing may read or change it."""
    path = tmp_path_factory.mktemp("outside") / "shadow"
    path.write_text(SECRET + "\n")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(project: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (a hang becomes a timeout failure, not a stuck suite)."""
    return subprocess.run(
        [sys.executable, "-m", "tempo_gen", "--project", str(project), *args],
        env={**os.environ, "PYTHONPATH": GENERATOR},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# 1. render --check never follows a symlink or reads a non-regular file inside out/


# 2. no command writes through a symlink


# 3. reads are bounded: FIFOs, devices and folders are refused with a located exit 2


def test_a_fifo_profile_is_refused_not_waited_on(project):
    os.mkfifo(project / "profiles" / "demo.yaml")
    result = run(project, "validate", timeout=30)
    assert result.returncode == 2
    assert "profiles/demo.yaml: is a FIFO, not a regular file" in result.stderr


def test_a_folder_profile_is_refused(project):
    (project / "profiles" / "demo.yaml").mkdir()
    result = run(project, "validate")
    assert result.returncode == 2
    assert "profiles/demo.yaml: is a directory, not a regular file" in result.stderr


def test_a_fifo_or_device_as_extends_target_is_refused(project):
    os.mkfifo(project / "profiles" / "_base.yaml")
    (project / "profiles" / "demo.yaml").write_text("extends: _base.yaml\n" + VALID_PROFILE)
    result = run(project, "validate", timeout=30)
    assert result.returncode == 2
    assert "profiles/_base.yaml: is a FIFO, not a regular file" in result.stderr
    (project / "profiles" / "demo.yaml").write_text("extends: /dev/zero\n" + VALID_PROFILE)
    result = run(project, "validate", timeout=30)
    assert result.returncode == 2
    assert "/dev/zero: is a device, not a regular file" in result.stderr


def test_a_fifo_or_oversized_env_is_refused(demo):
    os.mkfifo(demo / ".env")
    result = run(demo, "validate", timeout=30)
    assert result.returncode == 2
    assert ".env: is a FIFO, not a regular file" in result.stderr
    (demo / ".env").unlink()
    (demo / ".env").write_text("A=1\n" * 100_000)
    result = run(demo, "validate")
    assert result.returncode == 2 and ".env: file is 400000 bytes; it may be at most" in result.stderr
    (demo / ".env").write_text("DOMAIN=env.example.com\n")
    (demo / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("tempo.example.com", "${DOMAIN}"))
    assert run(demo, "validate").returncode == 0


# 4. secrets.dir stays out of what git sees, and .gitignore names exactly that folder
