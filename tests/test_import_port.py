"""The import port of Tempo 2.1.x-2.6.x: what every target renders for it, on every placement, and only there.

Those releases' browsers post bulk imports cross-origin to `https://<host>:5001/workouts/import/{bulk,export}`
(policy.releases: browser_imports "import-port"). Each proxy serves a TLS listener there with only those two
routes; Compose publishes it, the CSP lets the site's pages connect to it and the firewall opens it like 443.
The running proxies are in test_import_port_live.py, real packets in test_firewall_netns.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from support import nginx as nginx_support
from support import traefik as traefik_support
from support.project import VALID_PROFILE, RunCli
from support.proxy import dev_profile, refusal, target_input_for
from tempo_gen.models.profile import Profile
from tempo_gen.policy.placement import site_headers
from tempo_gen.policy.ports import API_PORT, HOST_API_PORT, IMPORT_PORT
from tempo_gen.policy.routes import import_origin, import_port_route
from tempo_gen.reports.audit import weakenings
from tempo_gen.targets import compose, nginx, traefik
from tempo_gen.targets.host import firewall

LEGACY = ("2.1.0", "2.4.0", "2.6.0")
SITE = "proxy/nginx/sites-available/tempo.test.conf"
NGINX_CONF = "proxy/nginx/nginx.conf"
STATIC = "proxy/traefik/traefik.yml"
ROUTERS = "proxy/traefik/dynamic/routers.yml"
MIDDLEWARES = "proxy/traefik/dynamic/middlewares.yml"
PLACEMENTS: dict[str, dict[str, Any]] = {
    "container": {"placement": "container", "publish_addresses": ["192.0.2.7", "2001:db8::7"]},
    "host": {"placement": "host"},
    "host-address": {"placement": "host", "publish_addresses": ["192.0.2.7"]},
}


def profile_for(
    kind: str, placement: str, version: str = "2.1.0", proxy: dict[str, Any] | None = None, **tempo: Any
) -> Profile:
    return dev_profile(kind, proxy={**PLACEMENTS[placement], **(proxy or {})}, tempo={"version": version, **tempo})


def compose_services(profile: Profile) -> dict[str, Any]:
    (rendered,) = compose.files_for(target_input_for(profile))
    services: dict[str, Any] = yaml.safe_load(rendered.content)["services"]
    return services


def server_block(site: str, marker: str) -> str:
    """The text of the nginx server block that contains `marker`."""
    start = site.rindex("server {", 0, site.index(marker))
    depth, end = 0, start
    for end in range(start, len(site)):
        depth += site[end] == "{"
        depth -= site[end] == "}"
        if depth == 0 and site[end] == "}":
            break
    return site[start : end + 1]


# --- the capability table -----------------------------------------------------------------------------------


def test_the_route_has_the_apis_own_paths_the_import_limits_and_only_options_and_post() -> None:
    route = import_port_route(dev_profile("nginx", tempo={"version": "2.1.0", "import_timeout_minutes": 45}))
    assert route is not None
    assert route.regex == "^/workouts/import/(?:bulk|export)$" and route.strip_prefix is None
    assert route.upstream == "api" and route.methods == ("OPTIONS", "POST")
    assert route.body == "import" and route.body_max.bytes == 500 * 1024 * 1024
    assert route.streamed and route.timeout_minutes == 45
    assert route.rate is not None and route.rate.name == "api"
    # Nothing for chunked releases, nor without a proxy (the listener lives in the proxy).
    assert import_port_route(dev_profile("nginx", tempo={"version": "2.7.0"})) is None
    assert import_port_route(dev_profile("none", tempo={"version": "2.1.0"})) is None


# --- CSP ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_connect_src_names_the_import_origin_only_for_releases_that_use_it(kind: str) -> None:
    def connect_src(version: str) -> list[str]:
        policy = site_headers(profile_for(kind, "host", version))["Content-Security-Policy"]
        return next(part for part in policy.split("; ") if part.startswith("connect-src ")).split()[1:]

    assert connect_src("2.1.0")[:2] == ["'self'", f"https://tempo.test:{IMPORT_PORT}"]
    assert not any(":5001" in source for source in connect_src("2.10.1"))
    # Both proxies send that one policy.
    legacy = profile_for(kind, "host")
    expected = site_headers(legacy)["Content-Security-Policy"]
    if kind == "nginx":
        security = nginx_support.render_files(legacy)["proxy/nginx/tempo-gen/security.conf"]
        assert f'add_header Content-Security-Policy "{expected}" always;' in security
    else:
        headers = yaml.safe_load(traefik_support.render_files(legacy)[MIDDLEWARES])["http"]["middlewares"]
        assert headers["security-headers"]["headers"]["contentSecurityPolicy"] == expected


def test_an_overriding_csp_is_left_as_written() -> None:
    profile = dev_profile(
        "nginx", tempo={"version": "2.1.0"}, proxy={"headers": {"csp": {"override": "default-src 'self'"}}}
    )
    assert import_origin(profile) == "https://tempo.test:5001"
    assert site_headers(profile)["Content-Security-Policy"] == "default-src 'self'"


# --- nginx --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placement", "listen"),
    [
        ("container", ["listen 8444 ssl;"]),
        ("host", ["listen 5001 ssl;", "listen [::]:5001 ssl;"]),
        ("host-address", ["listen 192.0.2.7:5001 ssl;"]),
    ],
)
def test_nginx_serves_the_two_routes_on_the_import_port(placement: str, listen: list[str]) -> None:
    files = nginx_support.render_files(profile_for("nginx", placement))
    site = files[SITE]
    server = server_block(site, "set $tempo_public_port 5001;")
    assert [line.strip() for line in server.splitlines() if line.strip().startswith("listen")] == listen
    assert "server_name tempo.test;" in server and "http2 on;" in server
    # The site's certificate.
    assert "ssl_certificate /var/lib/tempo-tls/tempo.test/fullchain.pem;" in server
    # One location to the API, its path kept; everything else 404.
    assert server.count("location ") == 2 and "location / {\n        return 404;\n    }" in server
    location = server[server.index('location ~ "^/workouts/import/(?:bulk|export)$" {') :]
    location = location[: location.index("\n    }")]
    assert 'if ($request_method !~ "^(?:OPTIONS|POST)$") {\n            return 404;' in location
    assert "limit_req zone=tempo_api burst=50 nodelay;" in location
    assert "client_max_body_size 500m;" in location and "proxy_request_buffering off;" in location
    assert "proxy_send_timeout 30m;" in location and "proxy_read_timeout 30m;" in location
    assert "rewrite" not in location and "include tempo-gen/api.conf;" in location
    # The same TLS settings (http-level) and the same headers (api.conf includes security.conf).
    assert "include tempo-gen/tls.conf;" in files[NGINX_CONF]
    assert "include tempo-gen/security.conf;" in files["proxy/nginx/tempo-gen/api.conf"]
    # X-Forwarded-Proto https as on /api; X-Forwarded-Port the public port of each server.
    proxy_conf = files["proxy/nginx/tempo-gen/proxy.conf"]
    assert "proxy_set_header X-Forwarded-Proto https;" in proxy_conf
    assert "proxy_set_header X-Forwarded-Port $tempo_public_port;" in proxy_conf
    assert "set $tempo_public_port 443;" in server_block(site, "location /api/ {")
    # An unknown name on the import port gets no certificate either.
    default = server_block(files[NGINX_CONF], "ssl_reject_handshake on;")
    assert all(f"{line[:-1]} default_server;" in default for line in listen)


def test_nginx_without_the_import_port_on_newer_releases() -> None:
    for placement in PLACEMENTS:
        files = nginx_support.render_files(profile_for("nginx", placement, "2.10.1"))
        listens = [line for line in (files[SITE] + files[NGINX_CONF]).splitlines() if "listen " in line]
        assert not [line for line in listens if ":5001" in line or " 5001" in line or "8444" in line]
        assert "$tempo_public_port" not in "".join(files.values())
        assert "proxy_set_header X-Forwarded-Port 443;" in files["proxy/nginx/tempo-gen/proxy.conf"]


@nginx_support.needs_nginx
@pytest.mark.parametrize("placement", ["container", "host"])  # nginx -t binds: no foreign address
def test_nginx_t_accepts_the_import_server(tmp_path: Path, ca: trustme.CA, placement: str) -> None:
    profile = nginx_support.for_local_nginx(profile_for("nginx", placement))
    conf = nginx_support.prepare_root(profile, tmp_path, ca)
    result = nginx_support.nginx_t(tmp_path, conf)
    assert result.returncode == 0, result.stderr


# --- Traefik ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placement", "address"),
    [("container", ":8444"), ("host", ":5001"), ("host-address", "192.0.2.7:5001")],
)
def test_traefik_has_an_import_entry_point_with_one_router(placement: str, address: str) -> None:
    files = traefik_support.render_files(profile_for("traefik", placement, import_timeout_minutes=45))
    entry_points = yaml.safe_load(files[STATIC])["entryPoints"]
    imports, websecure = entry_points["imports"], entry_points["websecure"]
    assert imports["address"] == address
    # The same timeouts, headers middleware, alias and encoded-character checks as the site.
    assert {k: v for k, v in imports.items() if k != "address"} == {
        k: v for k, v in websecure.items() if k != "address"
    }
    routers = yaml.safe_load(files[ROUTERS])["http"]["routers"]
    on_imports = {name: r for name, r in routers.items() if "imports" in r["entryPoints"]}
    assert list(on_imports) == ["import-port"]
    router = on_imports["import-port"]
    assert router["entryPoints"] == ["imports"] and router["service"] == "api" and router["priority"] == 30
    assert router["rule"] == (
        "Host(`tempo.test`) && PathRegexp(`^/workouts/import/(?:bulk|export)$`)"
        " && (Method(`OPTIONS`) || Method(`POST`))"
    )
    assert router["middlewares"] == ["ratelimit-api", "body-import", "api-request"]
    assert router["tls"] == {"certResolver": "acme"}
    # Every other router stays on the site's entry point.
    assert {tuple(r["entryPoints"]) for n, r in routers.items() if n != "import-port"} == {("websecure",)}
    middlewares = yaml.safe_load(files[MIDDLEWARES])["http"]["middlewares"]
    assert middlewares["api-request"]["headers"]["customRequestHeaders"] == {"X-Forwarded-Proto": "https"}
    assert middlewares["body-import"]["buffering"]["maxRequestBodyBytes"] == 500 * 1024 * 1024


def test_traefik_without_the_import_port_on_newer_releases() -> None:
    for placement in PLACEMENTS:
        files = traefik_support.render_files(profile_for("traefik", placement, "2.10.1"))
        assert "imports" not in yaml.safe_load(files[STATIC])["entryPoints"]
        assert "import-port" not in yaml.safe_load(files[ROUTERS])["http"]["routers"]


@traefik_support.needs_traefik
@pytest.mark.parametrize("placement", ["container", "host"])
def test_traefik_runs_the_import_entry_point(tmp_path: Path, ca: trustme.CA, placement: str) -> None:
    from test_traefik import run_on_loopback

    profile = profile_for(
        "traefik",
        placement,
        proxy={"tls": {"certificate": {"source": "files", "cert_file": "/t/c.pem", "key_file": "/t/k.pem"}}},
    )
    assert run_on_loopback(tmp_path, profile, ca) == []


# --- Compose, Swarm ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_the_proxy_container_publishes_the_import_port_on_its_addresses(kind: str) -> None:
    services = compose_services(profile_for(kind, "container"))
    assert services["proxy"]["ports"] == [
        "192.0.2.7:80:8080",
        "192.0.2.7:443:8443",
        "192.0.2.7:5001:8444",
        "[2001:db8::7]:80:8080",
        "[2001:db8::7]:443:8443",
        "[2001:db8::7]:5001:8444",
    ]
    assert {name for name, service in services.items() if service.get("ports")} == {"proxy"}
    newer = compose_services(profile_for(kind, "container", "2.10.1"))
    assert not any(":5001:" in port for port in newer["proxy"]["ports"])


@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_a_host_proxy_reaches_the_api_on_another_loopback_port(kind: str) -> None:
    legacy = profile_for(kind, "host")
    assert compose_services(legacy)["api"]["ports"] == [f"127.0.0.1:{HOST_API_PORT}:{API_PORT}"]
    runtime = nginx.runtime_for(legacy) if kind == "nginx" else traefik.runtime_for(legacy)
    assert runtime.api == f"127.0.0.1:{HOST_API_PORT}"
    # Other releases keep the API where it was.
    newer = profile_for(kind, "host", "2.10.1")
    assert compose_services(newer)["api"]["ports"] == [f"127.0.0.1:{API_PORT}:{API_PORT}"]
    newer_runtime = nginx.runtime_for(newer) if kind == "nginx" else traefik.runtime_for(newer)
    assert newer_runtime.api == f"127.0.0.1:{API_PORT}"


def test_swarm_publishes_the_import_port_in_host_mode(cli: RunCli, project: Path) -> None:
    text = VALID_PROFILE.replace("203.0.113.10", "0.0.0.0").replace("tempo:\n", "tempo:\n  version: 2.1.0\n")
    (project / "profiles" / "demo.yaml").write_text(text + "deploy:\n  mode: swarm\n")
    result = cli("render")
    assert result.exit_code == 0, result.output
    stack = yaml.safe_load((project / "out" / "demo" / "compose.yaml").read_text())
    assert {"target": 8444, "published": 5001, "protocol": "tcp", "mode": "host"} in stack["services"]["proxy"]["ports"]


# --- firewall ---------------------------------------------------------------------------------------------


def firewall_files(placement: str, version: str) -> dict[str, str]:
    profile = dev_profile(
        "nginx",
        proxy=PLACEMENTS[placement],
        tempo={"version": version},
        firewall={"admin_cidrs": ["198.51.100.0/24"]},
    )
    return {str(f.path): f.content for f in firewall.files_for(target_input_for(profile))}


def test_the_firewall_opens_the_import_port_like_443_only_for_releases_that_use_it() -> None:
    container = firewall_files("container", "2.1.0")
    assert "tcp dport { 80, 443, 5001 } accept" in container["firewall/nftables.conf"]
    assert "ct original proto-dst { 80, 443, 5001 } accept" in container["firewall/nftables.conf"]
    for rules in ("firewall/docker-user.rules", "firewall/docker-user6.rules", "firewall/ufw/after.rules"):
        assert "--ctorigdstport 5001 --ctdir ORIGINAL -j RETURN" in container[rules]
    assert "to any port 80,443,5001 comment" in container["firewall/ufw/setup.sh"]
    host = firewall_files("host", "2.1.0")
    assert "tcp dport { 80, 443, 5001 } accept" in host["firewall/nftables.conf"]
    assert "proto-dst" not in host["firewall/nftables.conf"].split("chain forward")[1]
    for placement in ("container", "host"):
        newer = "".join(firewall_files(placement, "2.10.1").values())
        assert "5001" not in newer


# --- what the model refuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlay", "field"),
    [
        ({"proxy": {"https_port": 5001}}, "proxy.https_port"),
        ({"proxy": {"http_port": 5001}}, "proxy.http_port"),
        ({"firewall": {"ssh_port": 5001}}, "firewall.ssh_port"),
    ],
)
def test_the_import_port_is_not_another_listener(tmp_path: Path, overlay: dict[str, Any], field: str) -> None:
    message = refusal(tmp_path, "nginx", {"tempo": {"version": "2.1.0"}, **overlay})
    assert field in message and "5001" in message
    # Free on releases without it.
    assert dev_profile("nginx", tempo={"version": "2.10.1"}, **overlay)


@pytest.mark.parametrize("version", LEGACY)
def test_every_legacy_release_renders_the_listener(version: str) -> None:
    assert import_port_route(dev_profile("traefik", tempo={"version": version})) is not None


def test_audit_reports_the_second_public_port_and_who_serves_it() -> None:
    def finding(kind: str, version: str) -> str | None:
        found = [
            f.message for f in weakenings(dev_profile(kind, tempo={"version": version})) if f.field == "tempo.version"
        ]
        return found[0] if found else None

    proxied = finding("nginx", "2.1.0")
    assert proxied is not None and "port 5001" in proxied and "the proxy publishes it" in proxied
    unproxied = finding("none", "2.6.0")
    assert unproxied is not None and "serve it with TLS yourself" in unproxied
    assert finding("nginx", "2.7.0") is None
