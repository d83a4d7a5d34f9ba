"""The Traefik target: what it renders, that the real traefik binary runs it, and that bad values are refused."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from support.compose import (
    DIGEST,
    PINNED_PROFILE,
    assert_compose_accepts,
    assert_hadolint_clean,
    assert_yamllint_strict_clean,
    compose_lint,
)
from support.compose import render as render_project
from support.project import REPO, RunCli, profiles_of_kind
from support.proxy import CUSTOM_HEADERS_AND_LIMITS, free_ports, refusal, target_input_for
from support.traefik import (
    TRAEFIK,
    make_profile,
    needs_traefik,
    prepare_root,
    render_files,
    running_traefik,
    with_ping,
)
from tempo_gen.bundle.jinja import yaml_wrapped
from tempo_gen.errors import RenderError
from tempo_gen.models.profile import Profile
from tempo_gen.policy import tls as tls_policy
from tempo_gen.policy.releases import NEWEST, release
from tempo_gen.policy.routes import api_routes
from tempo_gen.profile.loader import deep_merge, load_profile
from tempo_gen.reports.audit import weakenings
from tempo_gen.targets import compose, traefik

STATIC = "proxy/traefik/traefik.yml"
ROUTERS = "proxy/traefik/dynamic/routers.yml"
MIDDLEWARES = "proxy/traefik/dynamic/middlewares.yml"
TLS = "proxy/traefik/dynamic/tls.yml"
CONTAINER = {"placement": "container", "publish_addresses": ["192.0.2.7"]}
FILES = {"tls": {"certificate": {"source": "files", "cert_file": "/srv/tls/chain.pem", "key_file": "/srv/tls/key.pem"}}}


def docs(profile: Profile) -> dict[str, dict[str, Any]]:
    """Each rendered YAML file, parsed."""
    return {path: yaml.safe_load(text) for path, text in render_files(profile).items() if path.endswith(".yml")}


# --- what is rendered -------------------------------------------------------------------------------------


def test_nothing_rendered_unless_the_proxy_is_traefik() -> None:
    assert render_files(make_profile(proxy={"kind": "nginx"})) == {}
    assert render_files(make_profile(proxy={"kind": "none"})) == {}


def test_one_file_per_concern() -> None:
    container_acme = render_files(make_profile(proxy=CONTAINER))
    assert sorted(container_acme) == sorted(
        ["proxy/README.md", "proxy/traefik.Dockerfile", STATIC, ROUTERS, MIDDLEWARES, TLS]
    )
    host_self_signed = render_files(make_profile(proxy={"tls": {"certificate": {"source": "self-signed"}}}))
    assert sorted(host_self_signed) == sorted(
        ["proxy/README.md", "proxy/self-signed-cert.sh", STATIC, ROUTERS, MIDDLEWARES, TLS]
    )
    assert "chown 0:0" in host_self_signed["proxy/self-signed-cert.sh"]
    assert "certbot" not in "".join(host_self_signed.values())


def test_static_configuration_in_a_container() -> None:
    profile = make_profile(proxy=CONTAINER, tempo={"import_timeout_minutes": 45})
    static = docs(profile)[STATIC]
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    web, websecure, ping = (static["entryPoints"][name] for name in ("web", "websecure", "ping"))
    assert (web["address"], websecure["address"]) == (":8080", ":8443")
    # The public port, not the container's 8443.
    assert web["http"]["redirections"] == {"entryPoint": {"to": ":443", "scheme": "https", "permanent": True}}
    assert websecure["transport"]["respondingTimeouts"]["readTimeout"] == "45m"
    assert "forwardedHeaders" not in web and "forwardedHeaders" not in websecure
    assert "middlewares" not in web["http"] and websecure["http"]["middlewares"] == ["security-headers@file"]
    assert set(websecure["http"]["encodedCharacters"].values()) == {False}
    # Look-alike headers (X_Forwarded_Proto for X-Forwarded-Proto) dropped on every entry point.
    assert {ep["http"]["aliasHeadersStrategy"] for ep in (web, websecure, ping)} == {"delete"}
    assert ping["address"] == "127.0.0.1:8081" and static["ping"] == {"entryPoint": "ping"}
    assert static["providers"] == {"file": {"directory": "/etc/traefik/dynamic"}}
    assert "api" not in static  # no dashboard
    acme = static["certificatesResolvers"]["acme"]["acme"]
    assert acme == {
        "caServer": "https://acme-v02.api.letsencrypt.org/directory",
        "storage": "/var/lib/traefik/acme.json",
        "keyType": "EC256",
        "httpChallenge": {"entryPoint": "web"},
    }
    assert static["log"] == {"level": "WARN", "noColor": True}
    text = render_files(profile)[STATIC]
    assert "insecure" not in text and "docker" not in text.lower().replace(
        "no docker provider and no docker socket", ""
    )
    assert "ocsp" not in static


def test_host_placement_listens_on_its_address_without_ping() -> None:
    tls = {"ocsp_stapling": True, **FILES["tls"]}
    static = docs(make_profile(proxy={"publish_addresses": ["2001:db8::7"], "tls": tls}))[STATIC]
    assert static["entryPoints"]["web"]["address"] == "[2001:db8::7]:80"
    assert static["entryPoints"]["websecure"]["address"] == "[2001:db8::7]:443"
    assert "ping" not in static and "ping" not in static["entryPoints"]
    assert "certificatesResolvers" not in static
    assert static["ocsp"] == {}
    assert docs(make_profile())[STATIC]["entryPoints"]["web"]["address"] == ":80"


def test_acme_email_and_routers_use_the_resolver() -> None:
    files = docs(make_profile(proxy={"tls": {"certificate": {"acme_email": "ops@example.org"}}}))
    assert files[STATIC]["certificatesResolvers"]["acme"]["acme"]["email"] == "ops@example.org"
    assert "certificates" not in files[TLS]["tls"]
    assert {router["tls"]["certResolver"] for router in files[ROUTERS]["http"]["routers"].values()} == {"acme"}


def test_certificate_files() -> None:
    files = docs(make_profile(proxy=FILES))
    assert files[TLS]["tls"]["certificates"] == [{"certFile": "/srv/tls/chain.pem", "keyFile": "/srv/tls/key.pem"}]
    assert {str(router["tls"]) for router in files[ROUTERS]["http"]["routers"].values()} == {"{}"}


@pytest.mark.parametrize("name", ["intermediate", "modern"])
def test_tls_options_from_the_mozilla_table(name: str) -> None:
    options = docs(make_profile(proxy={"tls": {"profile": name}}))[TLS]["tls"]["options"]
    assert set(options) == {"default"}
    default = options["default"]
    table = tls_policy.CONFIGURATIONS[name]
    assert default["minVersion"] == {"intermediate": "VersionTLS12", "modern": "VersionTLS13"}[name]
    assert default.get("cipherSuites", []) == list(table.ciphers_iana)
    assert default["curvePreferences"] == ["X25519MLKEM768", "X25519", "CurveP256", "CurveP384"]
    assert default["sniStrict"] is True


def test_routes_come_from_the_shared_table() -> None:
    routers = docs(make_profile())[ROUTERS]["http"]["routers"]
    assert list(routers) == ["login", "import", "chunk", "media", "api", "frontend"]
    table = api_routes(release(NEWEST))
    for route in table:
        assert routers[route.name]["rule"] == f"Host(`tempo.test`) && PathRegexp(`{route.pattern}`)"
        assert routers[route.name]["middlewares"][-2:] == ["strip-api-prefix", "api-request"]
        assert f"body-{route.body}" in routers[route.name]["middlewares"]
    assert [routers[r.name]["middlewares"][0] for r in table] == [
        "ratelimit-login",
        "ratelimit-api",
        "ratelimit-chunk",
        "ratelimit-api",
    ]
    assert routers["api"]["rule"] == "Host(`tempo.test`) && PathPrefix(`/api/`)"
    assert routers["frontend"] == {
        "rule": "Host(`tempo.test`)",
        "priority": 10,
        "entryPoints": ["websecure"],
        "middlewares": ["body-default"],
        "service": "frontend",
        "tls": {"certResolver": "acme"},
    }
    assert (
        min(routers[r.name]["priority"] for r in table) > routers["api"]["priority"] > routers["frontend"]["priority"]
    )
    assert all(router["entryPoints"] == ["websecure"] for router in routers.values())


def test_limits_come_from_the_profile() -> None:
    middlewares = docs(
        make_profile(
            tempo={"media_max_mb": 7, "import_max_mb": 900},
            proxy={
                "body_max_kb": 256,
                "rate_limits": {"login_per_minute": 3, "login_burst": 2, "api_per_second": 9, "api_burst": 0},
            },
        )
    )[MIDDLEWARES]["http"]["middlewares"]
    assert middlewares["body-default"] == {"buffering": {"maxRequestBodyBytes": 256 * 1024}}
    assert middlewares["body-media"] == {"buffering": {"maxRequestBodyBytes": 7 * 1024 * 1024}}
    assert middlewares["body-import"] == {"buffering": {"maxRequestBodyBytes": 900 * 1024 * 1024}}
    # Traefik's burst holds the first request too: nginx's burst + 1.
    assert middlewares["ratelimit-login"] == {"rateLimit": {"average": 3, "period": "1m", "burst": 3}}
    assert middlewares["ratelimit-api"] == {"rateLimit": {"average": 9, "period": "1s", "burst": 1}}
    assert middlewares["strip-api-prefix"] == {"stripPrefix": {"prefixes": ["/api"]}}
    assert middlewares["api-request"]["headers"]["customRequestHeaders"] == {"X-Forwarded-Proto": "https"}


def emitted_headers(fields: dict[str, Any], custom: dict[str, str]) -> dict[str, str]:
    """What Traefik's headers middleware (unrolled/secure) sends for these fields, on an https request."""
    sts = (
        f"max-age={fields['stsSeconds']}"
        + "; includeSubDomains" * fields["stsIncludeSubdomains"]
        + "; preload" * fields["stsPreload"]
    )
    headers = {
        "Strict-Transport-Security": sts,
        "X-Frame-Options": "DENY" if fields.get("frameDeny") else fields["customFrameOptionsValue"],
        "X-Content-Type-Options": "nosniff" if fields["contentTypeNosniff"] else None,
        "Referrer-Policy": fields["referrerPolicy"],
        "Permissions-Policy": fields["permissionsPolicy"],
        "Content-Security-Policy": fields["contentSecurityPolicy"],
    }
    return {**headers, **{name: value for name, value in custom.items() if value}}


