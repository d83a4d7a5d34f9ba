"""The nginx target: what it renders, that Debian's nginx accepts it, and that no profile value can
inject a directive."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from support.nginx import (
    VARIANTS,
    for_local_nginx,
    make_profile,
    needs_nginx,
    nginx_t,
    prepare_root,
    render_files,
    runtime,
    write_tree,
)
from support.project import REPO, profiles_of_kind
from support.proxy import refusal, target_input_for
from tempo_gen.bundle.jinja import nginx_string
from tempo_gen.errors import ProfileError, RenderError
from tempo_gen.models.profile import Profile
from tempo_gen.policy import tls as tls_policy
from tempo_gen.profile.loader import load_profile
from tempo_gen.targets import compose, nginx

SITE = "proxy/nginx/sites-available/tempo.test.conf"
TLS = "proxy/nginx/tempo-gen/tls.conf"


def check(tmp_path: Path, profile: Profile, ca: trustme.CA, **overrides: Any) -> str:
    """`nginx -t` on the profile's tree; returns nginx's output, failing on any problem but OCSP warnings."""
    conf = prepare_root(profile, tmp_path, ca, **overrides)
    result = nginx_t(tmp_path, conf)
    output = result.stderr
    assert result.returncode == 0, output
    # Tolerated: OCSP warnings (test certificates have no responder) and, when not run as root, `user` being ignored.
    unexpected = [
        line
        for line in output.splitlines()
        if "[" in line and "ssl_stapling" not in line and '"user" directive' not in line
    ]
    assert not unexpected, output
    return output


# --- nginx -t --------------------------------------------------------------------------------------------


@needs_nginx
@pytest.mark.parametrize("path", profiles_of_kind("nginx"), ids=lambda p: p.name)
def test_every_example_profile_passes_nginx_t(tmp_path: Path, ca: trustme.CA, path: Path) -> None:
    profile = load_profile(path, REPO).profile
    # Compose service names resolve only on the Compose network; nginx -t resolves upstreams.
    upstreams = (
        {"frontend": "127.0.0.1:3000", "api": "127.0.0.1:5001"} if profile.proxy.placement == "container" else {}
    )
    check(tmp_path, for_local_nginx(profile), ca, **upstreams)


@needs_nginx
@pytest.mark.parametrize("name", VARIANTS)
def test_profile_variants_pass_nginx_t(tmp_path: Path, ca: trustme.CA, name: str) -> None:
    profile = for_local_nginx(make_profile(**VARIANTS[name]))
    upstreams = (
        {"frontend": "127.0.0.1:3000", "api": "127.0.0.1:5001"} if profile.proxy.placement == "container" else {}
    )
    check(tmp_path, profile, ca, **upstreams)


@needs_nginx
def test_nginx_t_catches_a_broken_config(tmp_path: Path, ca: trustme.CA) -> None:
    """The check above can fail: a directive nginx does not know is reported."""
    conf = prepare_root(make_profile(proxy={"nginx_version": "1.25.1"}), tmp_path, ca)
    result = nginx_t(tmp_path, conf)
    if result.returncode == 0:
        pytest.skip("this nginx knows `http2 on;` (>= 1.25.1)")
    assert 'unknown directive "http2"' in result.stderr


# --- what is rendered -------------------------------------------------------------------------------------


def test_nothing_rendered_unless_the_proxy_is_nginx() -> None:
    assert render_files(make_profile(proxy={"kind": "traefik"})) == {}
    assert render_files(make_profile(proxy={"kind": "none"})) == {}


def test_one_file_per_concern_and_every_include_exists() -> None:
    files = render_files(make_profile())
    assert sorted(files) == sorted(
        [
            "proxy/README.md",
            "proxy/certbot-deploy-hook.sh",
            "proxy/self-signed-cert.sh",
            "proxy/nginx/nginx.conf",
            SITE,
            "proxy/nginx/tempo-gen/api.conf",
            "proxy/nginx/tempo-gen/letsencrypt.conf",
            "proxy/nginx/tempo-gen/proxy.conf",
            "proxy/nginx/tempo-gen/security.conf",
            "proxy/nginx/tempo-gen/log.conf",
            TLS,
        ]
    )
    for path, text in files.items():
        for include in re.findall(r"^\s*include (\S+);", text, re.M):
            assert f"proxy/nginx/{include}" in files, f"{path} includes missing {include}"


def test_certificate_sources_render_their_own_helpers() -> None:
    self_signed = render_files(make_profile(proxy={"tls": {"certificate": {"source": "self-signed"}}}))
    assert "proxy/nginx/tempo-gen/letsencrypt.conf" not in self_signed and "acme-challenge" not in self_signed[SITE]
    assert "openssl req -x509" in self_signed["proxy/self-signed-cert.sh"]
    assert "proxy/certbot-deploy-hook.sh" not in self_signed
    files = render_files(
        make_profile(proxy={"tls": {"certificate": {"source": "files", "cert_file": "/c.pem", "key_file": "/k.pem"}}})
    )
    assert not any(path.endswith(".sh") for path in files)
    acme = render_files(make_profile(proxy={"placement": "container", "publish_addresses": ["127.0.0.1"]}))
    hook = acme["proxy/certbot-deploy-hook.sh"]
    assert "key=/var/lib/tempo-tls/tempo.test/privkey.pem" in hook
    assert 'install_file "$lineage/privkey.pem" "$key" 0400 101' in hook
    assert "label=com.docker.compose.project=nginx-test" in hook and 'docker exec "$proxy" nginx -t -q' in hook
    host_hook = render_files(make_profile())["proxy/certbot-deploy-hook.sh"]
    assert "nginx -s reload -c /etc/nginx/nginx.conf" in host_hook
    assert 'install_file "$lineage/privkey.pem" "$key" 0400 0' in host_hook


@pytest.mark.parametrize(
    ("version", "listen", "directive"),
    [
        ("1.22", "listen 443 ssl http2;", False),
        ("1.25", "listen 443 ssl http2;", False),  # 1.25 without a patch level may be 1.25.0
        ("1.25.1", "listen 443 ssl;", True),
        ("1.28", "listen 443 ssl;", True),
    ],
)
def test_http2_syntax_follows_the_nginx_version(version: str, listen: str, directive: bool) -> None:
    site = render_files(make_profile(proxy={"nginx_version": version}))[SITE]
    assert listen in site
    assert ("http2 on;" in site) is directive


@pytest.mark.parametrize(
    ("version", "tickets_off"), [("1.22", True), ("1.23.1", True), ("1.23.2", False), ("1.28", False)]
)
def test_session_tickets_off_only_before_key_rotation(version: str, tickets_off: bool) -> None:
    tls = render_files(make_profile(proxy={"nginx_version": version}))[TLS]
    assert ("ssl_session_tickets off;" in tls) is tickets_off


@pytest.mark.parametrize(
    ("openssl", "curves"),
    [
        ("3.0", "X25519:prime256v1:secp384r1"),
        ("3.4", "X25519:prime256v1:secp384r1"),
        ("3.5", "X25519MLKEM768:X25519:prime256v1:secp384r1"),
    ],
)
def test_post_quantum_group_only_with_openssl_3_5(openssl: str, curves: str) -> None:
    tls = render_files(make_profile(proxy={"openssl_version": openssl}))[TLS]
    assert f"ssl_ecdh_curve {curves};" in tls


def test_tls_profiles_from_the_mozilla_table() -> None:
    intermediate = render_files(make_profile())[TLS]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in intermediate
    assert "ssl_ciphers " + ":".join(tls_policy.CONFIGURATIONS["intermediate"].ciphers_openssl) + ";" in intermediate
    assert "ssl_prefer_server_ciphers off;" in intermediate
    assert "ssl_session_cache shared:MozSSL:10m;" in intermediate and "ssl_session_timeout 1d;" in intermediate
    assert "dhparam" not in intermediate.replace("no dhparam", "")
    modern = render_files(make_profile(proxy={"tls": {"profile": "modern"}}))[TLS]
    assert "ssl_protocols TLSv1.3;" in modern and "ssl_ciphers" not in modern


def test_mozilla_table_is_consistent() -> None:
    intermediate = tls_policy.CONFIGURATIONS["intermediate"]
    assert tls_policy.GUIDELINES_VERSION == "6.0"
    assert intermediate.min_version == "1.2" and tls_policy.CONFIGURATIONS["modern"].min_version == "1.3"
    assert len(intermediate.ciphers_openssl) == len(intermediate.ciphers_iana) == 6
    for openssl, iana in zip(intermediate.ciphers_openssl, intermediate.ciphers_iana, strict=True):
        assert ("ECDSA" in openssl) == ("ECDSA" in iana) and ("CHACHA20" in openssl) == ("CHACHA20" in iana)
    assert all(g in tls_policy.GO_GROUP_NAMES for g in intermediate.tls_curves)


def test_ocsp_stapling_is_opt_in() -> None:
    assert "ssl_stapling" not in "".join(render_files(make_profile()).values())
    files = render_files(
        make_profile(
            proxy={"placement": "container", "publish_addresses": ["127.0.0.1"], "tls": {"ocsp_stapling": True}}
        )
    )
    # In a container Docker's DNS, http-level in nginx.conf, resolves the responder and the upstreams.
    assert "ssl_stapling on;" in files[TLS] and "resolver 127.0.0.11 " in files["proxy/nginx/nginx.conf"]
    assert "ssl_trusted_certificate" in files[SITE]


def test_port_80_only_redirects_with_308_and_serves_acme() -> None:
    site = render_files(make_profile(proxy={"https_port": 8443}))[SITE]
    port80 = site[site.index("server {") : site.index("server {", site.index("server {") + 1)]
    assert "return 308 https://tempo.test:8443$request_uri;" in port80
    assert "include tempo-gen/letsencrypt.conf;" in port80
    assert "proxy_pass" not in port80
    assert "return 308 https://tempo.test$request_uri;" in render_files(make_profile())[SITE]


def test_limits_and_routing_come_from_the_profile() -> None:
    files = render_files(
        make_profile(
            tempo={"media_max_mb": 7, "import_max_mb": 900, "import_timeout_minutes": 45},
            proxy={
                "body_max_kb": 256,
                "rate_limits": {
                    "login_per_minute": 3,
                    "login_burst": 2,
                    "api_per_second": 9,
                    "api_burst": 11,
                    "import_chunks_per_second": 13,
                },
            },
        )
    )
    site, api = files[SITE], files["proxy/nginx/tempo-gen/api.conf"]
    bulk = site[site.index("import/(?:bulk|export)") :]
    bulk = bulk[: bulk.index("}")]
    assert "client_max_body_size 900m;" in bulk and "proxy_request_buffering off;" in bulk
    assert "proxy_read_timeout 45m;" in bulk and "proxy_send_timeout 45m;" in bulk
    assert "client_max_body_size 7m;" in site
    assert "client_max_body_size 256k;" in files["proxy/nginx/nginx.conf"]
    assert "rate=3r/m" in site and "zone=tempo_login burst=2 nodelay" in site
    assert "rate=9r/s" in site and "limit_req" not in api, "each location sets its own limit"
    chunks = site[site.index("/chunks/") :]
    chunks = chunks[: chunks.index("}")]
    # One limit per location: chunks never count against the API's, and their burst is every chunk of a 900 MiB import.
    assert "rate=13r/s" in site and "limit_req zone=tempo_chunk burst=1800 nodelay;" in chunks
    assert "tempo_api" not in chunks and "client_max_body_size 1024k;" in chunks
    plain = site[site.index("location /api/ {") :]
    assert "limit_req zone=tempo_api burst=11 nodelay;" in plain[: plain.index("}")]
    assert "limit_req_status 429;" in site
    assert "proxy_pass http://tempo_api;" in api and "\nrewrite" not in api
    assert "rewrite ^/api(/.*)$ $1 break;" in plain[: plain.index("}")] and "rewrite ^/api(/.*)$ $1 break;" in bulk
    assert "proxy_set_header X-Forwarded-Proto https;" in files["proxy/nginx/tempo-gen/proxy.conf"]


def test_headers_default_and_options() -> None:
    headers = make_profile().proxy.security_headers()
    assert headers["X-XSS-Protection"] == "0"
    assert headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert headers["X-Frame-Options"] == "SAMEORIGIN" and "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in csp and "https://*.basemaps.cartocdn.com" in csp
    custom = make_profile(
        proxy={
            "hsts": {"preload": True},
            "headers": {
                "x_xss_protection": "1; mode=block",
                "frame_options": "DENY",
                "csp": {
                    "extra_sources": [
                        {"directive": "connect-src", "sources": ["https://sync.example.org"]},
                        {"directive": "manifest-src", "sources": ["'self'"]},
                    ]
                },
            },
        }
    ).proxy.security_headers()
    assert custom["X-XSS-Protection"] == "1; mode=block"
    assert custom["Strict-Transport-Security"].endswith("; includeSubDomains; preload")
    assert "frame-ancestors 'none'" in custom["Content-Security-Policy"]
    assert (
        "https://sync.example.org" in custom["Content-Security-Policy"]
        and "manifest-src 'self'" in custom["Content-Security-Policy"]
    )
    strict = make_profile(proxy={"headers": {"csp": {"override": "default-src 'self'; object-src 'none'"}}})
    assert strict.proxy.security_headers()["Content-Security-Policy"] == "default-src 'self'; object-src 'none'"
    security = render_files(make_profile())["proxy/nginx/tempo-gen/security.conf"]
    assert security.count(" always;") == len(headers) and 'add_header X-XSS-Protection "0" always;' in security


def test_server_tokens_off_and_upstream_identity_hidden() -> None:
    files = render_files(make_profile())
    assert "server_tokens off;" in files["proxy/nginx/nginx.conf"]
    proxy = files["proxy/nginx/tempo-gen/proxy.conf"]
    assert "proxy_hide_header X-Powered-By;" in proxy and "proxy_hide_header Server;" in proxy


# --- placement ----------------------------------------------------------------------------------------


def compose_doc(profile: Profile) -> dict[str, Any]:
    (file,) = compose.files_for(target_input_for(profile))
    doc: dict[str, Any] = yaml.safe_load(file.content)
    return doc


def test_container_placement_is_the_only_public_service_and_unprivileged() -> None:
    profile = make_profile(proxy={"placement": "container", "publish_addresses": ["192.0.2.7"]})
    services = compose_doc(profile)["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    proxy = services["proxy"]
    assert proxy["read_only"] is True and proxy["user"] == "101:101" and proxy["cap_drop"] == ["ALL"]
    assert proxy["ports"] == ["192.0.2.7:80:8080", "192.0.2.7:443:8443"]
    assert "./proxy/nginx:/etc/nginx:ro" in proxy["volumes"]
    # Temp files on the disk volume, not on a tmpfs.
    assert "proxy_body_temp:/var/cache/nginx" in proxy["volumes"]
    assert not any("/var/cache/nginx" in t for t in proxy["tmpfs"])
    # Only this site's pair and the challenge folder: nothing under /etc, no certbot account keys.
    assert "/var/lib/tempo-tls/tempo.test:/var/lib/tempo-tls/tempo.test:ro" in proxy["volumes"]
    assert "/var/www/_letsencrypt:/var/www/_letsencrypt:ro" in proxy["volumes"]
    assert not any(v.startswith("/etc") for v in proxy["volumes"])
    runtime = nginx.runtime_for(profile)
    assert runtime.temp_dir == "/var/cache/nginx" and runtime.pid.startswith("/tmp/")
    assert runtime.http_listen == ("8080",) and runtime.https_listen == ("8443",)
    health = f"http://{runtime.health_listen}/healthz"
    assert health in proxy["healthcheck"]["test"]
    assert f"listen {runtime.health_listen};" in render_files(profile)["proxy/nginx/nginx.conf"]


def test_host_placement_publishes_upstreams_on_loopback_only() -> None:
    profile = make_profile(proxy={"placement": "host", "publish_addresses": ["192.0.2.7", "2001:db8::7"]})
    services = compose_doc(profile)["services"]
    assert "proxy" not in services
    assert services["frontend"]["ports"] == ["127.0.0.1:3004:3000"] and services["api"]["ports"] == [
        "127.0.0.1:5001:5001"
    ]
    runtime = nginx.runtime_for(profile)
    assert (runtime.frontend, runtime.api) == ("127.0.0.1:3004", "127.0.0.1:5001")
    site = render_files(profile)[SITE]
    assert "listen 192.0.2.7:443 ssl http2;" not in site  # default version is 1.28: `http2 on;`
    assert "listen 192.0.2.7:443 ssl;" in site and "listen [2001:db8::7]:443 ssl;" in site


def test_certificate_files_are_mounted_read_only_in_the_container() -> None:
    profile = make_profile(
        proxy={
            "placement": "container",
            "publish_addresses": ["127.0.0.1"],
            "tls": {
                "certificate": {"source": "files", "cert_file": "/srv/tls/chain.pem", "key_file": "/srv/tls/key.pem"}
            },
        }
    )
    volumes = compose_doc(profile)["services"]["proxy"]["volumes"]
    assert "/srv/tls/chain.pem:/srv/tls/chain.pem:ro" in volumes and "/srv/tls/key.pem:/srv/tls/key.pem:ro" in volumes
    assert "ssl_certificate /srv/tls/chain.pem;" in render_files(profile)[SITE]


# --- refused values -----------------------------------------------------------------------------------


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "domain with a space": ({"domain": "tempo example.com"}, "domain"),
    "domain with ;": ({"domain": "tempo.example.com;"}, "domain"),
    "domain with a directive": ({"domain": "a.com; include /etc/passwd"}, "domain"),
    "header with a newline": (
        {"proxy": {"headers": {"permissions_policy": "camera=()\nadd_header X 1"}}},
        "permissions_policy",
    ),
    "header with a quote": (
        {"proxy": {"headers": {"permissions_policy": 'camera=()" always; return 200 "x'}}},
        "permissions_policy",
    ),
    "header with a variable": ({"proxy": {"headers": {"csp": {"override": "default-src $http_x"}}}}, "override"),
    "csp source with ;": (
        {
            "proxy": {
                "headers": {
                    "csp": {"extra_sources": [{"directive": "img-src", "sources": ["https://a.com; script-src *"]}]}
                }
            }
        },
        "extra_sources.0.sources.0",
    ),
    "csp source with a quote": ({"proxy": {"headers": {"csp": {"map_sources": ['https://a.com"']}}}}, "map_sources"),
    "unknown csp directive": (
        {"proxy": {"headers": {"csp": {"extra_sources": [{"directive": "script-src; x", "sources": ["'self'"]}]}}}},
        "extra_sources.0.directive",
    ),
    "negative media limit": ({"tempo": {"media_max_mb": -1}}, "media_max_mb"),
    "negative import limit": ({"tempo": {"import_max_mb": -500}}, "import_max_mb"),
    "zero body limit": ({"proxy": {"body_max_kb": 0}}, "body_max_kb"),
    "negative rate": ({"proxy": {"rate_limits": {"login_per_minute": -5}}}, "login_per_minute"),
    "negative burst": ({"proxy": {"rate_limits": {"api_burst": -1}}}, "api_burst"),
    "path with ;": (
        {"proxy": {"tls": {"certificate": {"source": "files", "cert_file": "/a;b", "key_file": "/k"}}}},
        "cert_file",
    ),
    "relative path": ({"proxy": {"tls": {"certificate": {"acme_webroot": "www"}}}}, "acme_webroot"),
    "path with ..": ({"proxy": {"tls": {"certificate": {"key_file": "/var/lib/../../root/key"}}}}, "key_file"),
    "files without paths": ({"proxy": {"tls": {"certificate": {"source": "files"}}}}, "certificate"),
    "email with a brace": ({"proxy": {"tls": {"certificate": {"acme_email": "a@b.com}"}}}}, "acme_email"),
    "nginx version with ;": ({"proxy": {"nginx_version": "1.22;"}}, "nginx_version"),
    "nginx too old": ({"proxy": {"nginx_version": "1.18"}}, "1.18"),
    "preload without subdomains": ({"proxy": {"hsts": {"preload": True, "include_subdomains": False}}}, "preload"),
    "ocsp on the host without resolver": (
        {"proxy": {"placement": "host", "tls": {"ocsp_stapling": True}}},
        "ocsp_resolvers",
    ),
    "unknown tls profile": ({"proxy": {"tls": {"profile": "old"}}}, "profile"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_values_are_refused_with_a_clear_error(tmp_path: Path, case: str) -> None:
    overlay, expected = BAD[case]
    message = refusal(tmp_path, "nginx", overlay)
    assert expected in message, message
    assert message.startswith("bad.yaml:"), message  # located in the file


def test_self_signed_only_in_development(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "prod",
                "domain": "tempo.example.com",
                "tempo": {"allow_unpinned": True},
                "proxy": {"placement": "host", "tls": {"certificate": {"source": "self-signed"}}},
                "firewall": {"enabled": False},
            }
        )
    )
    with pytest.raises(ProfileError) as error:
        load_profile(path, tmp_path)
    assert "proxy.tls.certificate.source: self-signed certificates are for environment: development only" in str(
        error.value
    )


@pytest.mark.parametrize("value", ['a"b', "a\\b", "$host", "a\nb", "{", "}"])
def test_quote_is_a_second_lock(value: str) -> None:
    with pytest.raises(RenderError):
        nginx_string(value)
    assert nginx_string("default-src 'self'; img-src data:") == "\"default-src 'self'; img-src data:\""


# --- certificate helper scripts -------------------------------------------------------------------------------


def test_scripts_are_valid_shell() -> None:
    for profile in (make_profile(), make_profile(proxy={"placement": "container", "publish_addresses": ["127.0.0.1"]})):
        for path, text in render_files(profile).items():
            if path.endswith(".sh"):
                assert subprocess.run(["sh", "-n"], input=text, text=True, timeout=120).returncode == 0, path


@needs_nginx
@pytest.mark.skipif(os.geteuid() != 0, reason="the script gives the key to root")
def test_self_signed_script_makes_a_pair_nginx_accepts(tmp_path: Path) -> None:
    profile = for_local_nginx(make_profile(proxy={"tls": {"certificate": {"source": "self-signed"}}}))
    proxy_runtime = runtime(profile, tmp_path)
    files = render_files(profile, proxy_runtime)
    script = tmp_path / "self-signed-cert.sh"
    script.write_text(files["proxy/self-signed-cert.sh"])
    subprocess.run(["sh", str(script)], check=True, capture_output=True, timeout=120)
    _, key_file = (Path(proxy_runtime.path(p)) for p in profile.proxy.tls.certificate.paths(profile.domain))
    assert oct(key_file.stat().st_mode & 0o777) == "0o400"
    assert (
        subprocess.run(["sh", str(script)], capture_output=True, timeout=120).returncode == 1
    )  # never replaces a pair
    conf = write_tree(profile, tmp_path, proxy_runtime)
    result = nginx_t(tmp_path, conf)
    assert result.returncode == 0, result.stderr


def test_a_container_proxy_is_built_with_its_temp_folder_owned_by_the_configured_uid() -> None:
    """The image's own /var/cache/nginx belongs to its default user (101): any other uid could not write
    its request-body temp files into the volume Docker seeds from it."""
    profile = make_profile(
        proxy={"placement": "container", "publish_addresses": ["127.0.0.1"]}, containers={"users": {"proxy": 2567}}
    )
    dockerfile = render_files(profile)["proxy/nginx.Dockerfile"]
    assert f"FROM {profile.proxy.image_ref()}\n" in dockerfile
    assert "chown 2567:2567 /var/cache/nginx" in dockerfile
    assert [line for line in dockerfile.splitlines() if line.startswith("USER ")] == ["USER 0:0", "USER 2567:2567"]
    assert "proxy/nginx.Dockerfile" not in render_files(make_profile())  # a host nginx is Debian's
