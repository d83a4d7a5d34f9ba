"""`tempo-gen cert issue` against a real ACME server: Debian's pebble, certbot and nginx, all on 127.0.0.1.

nginx runs the rendered configuration in a temporary root (support/nginx.py) on
high ports; pebble validates http-01 on nginx's http port and resolves the test
domain through pebble-challtestsrv. From no certificate at all, `issue` ends
with the site serving pebble's certificate, verified against pebble's root; a
forced `certbot renew` then replaces it through the deploy hook while clients
keep using the site. The failure paths leave the served certificate as it was.
Needs root (the hook chowns the key), nginx, pebble and certbot: missing, the
tests skip, or fail when CI=true.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from support import nginx as nginx_support
from support.pebble import CERTBOT, Pebble, require_tools, running_pebble
from support.proxy import DOMAIN, free_ports, target_input_for
from tempo_gen.errors import DeploymentError, UnsafeFile
from tempo_gen.models.profile import Profile
from tempo_gen.ops import certificates
from tempo_gen.ops.certificates import NginxSite
from tempo_gen.targets import nginx

pytestmark = [pytest.mark.acme, nginx_support.needs_nginx]

SLOW = 8.0  # seconds: longer than a renewal takes here (about 3), so the request spans the reload


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tools()
    if os.geteuid() != 0:
        message = "cert issue runs as root (the deploy hook chowns the key)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class _Upstream(BaseHTTPRequestHandler):
    """The frontend: answers at once, or after SLOW seconds on /slow (a request in flight across a reload)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(SLOW)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Site:
    site: NginxSite
    root: Path
    http_port: int
    https_port: int

    @property
    def profile(self) -> Profile:
        return self.site.profile


def make_site(root: Path, pebble_dir: str, ca_bundle: Path, frontend: str, http_port: int, https_port: int) -> Site:
    profile = nginx_support.for_local_nginx(
        nginx_support.make_profile(
            proxy={
                "placement": "host",
                "publish_addresses": ["127.0.0.1"],
                "http_port": http_port,
                "https_port": https_port,
                "tls": {
                    "certificate": {
                        "source": "acme",
                        "acme_webroot": "/acme",
                        "acme_email": "ops@example.org",
                        "acme_directory": pebble_dir,
                        "acme_ca_bundle": str(ca_bundle),
                    }
                },
            }
        )
    )
    runtime = nginx_support.runtime(profile, root, frontend=frontend, api=frontend)
    conf = nginx_support.write_tree(profile, root, runtime)
    assert conf == Path(runtime.path(nginx.HOST_CONF))
    bundle = root / "bundle"
    for file in nginx.files_for(target_input_for(profile), runtime):
        if str(file.path).endswith(".sh"):
            path = bundle / file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(file.content)
            path.chmod(file.mode)
    for folder in [root, *root.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)  # nginx's workers (www-data) read the webroot
    site = NginxSite(
        profile,
        runtime,
        bundle,
        certbot_dir=root / "certbot",
        start=(nginx_support.NGINX, "-p", f"{root}/", "-c", str(conf)),
    )
    return Site(site, root, http_port, https_port)


@pytest.fixture
def world() -> Iterator[tuple[Path, str]]:
    """A temporary root (not pytest's tmp_path: nginx's workers must reach it) and a frontend upstream."""
    root = Path(tempfile.mkdtemp(prefix="tempo-acme-"))
    root.chmod(0o755)
    try:
        with upstream() as frontend:
            yield root, frontend
    finally:
        pid_file = root / "run" / "nginx.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), 15)
            for _ in range(50):
                if not pid_file.exists():
                    break
                time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)