@pytest.mark.parametrize(
    "overlay",
    [
        {},
        {
            "hsts": {"preload": True},
            "headers": {
                "x_xss_protection": "1; mode=block",
                "frame_options": "DENY",
                "referrer_policy": "no-referrer",
                "csp": {"override": "default-src 'self'; object-src 'none'"},
            },
        },
        {"hsts": {"include_subdomains": False}},
    ],
)
def test_headers_are_the_nginx_set(overlay: dict[str, Any]) -> None:
    profile = make_profile(proxy=overlay)
    headers = docs(profile)[MIDDLEWARES]["http"]["middlewares"]["security-headers"]["headers"]
    custom = headers.pop("customResponseHeaders")
    assert "browserXssFilter" not in headers and "forceSTSHeader" not in headers
    assert emitted_headers(headers, custom) == profile.proxy.security_headers()
    assert custom["Server"] == custom["X-Powered-By"] == ""


def test_yaml_is_safe_for_any_allowed_value() -> None:
    csp = "default-src 'self'; img-src https://a.example.org data:; object-src 'none'"
    profile = make_profile(proxy={"headers": {"csp": {"override": csp}, "permissions_policy": "camera=(self), usb=()"}})
    headers = docs(profile)[MIDDLEWARES]["http"]["middlewares"]["security-headers"]["headers"]
    assert headers["contentSecurityPolicy"] == csp and headers["permissionsPolicy"] == "camera=(self), usb=()"


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"proxy": CONTAINER},
        {"proxy": FILES},
        {"proxy": {"tls": {"profile": "modern"}}},
        {"proxy": {"tls": {"certificate": {"source": "self-signed"}}}},
    ],
)
def test_yamllint_strict_is_clean(tmp_path: Path, variant: dict[str, Any]) -> None:
    for path, text in render_files(make_profile(**variant)).items():
        if path.endswith(".yml"):
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    assert_yamllint_strict_clean(tmp_path)


