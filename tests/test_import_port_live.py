"""The import listener of Tempo 2.1.x-2.6.x, running: real nginx and real Traefik in front of the API stub.

Those releases' browsers post bulk imports cross-origin, with credentials, to
`https://<host>:5001/workouts/import/{bulk,export}` (frontend/lib/api.ts at v2.1.0).
Here the proxy's import listener is on a free loopback port instead of 5001, and
the client does what the browser does: a preflight, then a multipart POST of
several MiB with Origin and the session cookie. The stub answers CORS like
ASP.NET with CORS__AllowedOrigins = the site.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from support.live import SERVER, running_proxy
from support.nginx import needs_nginx
from support.proxy import DOMAIN, MIB, LiveProxy, assert_security_headers
from support.traefik import needs_traefik
from tempo_gen.policy.ports import IMPORT_PORT

LEGACY = {"version": "2.1.0"}
PATHS = ("/workouts/import/bulk", "/workouts/import/export")
COOKIE = "authToken=t0k3n"


@pytest.fixture(
    scope="module",
    params=[pytest.param("nginx", marks=needs_nginx), pytest.param("traefik", marks=needs_traefik)],
)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def proxy(kind: str) -> Iterator[LiveProxy]:
    with running_proxy(kind, tempo=LEGACY) as running:
        assert running.import_port is not None, "a 2.1.0 profile renders the import listener"
        yield running


def site_origin(proxy: LiveProxy) -> str:
    return proxy.profile.origin


def browser_headers(proxy: LiveProxy) -> dict[str, str]:
    """What the browser sends to the import port: its Host with the port, the site's Origin, the cookie."""
    return {"Host": f"{DOMAIN}:{proxy.import_port}", "Origin": site_origin(proxy), "Cookie": COOKIE}


def multipart(size: int) -> tuple[bytes, str]:
    """A multipart/form-data body with one `file` part of `size` bytes, as FormData builds it."""
    boundary = f"----tempo{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="export.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    return head + bytes(size) + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def header(seen: dict[str, Any], name: str) -> str | None:
    values = [value for key, value in seen["headers"].items() if key.lower() == name.lower()]
    assert len(values) <= 1, (name, seen["headers"])
    return values[0] if values else None


@pytest.mark.parametrize("path", PATHS)
def test_preflight_then_a_multipart_import_of_several_mib_reaches_the_api(
    proxy: LiveProxy, kind: str, path: str
) -> None:
    start = len(proxy.api_arrivals)
    preflight = proxy.request(
        "OPTIONS",
        path,
        headers={
            **browser_headers(proxy),
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        port=proxy.import_port,
        source="127.0.0.30",
    )
    assert preflight.status == 204, preflight.body
    assert preflight.headers["Access-Control-Allow-Origin"] == site_origin(proxy)
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    # The API's own path: nothing stripped, nothing added.
    assert proxy.api_arrivals[start:] == [f"OPTIONS {path}"]

    body, content_type = multipart(6 * MIB)
    response = proxy.request(
        "POST",
        path,
        body=body,
        headers={**browser_headers(proxy), "Content-Type": content_type},
        port=proxy.import_port,
        source="127.0.0.30",
    )
    assert response.status == 200, response.body
    seen = json.loads(response.body)
    assert seen["upstream"] == "api" and seen["path"] == path and seen["received"] == len(body)
    assert header(seen, "Cookie") == COOKIE and header(seen, "Origin") == site_origin(proxy)
    assert header(seen, "Content-Type") == content_type
    assert header(seen, "X-Forwarded-Proto") == "https" and header(seen, "X-Forwarded-For") == "127.0.0.30"
    if kind == "nginx":  # the public port the browser used; Traefik derives it from the Host header
        assert header(seen, "X-Forwarded-Port") == str(IMPORT_PORT)
    # The API's CORS answer passes unchanged, with the proxy's headers and no cache.
    assert response.headers.get_all("Access-Control-Allow-Origin") == [site_origin(proxy)]
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Cache-Control"] == "no-store"
    assert_security_headers(response, proxy.profile, SERVER[kind])


def test_the_site_lets_its_pages_connect_to_the_import_port(proxy: LiveProxy) -> None:
    policy = proxy.request("GET", "/", source="127.0.0.31").headers["Content-Security-Policy"]
    connect = next(part for part in policy.split("; ") if part.startswith("connect-src "))
    assert f"https://{DOMAIN}:{IMPORT_PORT}" in connect.split()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/workouts/import/bulk"),
        ("PUT", "/workouts/import/export"),
        ("DELETE", "/workouts/import/bulk"),
        ("POST", "/api/workouts/import/bulk"),
        ("POST", "/workouts/import"),
        ("POST", "/workouts/import/bulk/x"),
        ("POST", "/auth/login"),
        ("GET", "/"),
        ("GET", "/health"),
    ],
)
def test_anything_else_on_the_import_port_is_404_and_never_reaches_an_upstream(
    proxy: LiveProxy, kind: str, method: str, path: str
) -> None:
    start = len(proxy.api_arrivals)
    body = b"{}" if method != "GET" else None
    response = proxy.request(
        method, path, body=body, headers=browser_headers(proxy), port=proxy.import_port, source="127.0.0.32"
    )
    assert response.status == 404
    assert proxy.api_arrivals[start:] == []
    if kind == "nginx":  # its own 404, with the site's headers
        assert_security_headers(response, proxy.profile, SERVER[kind])
    else:  # no router matches: Traefik's own answer, which no middleware sees
        assert response.body == b"404 page not found\n"


def test_an_import_over_the_limit_is_413(proxy: LiveProxy, kind: str) -> None:
    limit = proxy.profile.tempo.import_max_mb * MIB
    response = proxy.upload(
        PATHS[0], limit + 1, "127.0.0.33", send_body=False, port=proxy.import_port, headers=browser_headers(proxy)
    )
    assert response.status == 413
    assert_security_headers(response, proxy.profile, SERVER[kind])


def test_the_import_port_serves_only_the_site_name(proxy: LiveProxy, kind: str) -> None:
    start = len(proxy.api_arrivals)
    other = {**browser_headers(proxy), "Host": f"other.test:{proxy.import_port}"}
    response = proxy.request("POST", PATHS[0], body=b"x", headers=other, port=proxy.import_port, source="127.0.0.34")
    # nginx: the default server's 421 (another name on a connection opened for ours); Traefik: no router, 404.
    assert response.status == (421 if kind == "nginx" else 404)
    assert proxy.api_arrivals[start:] == []


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")
def test_the_import_port_has_the_sites_tls(proxy: LiveProxy) -> None:
    with proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_3), port=proxy.import_port) as tls:
        assert tls.version() == "TLSv1.3"
    with pytest.raises(ssl.SSLError):  # TLS 1.1: refused, as on the site
        proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_1), port=proxy.import_port).close()
    context = proxy.tls_context()
    context.check_hostname = False
    with pytest.raises(ssl.SSLError):  # another name: no certificate
        proxy.handshake(context, server_name="other.test", port=proxy.import_port).close()