def verified_serial(site: Site, root_pem: str) -> int:
    """The served certificate's serial; the handshake verifies it against pebble's root for DOMAIN."""
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection(("127.0.0.1", site.https_port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return certificates.describe(der, "test").serial


def renew(site: Site, pebble: Pebble) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
    return subprocess.run(
        [CERTBOT, "renew", "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive"]
        + site.site.certbot_dirs(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Client:
    """Requests over one kept-alive TLS connection (trusting pebble's root), in a thread, until stopped.

    nginx closes an idle kept-alive connection of an old worker after a reload; like any
    HTTP client, this one then reconnects (counted); a request that gets no 200 is a failure."""

    def __init__(self, site: Site, root_pem: str, path: str = "/") -> None:
        self.site, self.root_pem, self.path = site, root_pem, path
        self.ok = self.reconnects = 0
        self.failures: list[str] = []
        self.serials: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        context = ssl.create_default_context(cadata=self.root_pem)
        connection: http.client.HTTPSConnection | None = None
        while not self._stop.is_set():
            if connection is None:
                sock = socket.create_connection(("127.0.0.1", self.site.https_port), timeout=10)
                tls = context.wrap_socket(sock, server_hostname=DOMAIN)
                der = tls.getpeercert(binary_form=True)
                assert der
                self.serials.add(certificates.describe(der, "client").serial)
                connection = http.client.HTTPSConnection(DOMAIN, self.site.https_port, timeout=10)
                connection.sock = tls
            try:
                connection.request("GET", self.path, headers={"Host": f"{DOMAIN}:{self.site.https_port}"})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {response.status}")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
                    self.reconnects += 1
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection closed between requests: retry on a new one (RFC 9112 9.3.1).
                connection = None
                self.reconnects += 1
            except OSError as exc:
                self.failures.append(repr(exc))
                connection = None
            time.sleep(0.02)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def renew_under_load(
    site: Site, pebble: Pebble, root_pem: str
) -> tuple[Client, subprocess.CompletedProcess[str], object, float]:
    """A forced renewal while one client keeps a connection busy and one slow request is in flight."""
    https_port = site.https_port
    slow: dict[str, object] = {}

    def slow_request() -> None:
        context = ssl.create_default_context(cadata=root_pem)
        connection = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=20)
        connection.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", https_port), timeout=20), server_hostname=DOMAIN
        )
        connection.request("GET", "/slow", headers={"Host": DOMAIN})
        slow["status"] = connection.getresponse().status
        slow["ended"] = time.monotonic()

    with Client(site, root_pem) as client:
        time.sleep(0.5)
        in_flight = threading.Thread(target=slow_request)
        in_flight.start()
        time.sleep(0.3)
        started = time.monotonic()
        renewed = renew(site, pebble)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        renewed_at = time.monotonic()
        in_flight.join(timeout=30)
        time.sleep(1)
    ended = slow.get("ended")
    assert isinstance(ended, float) and ended > renewed_at, "the slow request did not span the renewal"
    return client, renewed, slow.get("status"), renewed_at - started


def test_issue_from_nothing_then_a_forced_renewal_under_load(world: tuple[Path, str]) -> None:
    root, frontend = world
    http_port, https_port = free_ports(2)
    with running_pebble(root / "pebble", http_port) as pebble:
        site = make_site(root, pebble.directory, pebble.ca_bundle, frontend, http_port, https_port)
        cert_file, key_file = site.site.certificate
        assert not cert_file.exists() and not key_file.exists()
        log: list[str] = []
        started = time.monotonic()
        result = certificates.issue(site.site, log.append)
        issue_seconds = time.monotonic() - started
        assert result.changed, result.message
        root_pem = pebble.root_pem()
        first = verified_serial(site, root_pem)
        assert first == result.certificate.serial
        assert any("self-signed pair" in line for line in log) and any("nginx started" in line for line in log)
        assert (key_file.stat().st_mode & 0o777, key_file.stat().st_uid) == (0o400, 0)
        print(f"cert issue from nothing: {issue_seconds:.1f}s")

        # Idempotent: a valid certificate far from its renewal window is left alone, and the CA is not asked.
        again = certificates.issue(site.site, log.append)
        assert not again.changed and "nothing to do" in again.message
        assert verified_serial(site, root_pem) == first

        client, renewed, slow_status, renew_seconds = renew_under_load(site, pebble, root_pem)
        second = verified_serial(site, root_pem)
        assert second != first
        assert slow_status == 200
        assert client.failures == [], client.failures
        assert client.ok > 10 and first in client.serials
        assert client.reconnects == 0 or second in client.serials  # a new connection gets the new certificate
        assert (key_file.stat().st_mode & 0o777, key_file.stat().st_uid) == (0o400, 0)
        assert cert_file.stat().st_mode & 0o777 == 0o644
        assert "deploy hook for tempo.test: installed" in renewed.stdout + renewed.stderr
        print(
            f"forced renewal: {renew_seconds:.1f}s, {client.ok} requests ok, {client.reconnects} reconnects "
            f"after the reload, 0 failed"
        )

        # status reads what is served, and certbot's renewal configuration for the site.
        found = certificates.status(site.profile, certbot_config=root / "certbot" / "config")
        assert found.certificate is not None and found.certificate.serial == second
        assert "Pebble" in found.certificate.issuer and found.problems == ()


def test_a_challenge_the_ca_cannot_reach_leaves_the_site_as_it_was(world: tuple[Path, str]) -> None:
    root, frontend = world
    http_port, https_port, elsewhere = free_ports(3)
    # pebble dials a port nothing listens on: as if a firewall dropped port 80.
    with running_pebble(root / "pebble", elsewhere) as pebble:
        site = make_site(root, pebble.directory, pebble.ca_bundle, frontend, http_port, https_port)
        with pytest.raises(DeploymentError) as failure:
            certificates.issue(site.site, lambda _: None)
        message = str(failure.value)
        assert f"port {http_port} of {DOMAIN} is not reachable from the CA" in message, message
        assert "The site is as it was" in message
        cert_file, _ = site.site.certificate
        bootstrap = certificates.read_certificate(cert_file)
        assert bootstrap is not None and bootstrap.self_signed
        served = certificates.served_certificate("127.0.0.1", https_port, DOMAIN)
        assert served is not None and served.serial == bootstrap.serial


class _Elsewhere(BaseHTTPRequestHandler):
    """Another web server where the domain's DNS points: it knows nothing of the challenge."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_dns_pointing_at_another_server_is_explained(world: tuple[Path, str]) -> None:
    root, frontend = world
    http_port, https_port = free_ports(2)
    other = ThreadingHTTPServer(("127.0.0.2", http_port), _Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with running_pebble(root / "pebble", http_port, address="127.0.0.2") as pebble:
            site = make_site(root, pebble.directory, pebble.ca_bundle, frontend, http_port, https_port)
            with pytest.raises(DeploymentError) as failure:
                certificates.issue(site.site, lambda _: None)
    finally:
        other.shutdown()
        other.server_close()
    message = str(failure.value)
    assert "the CA reached tempo.test but got the wrong answer: its DNS points at another server" in message, message


def test_an_unreachable_directory_is_explained(world: tuple[Path, str]) -> None:
    root, frontend = world
    http_port, https_port, closed = free_ports(3)
    ca_bundle = root / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_bundle))
    site = make_site(root, f"https://127.0.0.1:{closed}/dir", ca_bundle, frontend, http_port, https_port)
    with pytest.raises(DeploymentError) as failure:
        certificates.issue(site.site, lambda _: None)
    message = str(failure.value)
    assert f"the ACME directory https://127.0.0.1:{closed}/dir cannot be reached" in message, message


def test_a_missing_ca_bundle_is_named(world: tuple[Path, str]) -> None:
    root, frontend = world
    http_port, https_port, closed = free_ports(3)
    site = make_site(root, f"https://127.0.0.1:{closed}/dir", root / "none.pem", frontend, http_port, https_port)
    with pytest.raises(DeploymentError, match=r"acme_ca_bundle .*none\.pem is not a readable file"):
        certificates.issue(site.site, lambda _: None)
    assert not site.site.certificate[0].exists()


def test_a_symlinked_certificate_path_is_refused_before_the_ca_is_asked(world: tuple[Path, str]) -> None:
    root, frontend = world
    http_port, https_port, closed = free_ports(3)
    site = make_site(root, f"https://127.0.0.1:{closed}/dir", root / "none.pem", frontend, http_port, https_port)
    cert_file, _ = site.site.certificate
    target = root / "elsewhere.pem"
    target.write_text("untouched")
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.symlink_to(target)
    with pytest.raises(UnsafeFile, match="is a symlink"):
        certificates.issue(site.site, lambda _: None)
    assert target.read_text() == "untouched" and not (root / "certbot").exists()
