"""The rendered nginx, running: Debian's nginx on 127.0.0.1 high ports, a trustme CA, Python upstream stubs.

Each test that depends on rate limits uses its own loopback source address
(127.0.0.x), so nginx keeps a separate per-IP bucket for it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import ssl
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import trustme
from tests.nginx_support import NGINX, for_local_nginx, make_profile, needs_nginx, prepare_root
from tests.proxy_support import (
    DOMAIN,
    MIB,
    LiveProxy,
    arrived,
    assert_security_headers,
    free_ports,
    permissive_tls_server,
    stop,
    stub,
    wait_for_port,
)

from tempo_gen.policy import tls as tls_policy

pytestmark = needs_nginx


# --- the running proxy --------------------------------------------------------------------------------


@contextlib.contextmanager
def running_proxy(tls_profile: str = "intermediate", runtime_overrides: dict | None = None, **profile_overlay):
    """nginx with the profile's config on 127.0.0.1, in front of two stubs; stopped and cleaned up after.
    `runtime_overrides` replace Runtime fields (e.g. a resolver, for the container's upstreams)."""
    http_port, https_port = free_ports(2)
    profile = for_local_nginx(
        make_profile(
            proxy={
                "placement": "host",
                "publish_addresses": ["127.0.0.1"],
                "http_port": http_port,
                "https_port": https_port,
                # An RSA certificate (below): a refused RSA-key-exchange cipher is then refused by policy, not by key type.
                "tls": {
                    "profile": tls_profile,
                    "certificate": {
                        "source": "acme",
                        "acme_webroot": "/acme",
                        "cert_file": "/tls/fullchain.pem",
                        "key_file": "/tls/privkey.pem",
                    },
                },
                **profile_overlay,
            }
        )
    )
    ca = trustme.CA()
    # Not pytest's tmp_path: its parents are private to root, and nginx workers run as www-data.
    root = Path(tempfile.mkdtemp(prefix="tempo-nginx-"))
    root.chmod(0o755)
    process = None
    try:
        arrivals: list[str] = []
        with stub("frontend", []) as frontend, stub("api", arrivals) as api:
            conf = prepare_root(
                profile, root, ca, trustme.KeyType.RSA, frontend=frontend, api=api, **(runtime_overrides or {})
            )
            for folder in root.rglob("*"):
                if folder.is_dir():
                    folder.chmod(0o755)
            process = subprocess.Popen(
                [NGINX, "-p", f"{root}/", "-c", str(conf), "-g", "daemon off;"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            # stderr is read only once nginx has exited (reading a live pipe would block).
            wait_for_port(
                process,
                https_port,
                "nginx",
                lambda: process.stderr.read().decode() if process.poll() is not None else "",
            )
            yield LiveProxy(profile, ca, root, arrivals)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy():
    with running_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def permissive(proxy):
    """A TLS server that accepts anything this OpenSSL can do: the control showing that a client
    refused by nginx would have been served by a weaker server."""
    with permissive_tls_server(proxy.ca) as handshake:
        yield handshake


# --- assertions ---------------------------------------------------------------------------------------


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
    with proxy.handshake(proxy.tls_context(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-CHACHA20-POLY1305")) as tls:
        assert tls.cipher()[0] == "ECDHE-RSA-CHACHA20-POLY1305"


@pytest.mark.parametrize(
    "cipher",
    ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA"],
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


def test_unknown_server_name_gets_no_certificate(proxy):
    with pytest.raises(ssl.SSLError):
        ctx = proxy.tls_context()
        ctx.check_hostname = False
        proxy.handshake(ctx, server_name="other.test").close()


def test_modern_profile_refuses_tls12():
    with running_proxy("modern") as modern:
        with pytest.raises(ssl.SSLError):
            modern.handshake(modern.tls_context(ssl.TLSVersion.TLSv1_2)).close()
        with modern.handshake(modern.tls_context()) as tls:
            assert tls.version() == "TLSv1.3"


# --- port 80 ------------------------------------------------------------------------------------------


def test_http_redirects_permanently_to_https(proxy):
    response = proxy.request("POST", "/workouts?page=2", body=b"x", tls=False)
    assert response.status == 308
    assert response.headers["Location"] == f"https://{DOMAIN}:{proxy.https_port}/workouts?page=2"
    assert_security_headers(response, proxy.profile, "nginx")


def test_http_serves_the_acme_challenge_and_nothing_else(proxy):
    token = proxy.root / "acme/.well-known/acme-challenge/tok3n"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("tok3n.thumbprint")
    token.chmod(0o644)
    for folder in (proxy.root / "acme", token.parent.parent, token.parent):
        folder.chmod(0o755)
    response = proxy.request("GET", "/.well-known/acme-challenge/tok3n", tls=False)
    assert (response.status, response.body) == (200, b"tok3n.thumbprint")
    assert response.headers["Content-Type"] == "text/plain"
    assert proxy.request("GET", "/.well-known/acme-challenge/absent", tls=False).status == 404
    assert proxy.request("GET", "/api/health", tls=False).status == 308


def test_unknown_host_on_http_is_dropped(proxy):
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        proxy.request("GET", "/", headers={"Host": "other.test"}, tls=False)


# --- routing, forwarded headers, cookie ------------------------------------------------------------------


def test_api_gets_stripped_path_and_trusted_forwarded_headers(proxy):
    response = proxy.request(
        "GET",
        "/api/workouts/recent?limit=3",
        source="127.0.0.4",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.test"},
    )
    assert response.status == 200
    seen = json.loads(response.body)
    assert seen["upstream"] == "api" and seen["path"] == "/workouts/recent?limit=3"
    headers = seen["headers"]
    assert headers["X-Forwarded-For"] == "127.0.0.4"
    assert headers["X-Real-IP"] == "127.0.0.4"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == DOMAIN and headers["Host"] == DOMAIN
    assert headers["X-Forwarded-Port"] == str(proxy.https_port)
    assert response.headers["Cache-Control"] == "no-store"


def test_everything_else_reaches_the_frontend(proxy):
    seen = json.loads(proxy.request("GET", "/workouts/1", source="127.0.0.5").body)
    assert seen["upstream"] == "frontend" and seen["path"] == "/workouts/1"
    assert seen["headers"]["X-Forwarded-Proto"] == "https"


def test_login_cookie_arrives_secure(proxy):
    response = proxy.request("POST", "/api/auth/login", body=b"{}", source="127.0.0.6")
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("authToken=") and "; secure" in cookie.lower() and "httponly" in cookie.lower()


# --- headers on every status -----------------------------------------------------------------------------


def test_security_headers_on_200_404_413_502(proxy):
    source = "127.0.0.7"
    responses = {
        "frontend 200": proxy.request("GET", "/", source=source),
        "api 200": proxy.request("GET", "/api/health", source=source),
        "frontend 404": proxy.request("GET", "/missing", source=source),
        "api 404": proxy.request("GET", "/api/missing", source=source),
        "api 413": proxy.request(
            "POST", "/api/settings", body=bytes(proxy.profile.proxy.body_max_kb * 1024 + 1), source=source
        ),
        "frontend 413": proxy.request(
            "POST", "/", body=bytes(proxy.profile.proxy.body_max_kb * 1024 + 1), source=source
        ),
        "api 502": proxy.request("GET", "/api/crash", source=source),
        "frontend 502": proxy.request("GET", "/crash", source=source),
    }
    for label, response in responses.items():
        assert str(response.status) == label.split()[1], label
        assert_security_headers(response, proxy.profile, "nginx")


# --- body limits ----------------------------------------------------------------------------------------


def test_small_body_limit_everywhere_else(proxy):
    limit = proxy.profile.proxy.body_max_kb * 1024
    assert proxy.upload("/api/settings/unit-preference", limit, "127.0.0.8").status == 200
    assert proxy.upload("/api/settings/unit-preference", limit + 1, "127.0.0.8", send_body=False).status == 413


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
    assert proxy.upload(path, limit + 1, "127.0.0.10", send_body=False).status == 413
    if path.endswith("bulk"):  # one full-size import proves the 500 MiB path end to end
        ok = proxy.upload(path, limit, "127.0.0.10")
        assert ok.status == 200 and json.loads(ok.body)["received"] == limit


def test_bulk_import_is_streamed_and_media_is_buffered(proxy):
    """The API sees an import while the client is still sending it; a media upload only once complete."""
    seen = {}
    bulk, media = "/api/workouts/import/bulk", f"/api/workouts/{uuid.UUID(int=9)}/media"
    for path in (bulk, media):
        upstream_path, start = path.removeprefix("/api"), len(proxy.api_arrivals)
        response = proxy.upload(
            path,
            8 * MIB,
            "127.0.0.15",
            halfway=lambda: seen.setdefault(path, arrived(proxy.api_arrivals, start, upstream_path, 2)),
        )
        assert response.status == 200
    assert seen == {bulk: True, media: False}


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
    assert_security_headers(limited, proxy.profile, "nginx")
    # Another client is not affected.
    assert proxy.request("POST", path, body=b"{}", source="127.0.0.13").status == 200


def test_general_api_rate_limit():
    with running_proxy(rate_limits={"api_per_second": 1, "api_burst": 3}) as strict:
        statuses = [strict.request("GET", "/api/health", source="127.0.0.14").status for _ in range(6)]
        assert statuses[:4] == [200] * 4 and 429 in statuses[4:]
        # The frontend is not behind the API limit.
        assert strict.request("GET", "/", source="127.0.0.14").status == 200
