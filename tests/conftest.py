"""Shared fixtures: a throwaway project folder and a CLI runner bound to it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme
from click.testing import CliRunner, Result

from support.project import REPO, VALID_PROFILE, RunCli
from tempo_gen.cli import main

if TYPE_CHECKING:  # imported where used: the tests that need no Docker never load the SDK
    import docker

    from support.engine import EngineRecord


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project with profiles/ and a copy of the profile schema."""
    (tmp_path / "profiles").mkdir()
    shutil.copy(REPO / "profiles" / "schema.json", tmp_path / "profiles" / "schema.json")
    return tmp_path


@pytest.fixture
def cli(project: Path) -> RunCli:
    """Run `tempo-gen --project <project> ARGS`, returning click's Result."""
    runner = CliRunner()

    def run(*args: str, env: Mapping[str, str | None] | None = None, input: str | None = None) -> Result:
        return runner.invoke(main, ["--project", str(project), *args], env=env, input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def age_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Two real age key pairs, "right" and "wrong": name -> (identity file, 0600; public key)."""
    folder = tmp_path_factory.mktemp("age-keys")
    folder.chmod(0o700)
    keys = {}
    for name in ("right", "wrong"):
        key = folder / f"{name}.key"
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True, timeout=30)
        key.chmod(0o600)
        public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True, timeout=30)
        keys[name] = (key, public.stdout.strip())
    return keys


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority the proxy tests issue and trust certificates from."""
    return trustme.CA()


@pytest.fixture
def demo(project: Path) -> Path:
    """A project holding the minimal valid profile, `demo`."""
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    return project


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[EngineRecord]:
    """A Docker daemon that answers for the whole session; stopped afterwards only if we started it."""
    from support.engine import ensure_engine, stop_engine

    record = ensure_engine()
    yield record
    stop_engine(record)


@pytest.fixture(scope="session")
def docker_client(docker_engine: EngineRecord) -> Iterator[docker.DockerClient]:
    import docker

    client = docker.from_env(timeout=300)
    yield client
    client.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite generated reference files (profiles/schema.json, docs/profile-reference.md) instead of failing.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
