"""The rendered Traefik, running: what only Traefik is checked for (encoded path characters are refused).
The checks Traefik shares with nginx are in test_proxy_live.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.live import running_proxy
from support.proxy import LiveProxy
from support.traefik import needs_traefik

pytestmark = needs_traefik


@pytest.fixture(scope="module")
def proxy() -> Iterator[LiveProxy]:
    with running_proxy("traefik") as running:
        yield running


def test_encoded_path_characters_are_refused(proxy: LiveProxy) -> None:
    assert proxy.request("POST", "/api/auth%2Flogin", body=b"{}", source="127.0.0.16").status == 400
    assert proxy.request("GET", "/api/workouts/..%2F..%2Fetc", source="127.0.0.16").status == 400


def test_alias_headers_strategy_is_set_on_every_entry_point(proxy: LiveProxy) -> None:
    """Traefik warns at start about every entry point that leaves aliasHeadersStrategy unset."""
    assert "aliasHeadersStrategy" not in (proxy.root / "traefik.log").read_text()