# --- the real binary ------------------------------------------------------------------------------------


def run_on_loopback(tmp_path: Path, profile: Profile, ca: trustme.CA, **overrides: Any) -> list[str]:
    """Start traefik on the profile's config moved to loopback ports; return its error lines once it serves."""
    http_port, https_port = free_ports(2)
    overrides = with_ping(web=f"127.0.0.1:{http_port}", websecure=f"127.0.0.1:{https_port}", **overrides)
    if traefik.runtime_for(profile).imports:  # the import port's entry point, moved to loopback too
        overrides.setdefault("imports", f"127.0.0.1:{free_ports(1)[0]}")
    acme = profile.proxy.tls.certificate.source == "acme"
    if acme:  # never Let's Encrypt from a test: a CA address that refuses connections
        overrides.setdefault("acme_ca_server", f"https://127.0.0.1:{free_ports(1)[0]}/directory")
    proxy_runtime, conf = prepare_root(profile, tmp_path, ca, **overrides)
    with running_traefik(conf, proxy_runtime, ca, ready_path=None if acme else "/") as running:
        errors = running.errors()
    # Without a reachable CA the ACME client reports that; nothing else may be wrong.
    return [line for line in errors if not (acme and ("acme" in line.lower() or "certificate" in line.lower()))]


@needs_traefik
@pytest.mark.parametrize("path", profiles_of_kind("traefik"), ids=lambda p: p.name)
def test_every_example_profile_runs_in_traefik(tmp_path: Path, ca: trustme.CA, path: Path) -> None:
    profile = load_profile(path, REPO).profile
    # Compose service names resolve only on the Compose network.
    assert run_on_loopback(tmp_path, profile, ca, frontend="127.0.0.1:3000", api="127.0.0.1:5001") == []


