"""The rendered Traefik, running: the real traefik binary on 127.0.0.1 high ports, a trustme CA, Python upstream stubs.

Each test that depends on rate limits uses its own loopback source address
(127.0.0.x), so Traefik keeps a separate per-IP bucket for it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import tempfile
import uuid
from pathlib import Path

import pytest
import trustme
from tests.proxy_support import (
    DOMAIN,
    MIB,
    LiveProxy,
    arrived,
    assert_security_headers,
    free_ports,
    permissive_tls_server,
    stub,
)
from tests.traefik_support import make_profile, needs_traefik, prepare_root, running_traefik, with_ping

from tempo_gen.policy import tls as tls_policy

pytestmark = needs_traefik


@contextlib.contextmanager
def running_proxy(tls_profile: str = "intermediate", **profile_overlay):
    """Traefik with the profile's config on 127.0.0.1, in front of two stubs; stopped and cleaned up after."""
    http_port, https_port = free_ports(2)
    profile = make_profile(
        proxy={
            "placement": "host",
            "publish_addresses": ["127.0.0.1"],
            "http_port": http_port,
            "https_port": https_port,
            "tls": {
                "profile": tls_profile,
                "certificate": {"source": "files", "cert_file": "/tls/fullchain.pem", "key_file": "/tls/privkey.pem"},
            },
            **profile_overlay,
        }
    )
    ca = trustme.CA()
    root = Path(tempfile.mkdtemp(prefix="tempo-traefik-"))
    try:
        arrivals: list[str] = []
        with stub("frontend", []) as frontend, stub("api", arrivals) as api:
            # An RSA certificate: a refused RSA-key-exchange cipher is then refused by policy, not by key type.
            rt, conf = prepare_root(profile, root, ca, trustme.KeyType.RSA, **with_ping(frontend=frontend, api=api))
            with running_traefik(conf, rt, ca) as running:
                yield LiveProxy(profile, ca, root, arrivals)
                # Traefik logs each 413 as an error; nothing else may have gone wrong.
                unexpected = [line for line in running.errors() if "request body over limit" not in line]
                assert unexpected == [], running.log()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy():
    with running_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def permissive(proxy):
    """A TLS server that accepts anything this OpenSSL can do: the control showing that a client
    refused by Traefik would have been served by a weaker server."""
    with permissive_tls_server(proxy.ca) as handshake:
        yield handshake


# --- TLS ----------------------------------------------------------------------------------------------


def test_tls13_accepted_with_http2(proxy):
    ctx = proxy.tls_context(ssl.TLSVersion.TLSv1_3)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with proxy.handshake(ctx) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.selected_alpn_protocol() == "h2"


def test_tls12_accepted_with_intermediate_ciphers_only(proxy):
    with proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0] in tls_policy.CONFIGURATIONS["intermediate"].ciphers_openssl
    for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"):
        with proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2, cipher)) as tls:
            assert tls.cipher()[0] == cipher


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
def test_weak_tls12_ciphers_refused(proxy, permissive, cipher):
    assert permissive(proxy.tls_context(ssl.TLSVersion.TLSv1_2, cipher)) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2, cipher)).close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_protocols_refused(proxy, permissive, version):
    client = proxy.tls_context(ssl.TLSVersion[version])
    assert permissive(client) == version.replace("_", ".")
    with pytest.raises(ssl.SSLError):
        proxy.handshake(client).close()


@pytest.mark.parametrize("server_name", ["other.test", None])
def test_sni_strict_refuses_other_or_missing_names(proxy, server_name):
    ctx = proxy.tls_context()
    ctx.check_hostname = False
    with pytest.raises(ssl.SSLError):
        proxy.handshake(ctx, server_name=server_name).close()


def test_modern_profile_refuses_tls12():
    with running_proxy("modern") as modern:
        with pytest.raises(ssl.SSLError):
            modern.handshake(modern.tls_context(ssl.TLSVersion.TLSv1_2)).close()
        with modern.handshake(modern.tls_context()) as tls:
            assert tls.version() == "TLSv1.3"


# --- port 80 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "status"), [("GET", 301), ("POST", 308)])
def test_http_redirects_permanently_to_https(proxy, method, status):
    response = proxy.request(method, "/workouts?page=2", body=b"x" if method == "POST" else None, tls=False)
    assert response.status == status
    assert response.headers["Location"] == f"https://{DOMAIN}:{proxy.https_port}/workouts?page=2"
    assert proxy.request("GET", "/api/health", tls=False).status == 301


# --- routing, forwarded headers, cookie ------------------------------------------------------------------


def test_api_gets_stripped_path_and_trusted_forwarded_headers(proxy):
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
    headers = seen["headers"]
    assert headers["X-Forwarded-For"] == "127.0.0.4"
    assert headers["X-Real-Ip"] == "127.0.0.4"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == DOMAIN and headers["Host"] == DOMAIN
    assert headers["X-Forwarded-Prefix"] == "/api"
    assert response.headers["Cache-Control"] == "no-store"
    assert_security_headers(response, proxy.profile, None)


# Look-alikes of headers Traefik sets, and of one it does not (which Traefik would forward by itself).
LOOK_ALIKES = {
    "X_Forwarded_Proto": "http",
    "X_Forwarded_For": "6.6.6.6",
    "X-Forwarded_Host": "evil.test",
    "X_Auth_User": "admin",
    "X.Auth.User": "admin",
}


