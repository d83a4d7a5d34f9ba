"""Shared by the proxy tests (nginx and Traefik): profiles, upstream stubs, a TLS client, a permissive TLS server.

Everything listens on 127.0.0.1 only, every wait is bounded, and every server
is stopped by the context manager that started it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tempo_gen.errors import ProfileError
from tempo_gen.models.profile import Profile
from tempo_gen.policy.placement import site_headers
from tempo_gen.profile.loader import deep_merge, load_profile
from tempo_gen.targets.base import TargetInput

DOMAIN = "tempo.test"
MIB = 1024 * 1024

# Every optional header and every limit set off its default: the branches both proxies' templates take for them.
CUSTOM_HEADERS_AND_LIMITS: dict[str, Any] = {
    "proxy": {
        "headers": {
            "x_xss_protection": "1; mode=block",
            "frame_options": "DENY",
            "csp": {"extra_sources": [{"directive": "connect-src", "sources": ["https://api.example.org"]}]},
        },
        "rate_limits": {"login_per_minute": 3, "login_burst": 0, "api_per_second": 1, "api_burst": 0},
        "body_max_kb": 64,
    },
    "tempo": {"media_max_mb": 5, "import_max_mb": 4096, "import_timeout_minutes": 120},
}


def dev_document(kind: str, overlay: dict[str, Any]) -> dict[str, Any]:
    """A development profile for proxy `kind` on the host (no pins or firewall needed), `overlay` deep-merged in."""
    base = {
        "name": f"{kind}-test",
        "domain": DOMAIN,
        "environment": "development",
        "proxy": {"kind": kind, "placement": "host"},
    }
    return deep_merge(base, overlay)


def dev_profile(kind: str, **overlay: Any) -> Profile:
    return Profile.model_validate(dev_document(kind, overlay))


def refusal(folder: Path, kind: str, overlay: dict[str, Any]) -> str:
    """The message `load_profile` refuses `overlay` with, as a file `bad.yaml` in `folder`; fails if it is accepted."""
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump(dev_document(kind, overlay)))
    with pytest.raises(ProfileError) as error:
        load_profile(path, folder)
    return str(error.value)


def target_input_for(profile: Profile) -> TargetInput:
    return TargetInput(profile, "profiles/test.yaml", "../../secrets/test")


def write_pair(
    ca: trustme.CA, cert_file: Path, key_file: Path, key_type: trustme.KeyType = trustme.KeyType.ECDSA
) -> None:
    """A certificate for DOMAIN from `ca`, chain and key written where the proxy reads them."""
    leaf = ca.issue_cert(DOMAIN, key_type=key_type)
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))


# --- upstream stubs -----------------------------------------------------------------------------------


def _stub_handler(name: str, arrivals: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # proxies keep upstream connections alive

        def log_message(self, *args: object) -> None:
            pass

        def cors(self) -> None:
            """Like ASP.NET's CORS middleware with CORS__AllowedOrigins = the site: the allowed origin echoed,
            with credentials; another origin gets no CORS headers (the browser then refuses the answer)."""
            origin = self.headers.get("Origin")
            if origin and origin.split(":")[:2] == ["https", f"//{DOMAIN}"]:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Vary", "Origin")

        def do_OPTIONS(self) -> None:
            arrivals.append(f"OPTIONS {self.path}")
            self.send_response(204)
            self.cors()
            if self.headers.get("Access-Control-Request-Method"):
                self.send_header("Access-Control-Allow-Methods", self.headers["Access-Control-Request-Method"])
                self.send_header("Access-Control-Max-Age", "86400")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def handle_request(self) -> None:
            arrivals.append(self.path)  # before the body: shows whether the proxy streams it
            received = 0
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, MIB))
                if not chunk:
                    break
                received += len(chunk)
                remaining -= len(chunk)
            if self.path.endswith("/crash"):
                self.close_connection = True  # no answer at all: the proxy must say 502
                return
            body = json.dumps(
                {"upstream": name, "path": self.path, "headers": dict(self.headers), "received": received}
            ).encode()
            self.send_response(404 if "/missing" in self.path else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            # What Next.js and Kestrel leak, and a header the proxy must own.
            self.send_header("X-Powered-By", "Next.js" if name == "frontend" else "ASP.NET")
            self.send_header("X-Frame-Options", "ALLOWALL")
            self.cors()
            if name == "api" and self.path == "/auth/login":
                # Like Tempo: Secure only when the request is https as ASP.NET sees it (X-Forwarded-Proto).
                secure = "; secure" if self.headers.get("X-Forwarded-Proto") == "https" else ""
                self.send_header("Set-Cookie", f"authToken=t0k3n; path=/; samesite=lax; httponly{secure}")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = handle_request

    return Handler


@contextlib.contextmanager
def stub(name: str, arrivals: list[str]) -> Iterator[str]:
    """An upstream on 127.0.0.1 that answers JSON describing what it received; yields host:port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _stub_handler(name, arrivals))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_port(
    process: subprocess.Popen[bytes],
    port: int,
    name: str,
    log: Callable[[], str] = lambda: "",
    address: str = "127.0.0.1",
) -> None:
    """Until address:port accepts, for at most ~5 s; fails early if `process` exits."""
    for _ in range(100):
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: {log()}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not start listening within 5 s: {log()}")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the client -----------------------------------------------------------------------------------------