VARIANTS: dict[str, dict[str, Any]] = {
    "host-intermediate-files": {"proxy": FILES},
    "host-modern-self-signed-ocsp-preload": {
        "proxy": {
            "tls": {"profile": "modern", "certificate": {"source": "self-signed"}, "ocsp_stapling": True},
            "hsts": {"preload": True},
        }
    },
    "host-acme-email": {"proxy": {"tls": {"certificate": {"acme_email": "ops@example.org"}}}},
    "container-custom-headers-limits": deep_merge(CUSTOM_HEADERS_AND_LIMITS, {"proxy": {**CONTAINER, **FILES}}),
}


@needs_traefik
@pytest.mark.parametrize("name", VARIANTS)
def test_profile_variants_run_in_traefik(tmp_path: Path, ca: trustme.CA, name: str) -> None:
    assert run_on_loopback(tmp_path, make_profile(**VARIANTS[name]), ca) == []


@needs_traefik
def test_traefik_refuses_an_unknown_static_key(tmp_path: Path, ca: trustme.CA) -> None:
    """The check above can fail: the static file is decoded strictly, and dynamic errors are logged."""
    profile = make_profile(proxy=FILES)
    _, conf = prepare_root(profile, tmp_path, ca, **with_ping())
    conf.write_text(
        conf.read_text().replace(
            "  sendAnonymousUsage: false\n", "  sendAnonymousUsage: false\n  sendAnonymousUsag: false\n"
        )
    )
    assert TRAEFIK is not None, "marked needs_traefik"
    result = subprocess.run([TRAEFIK, f"--configFile={conf}"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "sendAnonymousUsag" in result.stdout + result.stderr


@needs_traefik
def test_traefik_reports_a_broken_dynamic_value(tmp_path: Path, ca: trustme.CA) -> None:
    profile = make_profile(proxy=FILES)
    http_port, https_port = free_ports(2)
    proxy_runtime, conf = prepare_root(
        profile, tmp_path, ca, **with_ping(web=f"127.0.0.1:{http_port}", websecure=f"127.0.0.1:{https_port}")
    )
    tls_file = conf.parent / "dynamic" / "tls.yml"
    tls_file.write_text(tls_file.read_text().replace("- CurveP384", "- CurveP999"))
    with running_traefik(conf, proxy_runtime, ca, ready_path=None) as running:
        for _ in range(100):  # the file provider loads within a few hundred ms
            if running.errors():
                break
            time.sleep(0.05)
        assert any("CurveP999" in line for line in running.errors()), running.log()


# --- placement: compose -----------------------------------------------------------------------------------


def compose_doc(profile: Profile) -> dict[str, Any]:
    (file,) = compose.files_for(target_input_for(profile))
    doc: dict[str, Any] = yaml.safe_load(file.content)
    return doc


def test_container_is_the_only_public_service_unprivileged_without_docker_socket() -> None:
    profile = make_profile(proxy=CONTAINER)
    document = compose_doc(profile)
    services = document["services"]
    assert {name for name, service in services.items() if service.get("ports")} == {"proxy"}
    proxy = services["proxy"]
    assert proxy["build"] == {"context": "proxy", "dockerfile": "traefik.Dockerfile"}
    assert proxy["read_only"] is True and proxy["user"] == "101:101" and proxy["cap_drop"] == ["ALL"]
    assert proxy["ports"] == ["192.0.2.7:80:8080", "192.0.2.7:443:8443"]
    assert proxy["volumes"] == [
        "./proxy/traefik:/etc/traefik:ro",
        "proxy_body_temp:/var/cache/traefik",
        "proxy_acme:/var/lib/traefik",
        # The access log, on the host for fail2ban.
        "/var/log/tempo-gen/traefik-test:/var/log/tempo-gen",
    ]
    assert "proxy_acme" in document["volumes"]
    assert "docker.sock" not in yaml.safe_dump(document)
    assert proxy["healthcheck"]["test"] == ["CMD", "traefik", "healthcheck", "--configFile=/etc/traefik/traefik.yml"]
    assert proxy["depends_on"] == {"frontend": {"condition": "service_healthy"}}
    dockerfile = render_files(profile)["proxy/traefik.Dockerfile"]
    assert "FROM traefik:v3.7\n" in dockerfile and "ENV TMPDIR=/var/cache/traefik" in dockerfile
    assert [line for line in dockerfile.splitlines() if line.startswith("USER ")][-1] == "USER 101:101"


def test_certificate_files_are_mounted_read_only_and_no_acme_volume() -> None:
    document = compose_doc(make_profile(proxy={**CONTAINER, **FILES}))
    volumes = document["services"]["proxy"]["volumes"]
    assert "/srv/tls/chain.pem:/srv/tls/chain.pem:ro" in volumes and "/srv/tls/key.pem:/srv/tls/key.pem:ro" in volumes
    assert "proxy_acme" not in document["volumes"] and not any("acme" in v for v in volumes)


def test_host_placement_publishes_upstreams_on_loopback_only() -> None:
    profile = make_profile(proxy={"publish_addresses": ["192.0.2.7"]})
    services = compose_doc(profile)["services"]
    assert "proxy" not in services
    assert services["frontend"]["ports"] == ["127.0.0.1:3004:3000"] and services["api"]["ports"] == [
        "127.0.0.1:5001:5001"
    ]
    servers = docs(profile)[ROUTERS]["http"]["services"]
    assert servers == {
        "api": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:5001"}]}},
        "frontend": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:3004"}]}},
    }
    assert "proxy/traefik.Dockerfile" not in render_files(profile)


TRAEFIK_PINNED = PINNED_PROFILE.replace(
    f"  image: nginxinc/nginx-unprivileged:1.28-alpine{DIGEST}\n", f"  kind: traefik\n  image: traefik:v3.7{DIGEST}\n"
)


@pytest.fixture
def pinned(cli: RunCli, project: Path) -> Path:
    assert "kind: traefik" in TRAEFIK_PINNED
    return render_project(cli, project, TRAEFIK_PINNED)


def test_docker_compose_accepts_the_bundle(pinned: Path) -> None:
    assert_compose_accepts(pinned / "compose.yaml")


def test_compose_lint_finds_nothing_when_pinned(pinned: Path) -> None:
    assert compose_lint(pinned / "compose.yaml") == []


def test_yamllint_strict_is_clean_on_the_bundle(pinned: Path) -> None:
    assert_yamllint_strict_clean(pinned)


def test_hadolint_accepts_the_dockerfile(pinned: Path) -> None:
    dockerfile = pinned / "proxy" / "traefik.Dockerfile"
    assert f"FROM traefik:v3.7{DIGEST}\n" in dockerfile.read_text()
    assert_hadolint_clean([dockerfile])


# --- refused values ---------------------------------------------------------------------------------------


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "two addresses for a host traefik": (
        {"proxy": {"placement": "host", "publish_addresses": ["192.0.2.1", "192.0.2.2"]}},
        "one address",
    ),
    "domain with a backtick": ({"domain": "tempo.test`) || Host(`evil.test"}, "domain"),
    "header with a newline": ({"proxy": {"headers": {"permissions_policy": "camera=()\nX: 1"}}}, "permissions_policy"),
    "header with a double quote": ({"proxy": {"headers": {"csp": {"override": 'default-src "self"'}}}}, "override"),
    "header with a backtick": ({"proxy": {"headers": {"csp": {"override": "default-src `self`"}}}}, "override"),
    "csp source with a space": (
        {"proxy": {"headers": {"csp": {"map_sources": ["https://a.com data:"]}}}},
        "map_sources",
    ),
    "zero body limit": ({"proxy": {"body_max_kb": 0}}, "body_max_kb"),
    "negative burst": ({"proxy": {"rate_limits": {"login_burst": -1}}}, "login_burst"),
    "zero rate": ({"proxy": {"rate_limits": {"api_per_second": 0}}}, "api_per_second"),
    "import timeout zero": ({"tempo": {"import_timeout_minutes": 0}}, "import_timeout_minutes"),
    "relative certificate": (
        {"proxy": {"tls": {"certificate": {"source": "files", "cert_file": "c.pem", "key_file": "/k"}}}},
        "cert_file",
    ),
    "e-mail with a quote": ({"proxy": {"tls": {"certificate": {"acme_email": 'a"@example.org'}}}}, "acme_email"),
    "image with a space": ({"proxy": {"image": "traefik:v3.7 --api.insecure"}}, "image"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_values_are_refused_with_a_clear_error(tmp_path: Path, case: str) -> None:
    overlay, expected = BAD[case]
    message = refusal(tmp_path, "traefik", overlay)
    assert expected in message, message
    assert message.startswith("bad.yaml:"), message


def test_nginx_only_fields_are_ignored() -> None:
    plain = render_files(make_profile())
    assert (
        render_files(
            make_profile(
                proxy={"nginx_version": "1.22", "openssl_version": "3.0", "tls": {"ocsp_resolvers": ["192.0.2.53"]}}
            )
        )
        == plain
    )


def test_a_backtick_never_reaches_a_rule() -> None:
    profile = make_profile()
    forged = profile.model_copy(update={"domain": "a`b.test"})  # bypasses validation on purpose
    with pytest.raises(RenderError):
        traefik.routers(forged)


def test_self_signed_script_is_valid_shell() -> None:
    script = render_files(make_profile(proxy={**CONTAINER, "tls": {"certificate": {"source": "self-signed"}}}))[
        "proxy/self-signed-cert.sh"
    ]
    assert "chown 101:101" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True, timeout=120).returncode == 0


def test_audit_reports_a_longer_read_timeout_only_for_traefik() -> None:
    def reported(profile: Profile) -> bool:
        return "tempo.import_timeout_minutes" in [finding.field for finding in weakenings(profile)]

    assert reported(make_profile(tempo={"import_timeout_minutes": 60}))
    assert not reported(make_profile())
    assert not reported(make_profile(proxy={"kind": "nginx"}, tempo={"import_timeout_minutes": 60}))


@pytest.mark.parametrize(
    "value", ["", "0", "a  b; c", 'say "hi"; \\ and #x', "x" * 300, "a; " * 80 + "end", "é ünïcode"]
)
def test_wrapped_yaml_strings_read_back_unchanged(value: str) -> None:
    text = yaml_wrapped(value, 4)
    assert yaml.safe_load(f"key: {text}") == {"key": value}
    assert all(len(line) <= 320 for line in text.splitlines())
