"""Rendering a project through the CLI, and the external checkers (Compose, linters) tests run on it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.project import REPO, VALID_PROFILE

DIGEST = "@sha256:" + "ab" * 32
PINNED_PROFILE = VALID_PROFILE.replace(
    "  allow_unpinned: true\n",
    f"""\
  images:
    api: ghcr.io/trevordavies095/tempo/api:v2.10.1{DIGEST}
    frontend: ghcr.io/trevordavies095/tempo/frontend:v2.10.1{DIGEST}
    postgres: postgres:16-alpine{DIGEST}
""",
).replace("proxy:\n", f"proxy:\n  image: nginxinc/nginx-unprivileged:1.28-alpine{DIGEST}\n")


def render(cli: Callable[..., Any], project: Path, text: str) -> Path:
    """Write `text` as profiles/demo.yaml, run `render`, and return the bundle folder."""
    (project / "profiles" / "demo.yaml").write_text(text)
    result = cli("render")
    assert result.exit_code == 0, result.output
    return project / "out" / "demo"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run the README's test command (it installs the test tools)")
    return path


def compose_lint(compose: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("compose-lint"), "check", "--format", "json", "--fail-on", "critical", str(compose)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return findings


def _passes(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def assert_compose_accepts(compose_file: Path) -> None:
    """The real Compose v2 parser reads the file without an error (`config -q`)."""
    from support.engine import compose_command

    _passes([*compose_command(), "-f", str(compose_file), "config", "-q"])


def assert_yamllint_strict_clean(folder: Path) -> None:
    _passes([tool("yamllint"), "--strict", "-c", str(REPO / ".yamllint.yaml"), str(folder)])


def assert_hadolint_clean(dockerfiles: list[Path]) -> None:
    _passes([tool("hadolint"), *map(str, dockerfiles)])
