"""nginx hardening: upstreams that follow recreated containers, gixy-next over every rendered config,
misdirected requests answered 421. Look-alike forwarded headers are checked for both proxies in
test_proxy_live.py."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
import trustme

from support.live import running_proxy
from support.nginx import VARIANTS, make_profile, needs_nginx, nginx_t, prepare_root, render_files
from support.project import REPO, profiles_of_kind
from support.proxy import LiveProxy
from tempo_gen.models.profile import Profile
from tempo_gen.profile.loader import load_profile
from tempo_gen.targets import nginx

SITE = "proxy/nginx/sites-available/tempo.test.conf"
CONF = "proxy/nginx/nginx.conf"
PROXY = "proxy/nginx/tempo-gen/proxy.conf"
API = "proxy/nginx/tempo-gen/api.conf"
CONTAINER = {"placement": "container", "publish_addresses": ["127.0.0.1"]}


class Upstreams(TypedDict):
    """Runtime overrides naming the upstreams' addresses."""

    frontend: str
    api: str


LOOPBACK_UPSTREAMS: Upstreams = {"frontend": "127.0.0.1:3000", "api": "127.0.0.1:5001"}

needs_gixy = pytest.mark.skipif(importlib.util.find_spec("gixy") is None, reason="gixy-next is not installed")


def container(**proxy: Any) -> Profile:
    return make_profile(proxy={**CONTAINER, **proxy})


# --- upstreams follow the container ----------------------------------------------------------------------


def test_host_upstreams_are_fixed_loopback_addresses() -> None:
    files = render_files(make_profile())
    assert "resolver" not in files[CONF] + files[SITE] + files[PROXY]
    assert "server 127.0.0.1:5001;" in files[SITE] and "proxy_pass http://tempo_api;" in files[API]


@pytest.mark.parametrize("version", ["1.27.3", "1.28"])
def test_new_nginx_re_resolves_upstream_servers(version: str) -> None:
    files = render_files(container(nginx_version=version))
    assert "resolver 127.0.0.11 valid=5s ipv6=off;" in files[CONF] and "resolver_timeout 5s;" in files[CONF]
    site = files[SITE]
    assert "server api:5001 resolve;" in site and "server frontend:3000 resolve;" in site
    # `resolve` needs a shared zone; its name must not clash with the limit_req zones (tempo_api).
    assert "zone api_upstream 64k;" in site and "zone frontend_upstream 64k;" in site
    assert site.count("keepalive 16;") == 2
    assert "proxy_pass http://tempo_api;" in files[API]
    assert "$tempo_api" not in site and "$tempo_frontend" not in site, "no variable proxy_pass"


@pytest.mark.parametrize("version", ["1.22", "1.27.2"])
def test_older_nginx_re_resolves_a_variable_proxy_pass(version: str) -> None:
    files = render_files(container(nginx_version=version))
    site = files[SITE]
    assert not re.search(r"^upstream ", site, re.MULTILINE)
    assert "set $tempo_api api:5001;" in site and "set $tempo_frontend frontend:3000;" in site
    assert "proxy_pass http://$tempo_api;" in files[API] and "proxy_pass http://$tempo_frontend;" in site
    # The location's own resolver: a server-level OCSP resolver must not take the upstreams' place.
    assert "resolver 127.0.0.11 valid=5s ipv6=off;" in files[PROXY] and "resolver 127.0.0.11 " in files[CONF]


def test_container_ocsp_resolvers_do_not_replace_dockers_dns() -> None:
    files = render_files(container(tls={"ocsp_stapling": True, "ocsp_resolvers": ["192.0.2.53"]}))
    assert "resolver 127.0.0.11 valid=5s ipv6=off;" in files[CONF]
    assert "resolver 192.0.2.53 valid=300s;" in files[SITE]
    assert not re.search(r"^resolver ", files["proxy/nginx/tempo-gen/tls.conf"], re.MULTILINE)


def test_the_capability_decides_not_the_template() -> None:
    proxy_runtime = nginx.runtime_for(container())
    assert not nginx.upstreams_for(proxy_runtime, (1, 27, 2)).resolve_param
    assert nginx.upstreams_for(proxy_runtime, (1, 27, 3)).resolve_param
    host = nginx.runtime_for(make_profile())
    assert host.resolver is None and not nginx.upstreams_for(host, (1, 28)).variable


