"""One test's private corner of the engine: a user-defined network plus the
containers and volumes started on it, all removed by close() even when the
test failed. Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import shlex
import uuid
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.models.volumes import Volume

LABEL = "org.tempo-gen.e2e"
PROBE_LIFETIME = 900  # seconds: an orphaned probe container stops by itself


class Sandbox:
    def __init__(self, client: docker.DockerClient, prefix: str = "tempo-e2e") -> None:
        self.client = client
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.labels = {LABEL: self.name}
        self.containers: list[Container] = []
        self.volumes: list[Volume] = []
        self.network = client.networks.create(self.name, driver="bridge", labels=self.labels)
        self._probe: Container | None = None

    # -- lifecycle

    def run(self, image: str, alias: str, **kwargs: Any) -> Container:
        """Start a detached container reachable as `alias` on this network."""
        endpoint = self.client.api.create_endpoint_config(aliases=[alias])
        container = self.client.containers.run(
            image,
            detach=True,
            name=f"{self.name}-{alias}",
            labels=self.labels,
            network=self.name,  # the network's name (its model types the name as optional)
            networking_config={self.name: endpoint},
            **kwargs,
        )
        self.containers.append(container)
        return container

    def volume(self, role: str) -> str:
        vol = self.client.volumes.create(name=f"{self.name}-{role}", labels=self.labels)
        self.volumes.append(vol)
        return vol.name

    def close(self) -> None:
        for container in reversed(self.containers):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        for vol in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                vol.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.network.remove()

    # -- observation

    @staticmethod
    def logs(container: Container) -> str:
        return container.logs(stdout=True, stderr=True).decode("utf-8", "replace")

    @staticmethod
    def wait_exit(container: Container, timeout: float = 60) -> int:
        """Exit code of a container expected to stop by itself."""
        try:
            return container.wait(timeout=timeout)["StatusCode"]
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            container.kill()
            raise AssertionError(f"{container.name} still running after {timeout:.0f}s") from None

    @staticmethod
    def exec(container: Container, *cmd: str, timeout: int = 30, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run a command in a running container, killed by `timeout` if it hangs."""
        code, out = container.exec_run(
            ["timeout", str(timeout), *cmd],
            environment=env or {},
            demux=False,
        )
        assert code is not None, "exec_run waits for the exit code unless detached"
        assert isinstance(out, bytes | None), "not streamed"
        return code, (out or b"").decode("utf-8", "replace")

    def probe(self, *cmd: str, timeout: int = 30, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run a command in the tools container on this network."""
        if self._probe is None:
            self._probe = self.run(
                "tempo-e2e/tools:latest",
                "probe",
                command=["sleep", str(PROBE_LIFETIME)],
                read_only=True,
                tmpfs={"/tmp": ""},
            )
        return self.exec(self._probe, *cmd, timeout=timeout, env=env)

    def http(self, url: str, *curl_args: str, timeout: int = 20) -> tuple[int, dict[str, list[str]], str]:
        """(status, lower-cased headers, body) of one request made from the probe."""
        marker = "\n--tempo-e2e-status--"
        code, out = self.probe(
            "curl",
            "-sS",
            "--max-time",
            str(timeout),
            "-D",
            "/dev/stdout",
            "-w",
            marker + "%{http_code}",
            *curl_args,
            url,
            timeout=timeout + 5,
        )
        if code != 0 or marker not in out:
            return 0, {}, out
        raw, status = out.rsplit(marker, 1)
        head, _, body = raw.partition("\r\n\r\n")
        while head.startswith("HTTP/") and head.split(" ", 2)[1].startswith("1"):
            head, _, body = body.partition("\r\n\r\n")  # skip 100 Continue
        headers: dict[str, list[str]] = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        return int(status), headers, body

    def http_status(self, url: str, *curl_args: str) -> int:
        return self.http(url, *curl_args)[0]

    def __repr__(self) -> str:
        return f"Sandbox({shlex.quote(self.name)})"