class Response(http.client.HTTPResponse):
    """The response class of LiveProxy's connections: an HTTPResponse whose body has been read into `body`."""

    body: bytes


@dataclass
class LiveProxy:
    """A running proxy on 127.0.0.1 in front of the stubs, and a client for it."""

    profile: Profile
    ca: trustme.CA
    root: Path
    api_arrivals: list[str]
    """Paths the API stub has seen, appended when the request line arrives ("OPTIONS <path>" for a preflight)."""
    import_port: int | None = None
    """Where the import listener answers (releases whose browser sends bulk imports to its own port)."""

    @property
    def http_port(self) -> int:
        return self.profile.proxy.http_port

    @property
    def https_port(self) -> int:
        return self.profile.proxy.https_port

    def tls_context(self, version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        if version:
            context.minimum_version = context.maximum_version = version
        if ciphers or (version and version < ssl.TLSVersion.TLSv1_2):
            # Let this client offer what OpenSSL 3 would refuse on its own, so only the server can say no.
            context.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
        return context

    def handshake(
        self, context: ssl.SSLContext, server_name: str | None = DOMAIN, port: int | None = None
    ) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", port or self.https_port), timeout=5)
        try:
            return context.wrap_socket(sock, server_hostname=server_name)
        except BaseException:
            sock.close()
            raise

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
        tls: bool = True,
        port: int | None = None,
    ) -> Response:
        """One request; `port`: another of the proxy's TLS ports (the import listener) instead of the site's."""
        proxy = self

        # One class for both schemes: connect() makes the TLS connection itself when `tls`.
        class Connection(http.client.HTTPConnection):
            response_class = Response

            def connect(self) -> None:
                sock = socket.create_connection(("127.0.0.1", self.port), self.timeout, (source, 0))
                self.sock = proxy.tls_context().wrap_socket(sock, server_hostname=DOMAIN) if tls else sock

        conn = Connection(DOMAIN, port or (self.https_port if tls else self.http_port), timeout=30)
        conn.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
        response = conn.getresponse()
        assert isinstance(response, Response)
        response.body = response.read()
        conn.close()
        return response

    def upload(
        self,
        path: str,
        size: int,
        source: str,
        send_body: bool = True,
        halfway: Callable[[], object] | None = None,
        port: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """POST `size` bytes in 1 MiB writes; without send_body only the headers go (the proxy judges Content-Length).
        `halfway()` is called once half the body is sent. `port`: another of the proxy's TLS ports (the import
        listener); `headers` are sent besides Content-Length, replacing the defaults Host (DOMAIN) and Content-Type
        (octet-stream)."""
        port = port or self.https_port
        sock = socket.create_connection(("127.0.0.1", port), 60, (source, 0))
        conn = http.client.HTTPSConnection(DOMAIN, port, timeout=120, context=self.tls_context())
        conn.response_class = Response
        conn.sock = self.tls_context().wrap_socket(sock, server_hostname=DOMAIN)
        conn.putrequest("POST", path, skip_host=True)
        for name, value in {"Host": DOMAIN, "Content-Type": "application/octet-stream", **(headers or {})}.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        if send_body:
            chunk = memoryview(bytes(MIB))
            sent = 0
            while sent < size:
                n = min(MIB, size - sent)
                conn.sock.sendall(chunk[:n])
                sent += n
                if halfway and sent >= size // 2:
                    halfway()
                    halfway = None
        response = conn.getresponse()
        assert isinstance(response, Response)
        response.body = response.read()
        conn.close()
        return response


def arrived(arrivals: list[str], start: int, path: str, seconds: float) -> bool:
    """Whether `path` reached the stub after arrivals[start], waiting up to `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if path in arrivals[start:]:
            return True
        time.sleep(0.05)
    return path in arrivals[start:]


@contextlib.contextmanager
def permissive_tls_server(ca: trustme.CA) -> Iterator[Callable[[ssl.SSLContext], str]]:
    """A TLS server that accepts anything this OpenSSL can do: the control showing that a client
    refused by the proxy would have been served by a weaker server. Yields handshake(client) -> version."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(DOMAIN, key_type=trustme.KeyType.RSA).configure_cert(context)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                with contextlib.suppress(OSError, ssl.SSLError):
                    context.wrap_socket(conn, server_side=True).close()
                conn.close()

    threading.Thread(target=serve, daemon=True).start()

    def handshake(client: ssl.SSLContext) -> str:
        with client.wrap_socket(
            socket.create_connection(listener.getsockname(), timeout=5), server_hostname=DOMAIN
        ) as tls:
            version = tls.version()
            assert version is not None, "a completed handshake has a version"
            return version

    try:
        yield handshake
    finally:
        stopped.set()
        listener.close()


def assert_security_headers(response: http.client.HTTPResponse, profile: Profile, server: str | None) -> None:
    """Every security header exactly once with the profile's value; `Server` only as `server` (no version)."""
    expected = site_headers(profile)
    # Independent of the model: the values the bundle promises (README, "What the bundle guarantees").
    assert expected["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert expected["X-XSS-Protection"] == "0"
    assert expected["X-Content-Type-Options"] == "nosniff"
    for name, value in expected.items():
        assert response.headers.get_all(name) == [value], f"{name} on a {response.status}"
    assert response.headers.get_all("Server") == ([server] if server else None), "no version, no upstream Server"
    assert response.headers.get("X-Powered-By") is None