@needs_nginx
@pytest.mark.parametrize(
    "proxy",
    [{"nginx_version": "1.22"}, {"nginx_version": "1.22", "tls": {"ocsp_stapling": True}}],
    ids=["variable", "variable-ocsp"],
)
def test_variable_upstreams_pass_nginx_t(tmp_path: Path, ca: trustme.CA, proxy: dict[str, Any]) -> None:
    conf = prepare_root(container(**proxy), tmp_path, ca, **LOOPBACK_UPSTREAMS)
    result = nginx_t(tmp_path, conf)
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_variable_proxy_pass_still_strips_the_api_prefix() -> None:
    """The <1.27.3 path, live: a variable proxy_pass passes the rewritten URI, query included."""
    with running_proxy("nginx", runtime={"resolver": nginx.DOCKER_DNS}, nginx_version="1.22") as proxy:
        assert "$tempo_api" in (proxy.root / "etc/nginx/tempo-gen/api.conf").read_text()
        seen = json.loads(proxy.request("GET", "/api/workouts/recent?limit=3", source="127.0.0.20").body)
        assert seen["upstream"] == "api" and seen["path"] == "/workouts/recent?limit=3"
        seen = json.loads(proxy.request("GET", "/api/workouts/import/bulk", source="127.0.0.20").body)
        assert seen["path"] == "/workouts/import/bulk"
        seen = json.loads(proxy.request("GET", "/workouts/1?x=1", source="127.0.0.20").body)
        assert seen["upstream"] == "frontend" and seen["path"] == "/workouts/1?x=1"


# --- misdirected requests, live -----------------------------------------------------


@pytest.fixture(scope="module")
def proxy() -> Iterator[LiveProxy]:
    with running_proxy("nginx") as running:
        yield running


@needs_nginx
def test_request_for_another_host_on_our_connection_gets_421(proxy: LiveProxy) -> None:
    """HTTP/2 connection reuse: TLS for our name, then a request for another host; no upstream sees it."""
    start = len(proxy.api_arrivals)
    response = proxy.request("GET", "/api/health", headers={"Host": "other.test"}, source="127.0.0.21")
    assert response.status == 421
    assert proxy.api_arrivals[start:] == []


# --- gixy-next ----------------------------------------------------------------------------------------


def _gixy_profiles() -> dict[str, Profile]:
    profiles = {p.name: load_profile(p, REPO).profile for p in profiles_of_kind("nginx")}
    profiles.update({name: make_profile(**overlay) for name, overlay in VARIANTS.items()})
    for version in ("1.22", "1.25.1", "1.27.2", "1.27.3", "1.28"):
        profiles[f"host-{version}"] = make_profile(proxy={"nginx_version": version})
        profiles[f"container-{version}"] = container(nginx_version=version)
    for source in ("acme", "files", "self-signed"):
        files = {"cert_file": "/tls/c.pem", "key_file": "/tls/k.pem"} if source == "files" else {}
        certificate = {"source": source, **files}
        profiles[f"host-{source}"] = make_profile(proxy={"tls": {"certificate": certificate}})
        profiles[f"container-{source}"] = container(tls={"certificate": certificate})
    profiles["container-ocsp-resolvers"] = container(tls={"ocsp_stapling": True, "ocsp_resolvers": ["192.0.2.53"]})
    # Tempo 2.1.x-2.6.x: the import port's server, before and after nginx's `http2 on`.
    for version in ("1.22", "1.28"):
        profiles[f"host-import-port-{version}"] = make_profile(
            tempo={"version": "2.1.0"}, proxy={"nginx_version": version}
        )
    return profiles


GIXY_PROFILES = _gixy_profiles()


@needs_gixy
@pytest.mark.parametrize("name", GIXY_PROFILES)
def test_gixy_finds_nothing(tmp_path: Path, ca: trustme.CA, name: str) -> None:
    conf = prepare_root(GIXY_PROFILES[name], tmp_path, ca)
    result = subprocess.run(
        [sys.executable, "-m", "gixy", "-f", "json", str(conf)], capture_output=True, text=True, timeout=120
    )
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(f"{f['plugin']}: {f['reason']} ({f['file']}:{f['line']})" for f in findings)
    # gixy reads the includes relative to nginx.conf (findings in api.conf were reported before the fixes).
    assert result.returncode == 0, result.stderr
