"""The rendered nginx, running: what only nginx does (the ACME webroot on port 80, dropping unknown hosts).
The checks nginx shares with Traefik are in test_proxy_live.py."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from support.live import running_proxy
from support.nginx import needs_nginx
from support.proxy import LiveProxy

pytestmark = needs_nginx


@pytest.fixture(scope="module")
def proxy() -> Iterator[LiveProxy]:
    with running_proxy("nginx") as running:
        yield running


def test_http_serves_the_acme_challenge_and_nothing_else(proxy: LiveProxy) -> None:
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


def test_unknown_host_on_http_is_dropped(proxy: LiveProxy) -> None:
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        proxy.request("GET", "/", headers={"Host": "other.test"}, tls=False)
