"""Values that would change the structure of a rendered file are refused with a located message and exit 2.

Each case fails on a validator that used `re.match` with `$` (which accepts a
final newline) or that let control characters through.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result

from support.project import VALID_PROFILE, RunCli

# (case, text to append, field the message names, fragment)
VALUE_CASES = [
    (
        "interface ending in a newline",
        '  external_interfaces: ["eth0\\n"]\n',
        "firewall.external_interfaces.0",
        "control",
    ),
    ("rate ending in a newline", '  ssh_rate: "10/minute\\n"\n', "firewall.ssh_rate", "control"),
    ("cidr with a carriage return", '  web_cidrs: ["10.0.0.0/8\\r"]\n', "firewall.web_cidrs.0", "control"),
    ("key with a control character", '  "ssh\\u2028port": 22\n', "firewall", "control"),
    ("NEL in a value", '  ssh_rate: "10/minute\\x85"\n', "firewall.ssh_rate", "control"),
]

ORIGIN_CASES = [
    "https://a.example.com,https://evil.example",
    "https://a.example.com/",
    "https://a.example.com:99999",
    "https://a.example.com/path",
    "https://${HOST}",
    "https://user@a.example.com",
    "ftp://a.example.com",
    "https://[::g]",
]


def write(project: Path, text: str, name: str = "demo.yaml") -> Path:
    path = project / "profiles" / name
    path.write_text(text)
    return path


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.parametrize(("case", "extra", "field", "fragment"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_control_characters_are_refused_in_every_field(
    project: Path, cli: RunCli, case: str, extra: str, field: str, fragment: str
) -> None:
    path = write(project, VALID_PROFILE + extra)
    assert_refused(cli("validate", str(path)), "profiles/demo.yaml:", field, fragment)


@pytest.mark.parametrize("origin", ORIGIN_CASES)
def test_cors_origins_are_exactly_scheme_host_port(project: Path, cli: RunCli, origin: str) -> None:
    text = VALID_PROFILE.replace("  allow_unpinned: true\n", f"  allow_unpinned: true\n  cors_origins: ['{origin}']\n")
    assert_refused(cli("validate", str(write(project, text))), "tempo.cors_origins.0")


@pytest.mark.parametrize("origin", ["https://a.example.com", "https://a.example.com:8443", "https://[2001:db8::1]"])
def test_well_formed_origins_are_accepted(project: Path, cli: RunCli, origin: str) -> None:
    text = VALID_PROFILE.replace("  allow_unpinned: true\n", f"  allow_unpinned: true\n  cors_origins: ['{origin}']\n")
    assert cli("validate", str(write(project, text))).exit_code == 0


def test_env_values_with_control_characters_are_refused(project: Path, cli: RunCli) -> None:
    (project / ".env").write_text('RATE="10/minute\\n"\n')
    path = write(project, VALID_PROFILE.replace("firewall:\n", "firewall:\n  ssh_rate: ${RATE}\n"))
    assert_refused(cli("validate", str(path)), "firewall.ssh_rate", "control")


@pytest.mark.parametrize(
    "name", ["demo\n.yaml", "demo\r.yaml", "de\\mo.yaml", "demo\u2028.yaml", "{{.yaml", "{%x.yaml", "-->.yaml"]
)
def test_a_profile_file_name_cannot_reach_a_header(project: Path, cli: RunCli, name: str) -> None:
    """A newline in the name would end the header comment of every generated file, scripts included;
    `-->` would end Markdown's, a brace would put template syntax into it. All are refused before
    anything renders."""
    path = write(project, VALID_PROFILE, name)
    result = cli("render", str(path))
    assert_refused(result, "file name")
    assert not (project / "out").exists()


def test_an_extends_value_with_a_newline_is_refused(project: Path, cli: RunCli) -> None:
    write(project, VALID_PROFILE, "_base.yaml")
    path = write(project, 'extends: "_base.yaml\\n"\nname: demo\n')
    assert_refused(cli("validate", str(path)), "extends")


@pytest.mark.parametrize(
    "folder",
    ["secrets/a b", "secrets/*", "secrets/#x", "sec!rets", "a\\b", "../victim", "secrets/../x", "/", "/.", "/.."],
)
def test_secrets_dir_is_a_plain_path(project: Path, cli: RunCli, folder: str) -> None:
    path = write(project, VALID_PROFILE + f"secrets:\n  dir: '{folder}'\n")
    assert_refused(cli("validate", str(path)), "secrets.dir")


def test_out_with_a_control_character_is_refused(project: Path, cli: RunCli) -> None:
    path = write(project, VALID_PROFILE)
    assert_refused(cli("render", str(path), "--out", str(project / "o\nut")), "--out")
    assert not any(p.name.startswith("o") for p in project.iterdir())


@pytest.mark.parametrize(
    "field, overlay",
    [
        ("proxy.publish_addresses.0", "proxy:\n  publish_addresses: ['::1%x;location ~ . { return 200 pwned; }#']\n"),
        (
            "proxy.tls.ocsp_resolvers.0",
            "proxy:\n  publish_addresses: [203.0.113.10]\n  tls:\n    ocsp_stapling: true\n"
            "    ocsp_resolvers: ['2001:db8::53%y; error_log x']\n",
        ),
    ],
)
def test_an_ipv6_zone_index_never_reaches_nginx(cli: RunCli, project: Path, field: str, overlay: str) -> None:
    """Python accepts any text after '%' in an IPv6 address; nginx would read it as new directives."""
    write(project, VALID_PROFILE.replace("proxy:\n  publish_addresses: [203.0.113.10]\n", overlay))
    assert_refused(cli("render"), field, "zone index")
    assert not (project / "out").exists()


def test_csp_source_lists_are_bounded(cli: RunCli, project: Path) -> None:
    """25,000 sources rendered for seconds into one response header no browser would accept."""
    sources = ", ".join(f"https://h{i}.example.org" for i in range(33))
    extra = f"  headers:\n    csp:\n      extra_sources: [{{directive: connect-src, sources: [{sources}]}}]\n"
    write(project, VALID_PROFILE.replace("proxy:\n", "proxy:\n" + extra))
    assert_refused(cli("validate"), "proxy.headers.csp.extra_sources.0.sources", "at most 32")