def test_look_alike_forwarded_headers_never_reach_the_api(proxy):
    response = proxy.request("GET", "/api/health", headers=LOOK_ALIKES, source="127.0.0.17")
    assert response.status == 200
    headers = json.loads(response.body)["headers"]
    assert not [name for name in headers if "_" in name or "." in name], headers
    assert headers["X-Forwarded-Proto"] == "https" and headers["X-Forwarded-For"] == "127.0.0.17"
    assert headers["X-Forwarded-Host"] == DOMAIN and "X-Auth-User" not in headers
    # aliasHeadersStrategy is set on every entry point: Traefik no longer warns at start.
    assert "aliasHeadersStrategy" not in (proxy.root / "traefik.log").read_text()


def test_everything_else_reaches_the_frontend(proxy):
    for path in ("/workouts/1", "/api", "/apifoo"):  # /api without a slash is not an API path, as with nginx
        seen = json.loads(proxy.request("GET", path, source="127.0.0.5").body)
        assert seen["upstream"] == "frontend" and seen["path"] == path
        assert seen["headers"]["X-Forwarded-Proto"] == "https"


def test_login_cookie_arrives_secure(proxy):
    response = proxy.request("POST", "/api/auth/login", body=b"{}", source="127.0.0.6")
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("authToken=") and "; secure" in cookie.lower() and "httponly" in cookie.lower()


def test_encoded_path_characters_are_refused(proxy):
    assert proxy.request("POST", "/api/auth%2Flogin", body=b"{}", source="127.0.0.16").status == 400
    assert proxy.request("GET", "/api/workouts/..%2F..%2Fetc", source="127.0.0.16").status == 400


# --- headers on every status -----------------------------------------------------------------------------


def test_security_headers_on_200_404_413_502(proxy):
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
        assert_security_headers(response, proxy.profile, None)


# --- body limits ----------------------------------------------------------------------------------------


def test_small_body_limit_everywhere_else(proxy):
    limit = proxy.profile.proxy.body_max_kb * 1024
    ok = proxy.upload("/api/settings/unit-preference", limit, "127.0.0.8")
    assert ok.status == 200 and json.loads(ok.body)["received"] == limit
    assert proxy.upload("/api/settings/unit-preference", limit + 1, "127.0.0.8", send_body=False).status == 413
    assert proxy.upload("/workouts/new", limit + 1, "127.0.0.8", send_body=False).status == 413


@pytest.mark.parametrize("path", [f"/api/workouts/{uuid.UUID(int=7)}/media", "/api/workouts/import"])
def test_media_and_single_import_limit(proxy, path):
    limit = proxy.profile.tempo.media_max_mb * MIB
    ok = proxy.upload(path, limit, "127.0.0.9")
    assert ok.status == 200 and json.loads(ok.body)["received"] == limit
    assert proxy.upload(path, limit + 1, "127.0.0.9", send_body=False).status == 413
    # Other workout routes keep the small limit.
    assert proxy.upload(f"/api/workouts/{uuid.UUID(int=7)}", limit, "127.0.0.9", send_body=False).status == 413


@pytest.mark.parametrize("path", ["/api/workouts/import/bulk", "/api/workouts/import/export"])
def test_bulk_import_limit(proxy, path):
    limit = proxy.profile.tempo.import_max_mb * MIB
    response = proxy.upload(path, limit + 1, "127.0.0.10", send_body=False)
    assert response.status == 413
    assert_security_headers(response, proxy.profile, None)
    if path.endswith("bulk"):  # one full-size import proves the 500 MiB path end to end
        ok = proxy.upload(path, limit, "127.0.0.10")
        assert ok.status == 200 and json.loads(ok.body)["received"] == limit


def test_bodies_are_spooled_before_the_api_sees_them(proxy):
    """Unlike nginx's streamed imports, Traefik's buffering middleware reads every body whole first."""
    seen = {}
    for path in ("/api/workouts/import/bulk", f"/api/workouts/{uuid.UUID(int=9)}/media"):
        upstream_path, start = path.removeprefix("/api"), len(proxy.api_arrivals)
        response = proxy.upload(
            path,
            8 * MIB,
            "127.0.0.15",
            halfway=lambda: seen.setdefault(path, arrived(proxy.api_arrivals, start, upstream_path, 1)),
        )
        assert response.status == 200 and upstream_path in proxy.api_arrivals[start:]
    assert set(seen.values()) == {False}


# --- rate limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register"])
def test_login_and_register_rate_limited(proxy, path):
    limits = proxy.profile.proxy.rate_limits
    source = "127.0.0.11" if path.endswith("login") else "127.0.0.12"
    allowed = 1 + limits.login_burst
    statuses = [proxy.request("POST", path, body=b"{}", source=source).status for _ in range(allowed + 2)]
    assert statuses == [200] * allowed + [429, 429]
    limited = proxy.request("POST", path, body=b"{}", source=source)
    assert limited.status == 429
    assert_security_headers(limited, proxy.profile, None)
    # Another client is not affected.
    assert proxy.request("POST", path, body=b"{}", source="127.0.0.13").status == 200


def test_general_api_rate_limit():
    with running_proxy(rate_limits={"api_per_second": 1, "api_burst": 3}) as strict:
        statuses = [strict.request("GET", "/api/health", source="127.0.0.14").status for _ in range(6)]
        assert statuses[:4] == [200] * 4 and 429 in statuses[4:]
        # The frontend is not behind the API limit.
        assert strict.request("GET", "/", source="127.0.0.14").status == 200
