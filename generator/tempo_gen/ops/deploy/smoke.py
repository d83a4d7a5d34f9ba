"""After a deploy: the site answers through its proxy as a browser would reach it.

Three requests over TLS to the proxy's published address with SNI = the
domain: the frontend's page (200), the API's readiness (`/api/ready` from
2.10.0, which asks Postgres; `/api/health` before), and a login with a random
user and password, whose 401 proves the API and the database answer a real
query without any real credential. The certificate itself is `cert status`'s
business: a site still on its bootstrap pair must be deployable, so the
handshake does not verify it (nothing secret is sent).
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import ssl
import time
from collections.abc import Callable

from tempo_gen.errors import DeploymentError
from tempo_gen.models.profile import Profile
from tempo_gen.policy.releases import Release

REQUEST_TIMEOUT = 10  # seconds per request
ATTEMPTS, PAUSE = 6, 5  # a just-recreated proxy may need a moment; bounded
RATE_LIMITED = 429


class _SiteConnection(http.client.HTTPSConnection):
    """HTTPS to `address` with the TLS server name of `domain` (http.client would send the address)."""

    def __init__(self, address: str, port: int, domain: str, context: ssl.SSLContext):
        super().__init__(address, port, timeout=REQUEST_TIMEOUT, context=context)
        self.domain, self.tls = domain, context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.domain)


def site_address(profile: Profile) -> str:
    """Where the proxy listens: its first published address (loopback for a wildcard)."""
    addresses = profile.proxy.publish_addresses
    if not addresses or addresses[0].is_unspecified:
        return "::1" if addresses and addresses[0].version == 6 else "127.0.0.1"
    return str(addresses[0])


def _status(profile: Profile, method: str, path: str, body: bytes | None = None) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = _SiteConnection(site_address(profile), profile.proxy.https_port, profile.domain, context)
    headers = {"Host": profile.domain, **({"Content-Type": "application/json"} if body else {})}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(1 << 20)
        return response.status
    finally:
        connection.close()


def _expect(profile: Profile, what: str, method: str, path: str, wanted: int, body: bytes | None = None) -> None:
    last = "no answer"
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(PAUSE)
        try:
            status = _status(profile, method, path, body)
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if status == wanted:
            return
        last = f"HTTP {status}"
        if status != RATE_LIMITED and status < 500:
            break  # a definite wrong answer; a 429 or a 502 while upstreams come up is worth another try
    raise DeploymentError(f"smoke test: {what} ({method} {path}) answered {last}, expected {wanted}")


def smoke_test(profile: Profile, say: Callable[[str], object], running: Release | None = None) -> None:
    """The page, the API's readiness and a refused login through the proxy; DeploymentError on the first miss.

    `running`: the release that runs when it is not the profile's (after a rollback; None: unknown, so the
    readiness asked is the one every release has)."""
    if profile.proxy.kind == "none":
        say("smoke test: no proxy in this profile; the services' health checks stand for it")
        return
    site = f"https://{profile.domain} at {site_address(profile)}:{profile.proxy.https_port}"
    say(f"smoke test: {site}")
    _expect(profile, "the frontend's page", "GET", "/", 200)
    api_ready = profile.tempo.release.api_ready if running is None else running.api_ready
    ready = "/api/ready" if api_ready else "/api/health"
    _expect(profile, "the API's readiness", "GET", ready, 200)
    login = {"username": f"tempo-gen-smoke-{secrets.token_hex(4)}", "password": secrets.token_urlsafe(24)}
    _expect(profile, "a login with a wrong password", "POST", "/api/auth/login", 401, json.dumps(login).encode())
    say("smoke test: page 200, API ready, login refused with 401 (API and database answer)")
