"""The ACME directory and CA bundle profile fields: validated, and carried to certbot's hook and Traefik's resolver."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.project import VALID_PROFILE, RunCli
from support.proxy import refusal, target_input_for
from support.traefik import make_profile as traefik_profile
from support.traefik import render_files as traefik_files
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.models.tls import LETS_ENCRYPT
from tempo_gen.targets import compose

PEBBLE = "https://127.0.0.1:14000/dir"


def test_the_directory_defaults_to_lets_encrypt_production() -> None:
    profile = traefik_profile()
    assert profile.proxy.tls.certificate.acme_directory == LETS_ENCRYPT
    assert profile.proxy.tls.certificate.acme_ca_bundle is None


@pytest.mark.parametrize(
    "value",
    [
        "ftp://acme.example.org/dir",
        "https://acme.example.org/dir?x=1",
        'https://acme.example.org/"dir',
        "https://acme.example.org/dir\nfoo: bar",
        "https://acme example.org/dir",
        "https://acme.example.org:99999/dir",
        "https://",
    ],
)
def test_unusable_directory_urls_are_refused(tmp_path: Path, value: str) -> None:
    message = refusal(tmp_path, "traefik", {"proxy": {"tls": {"certificate": {"acme_directory": value}}}})
    assert "acme_directory" in message


def test_a_relative_ca_bundle_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, "nginx", {"proxy": {"tls": {"certificate": {"acme_ca_bundle": "ca.pem"}}}})
    assert "acme_ca_bundle" in message


def test_plain_http_directory_only_in_development(cli: RunCli, project: Path) -> None:
    text = VALID_PROFILE.replace(
        "  publish_addresses: [203.0.113.10]\n",
        "  publish_addresses: [203.0.113.10]\n  tls:\n    certificate:\n      acme_directory: http://127.0.0.1:14000/dir\n",
    )
    (project / "profiles" / "demo.yaml").write_text(text)
    result = cli("validate")
    assert result.exit_code == 2, result.output
    assert "profiles/demo.yaml:" in result.output and "proxy.tls.certificate.acme_directory" in result.output
    assert "must be https" in result.output
    (project / "profiles" / "demo.yaml").write_text(text + "environment: development\n")
    assert cli("validate").exit_code == 0


def test_traefik_resolver_gets_the_directory_and_the_bundle() -> None:
    profile = traefik_profile(
        proxy={
            "placement": "container",
            "publish_addresses": ["127.0.0.1"],
            "tls": {"certificate": {"acme_directory": PEBBLE, "acme_ca_bundle": "/etc/tempo/pebble.pem"}},
        }
    )
    static = yaml.safe_load(traefik_files(profile)["proxy/traefik/traefik.yml"])
    assert static["certificatesResolvers"]["acme"]["acme"]["caServer"] == PEBBLE
    files: list[RenderedFile] = compose.files_for(target_input_for(profile))
    service = yaml.safe_load(files[0].content)["services"]["proxy"]
    assert service["environment"] == {"LEGO_CA_CERTIFICATES": "/etc/tempo/pebble.pem"}
    assert "/etc/tempo/pebble.pem:/etc/tempo/pebble.pem:ro" in service["volumes"]
    readme = traefik_files(profile)["proxy/README.md"]
    assert PEBBLE in readme and "LEGO_CA_CERTIFICATES" in readme


def test_without_a_bundle_traefik_has_no_environment() -> None:
    profile = traefik_profile(proxy={"placement": "container", "publish_addresses": ["127.0.0.1"]})
    service = yaml.safe_load(compose.files_for(target_input_for(profile))[0].content)["services"]["proxy"]
    assert "environment" not in service
