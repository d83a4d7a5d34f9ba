"""What a running stack offers whichever way it is deployed: its services' containers, exec into them, health.

ComposeProject (compose.py) finds a service's container by the Compose
labels, SwarmProject (swarm.py) by the service's running task; the
rest is the same and lives here once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

from tempo_gen.errors import DeploymentError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

HEALTHY_TIMEOUT = 180  # seconds a recreated service may take to report healthy
STREAM_IDLE_TIMEOUT = 600  # seconds a streamed exec may stay silent (a dump of a large table)
STDERR_LIMIT = 16384  # bytes of a streamed exec's stderr kept for the error message


def docker_client() -> DockerClient:
    """A Docker SDK client of the local (or DOCKER_HOST's) engine, checked to answer."""
    import docker  # the SDK is only needed by commands that talk to the engine

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise DeploymentError(f"cannot reach the Docker engine: {exc}") from None
    return client


class RunningStack(ABC):
    """A deployed stack of services; subclasses say how a service's current container is found."""

    # What wait_healthy reports while the service has no container to ask.
    missing_status = "not running"

    def __init__(self, client: DockerClient):
        self.client = client

    @abstractmethod
    def container(self, service: str) -> Container:
        """The service's current container; DeploymentError when it has none."""

    def exec_with_stdin(self, service: str, command: list[str], stdin: str, timeout: float = 60) -> tuple[int, str]:
        """Run `command` in the service's container feeding `stdin`: nothing sensitive goes in arguments
        or environment, which `docker inspect` of the exec would show. Its exit code, and stdout then stderr."""
        output = bytearray()
        code, stderr = self.exec_stream(service, command, source=[stdin.encode()], sink=output.extend, timeout=timeout)
        return code, output.decode(errors="replace") + stderr

    def exec_stream(
        self,
        service: str,
        command: list[str],
        *,
        source: Iterable[bytes] | None = None,
        sink: Callable[[bytes], object] | None = None,
        timeout: float = STREAM_IDLE_TIMEOUT,
    ) -> tuple[int, str]:
        """Run `command` in the service's container, streaming `source` into its stdin and its stdout into `sink`
        chunk by chunk (a database dump never sits whole in memory); its exit code and (bounded) stderr."""
        return exec_stream(self.container(service), command, source=source, sink=sink, timeout=timeout)

    @abstractmethod
    def stop(self, service: str) -> None:
        """Stop the service (its container stays, with its volumes, for start())."""

    @abstractmethod
    def start(self, service: str) -> None:
        """Start the service stop() stopped; does nothing when it runs."""

    def wait_healthy(self, service: str, timeout: float = HEALTHY_TIMEOUT) -> None:
        """Wait until the service's container reports healthy (a container without a healthcheck: running)."""
        deadline, status = time.monotonic() + timeout, self.missing_status
        while time.monotonic() < deadline:
            try:
                container = self.container(service)
                status = container.attrs["State"].get("Health", {}).get("Status", container.status)
            except DeploymentError:
                status = self.missing_status
            if status == "healthy":
                return
            time.sleep(2)
        raise DeploymentError(f"{service} did not become healthy within {timeout:.0f}s (last status: {status})")


def exec_stream(
    container: Container,
    command: list[str],
    *,
    source: Iterable[bytes] | None = None,
    sink: Callable[[bytes], object] | None = None,
    timeout: float = STREAM_IDLE_TIMEOUT,
) -> tuple[int, str]:
    """exec_stream() on a given container, on the engine that runs it."""
    api = container.client.api if container.client else None
    if api is None:
        raise DeploymentError(f"container {container.name} has no engine to exec on")
    exec_id = api.exec_create(container.id, command, stdin=source is not None, stdout=True, stderr=True)["Id"]
    stream = api.exec_start(exec_id, socket=True)
    try:
        stderr = pump(cast("socket.socket", getattr(stream, "_sock", stream)), source, sink, timeout)
    finally:
        stream.close()
    code: int = api.exec_inspect(exec_id)["ExitCode"]
    return code, stderr


def pump(
    raw: socket.socket, source: Iterable[bytes] | None, sink: Callable[[bytes], object] | None, timeout: float
) -> str:
    """Feed `source` into a hijacked Docker stream (a thread) while its stdout frames go to `sink`; return the
    stderr frames (the last STDERR_LIMIT bytes). A failing source or sink closes the stream: the process in
    the container sees a broken pipe or end of input and stops."""
    raw.settimeout(timeout)
    failed: list[BaseException] = []

    def feed() -> None:
        try:
            for chunk in source or ():
                try:
                    raw.sendall(chunk)
                except OSError:
                    return  # the process stopped reading: its exit status and stderr say why
        except BaseException as exc:  # the source failed: re-raised in the caller's thread
            failed.append(exc)
            _close(raw, socket.SHUT_RDWR)
            return
        _close(raw, socket.SHUT_WR)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    stderr = bytearray()
    try:
        while header := _receive(raw, 8):
            payload = _receive(raw, int.from_bytes(header[4:8], "big"))
            if header[0] == 2:
                stderr = (stderr + payload)[-STDERR_LIMIT:]
            elif sink is not None:
                sink(payload)
    except BaseException:
        _close(raw, socket.SHUT_RDWR)
        raise
    finally:
        feeder.join(timeout)
    if failed:
        raise failed[0]
    return stderr.decode(errors="replace")


def _close(raw: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        raw.shutdown(how)


def _receive(raw: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes, or fewer at the end of the stream."""
    data = bytearray()
    while len(data) < size:
        chunk = raw.recv(min(size - len(data), 1 << 20))
        if not chunk:
            break
        data += chunk
    return bytes(data)
