"""Every malformed profile gets one located message per problem and exit status 2, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.project import VALID_PROFILE, RunCli

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)


def with_(extra: str) -> str:
    return VALID_PROFILE + extra


# (case id, profile text or bytes, expected line or None, fragments the message must contain)
CASES = [
    (
        "wrong-type",
        with_("containers:\n  users:\n    api: lots\n"),
        11,
        ["containers.users.api", "valid integer", "'lots'"],
    ),
    ("unknown-top-key", VALID_PROFILE.replace("name:", "nmae:"), 1, ["unknown field 'nmae'", "did you mean 'name'"]),
    (
        "unknown-nested-key",
        VALID_PROFILE.replace("  allow_unpinned", "  alow_unpinned"),
        4,
        ["tempo.alow_unpinned", "did you mean 'allow_unpinned'"],
    ),
    ("secret-in-profile", with_("secrets:\n  jwt_key: hunter2hunter2\n"), 10, ["secret values never go in a profile"]),
    (
        "domain-with-space",
        VALID_PROFILE.replace("tempo.example.com", "'tempo example.com'"),
        2,
        ["domain", "not a valid domain"],
    ),
    (
        "domain-with-semicolon",
        VALID_PROFILE.replace("tempo.example.com", "'tempo.example.com;return 200'"),
        2,
        ["domain", "not a valid domain"],
    ),
    ("domain-uppercase", VALID_PROFILE.replace("tempo.example.com", "Tempo.Example.com"), 2, ["not a valid domain"]),
    ("domain-wildcard", VALID_PROFILE.replace("tempo.example.com", "'*.example.com'"), 2, ["not a valid domain"]),
    ("domain-single-label", VALID_PROFILE.replace("tempo.example.com", "tempo"), 2, ["not a valid domain"]),
    ("bad-ip-address", VALID_PROFILE.replace("203.0.113.10", "300.1.1.1"), 6, ["proxy.publish_addresses.0"]),
    (
        "wildcard-cors",
        with_("  cors_origins: ['*']\n").replace(
            "proxy:\n  publish_addresses: [203.0.113.10]\n  cors", "proxy:\n  publish_addresses: [203.0.113.10]\n  cors"
        ),
        None,
        [],
    ),
    (
        "plain-http-cors",
        VALID_PROFILE.replace(
            "  allow_unpinned: true\n", "  allow_unpinned: true\n  cors_origins: ['http://tempo.example.com']\n"
        ),
        5,
        ["tempo.cors_origins.0", "plain http"],
    ),
    (
        "cors-with-path",
        VALID_PROFILE.replace(
            "  allow_unpinned: true\n", "  allow_unpinned: true\n  cors_origins: ['https://tempo.example.com/app']\n"
        ),
        5,
        ["not an origin"],
    ),
    (
        "placeholder-secret-value",
        VALID_PROFILE.replace(
            "  allow_unpinned: true\n",
            "  allow_unpinned: true\n  jwt:\n    issuer: CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE\n",
        ),
        6,
        ["tempo.jwt.issuer", "placeholder"],
    ),
    (
        "unpinned-image",
        VALID_PROFILE.replace("  allow_unpinned: true\n", "  version: 2.10.1\n"),
        3,
        ["tempo.images", "not pinned by sha256 digest", "tempo-gen lock"],
    ),
    (
        "bad-image-ref",
        VALID_PROFILE.replace(
            "  allow_unpinned: true\n", "  allow_unpinned: true\n  images:\n    postgres: 'Postgres 16'\n"
        ),
        6,
        ["tempo.images.postgres", "not a valid image reference"],
    ),
    ("invalid-yaml", VALID_PROFILE + "proxy: [unclosed\n", 10, ["invalid YAML"]),
    ("empty-file", "", None, ["file is empty"]),
    ("only-comments", "# nothing here\n", None, ["file is empty"]),
    ("top-level-list", "- name: demo\n", 1, ["top level must be a mapping"]),
    ("top-level-scalar", "just a string\n", 1, ["top level must be a mapping"]),
    ("duplicate-key", VALID_PROFILE + "domain: other.example.com\n", 9, ["duplicate key 'domain'", "line 2"]),
    ("tabs", "name: demo\ntempo:\n\tversion: 2.1.0\n", 3, ["tabs"]),
    ("billion-laughs", BILLION_LAUGHS, 1, ["anchors and aliases are not allowed"]),
    ("deep-flow-nesting", "name: demo\nx: " + "[" * 50_000 + "]" * 50_000 + "\n", 2, ["nested more than 32 levels"]),
    ("deep-block-nesting", "name: demo\nx:\n" + "".join("  " * i + "k:\n" for i in range(1, 40)), 33, ["nested"]),
    ("ten-megabytes", "name: demo\n" + "# padding\n" * 1_000_000, None, ["at most 1048576 bytes"]),
    ("binary-garbage", bytes(range(256)) * 4, None, ["binary"]),
    ("invalid-utf8", b"name: demo\ndomain: \xff\xfe.example.com\n", 2, ["not valid UTF-8"]),
    ("missing-name", VALID_PROFILE.replace("name: demo\n", ""), None, ["name", "required field is missing"]),
    (
        "missing-domain",
        VALID_PROFILE.replace("domain: tempo.example.com\n", ""),
        None,
        ["domain", "required field is missing"],
    ),
    (
        "unknown-environment",
        with_("environment: staging\n"),
        9,
        ["environment", "'production' or 'development'", "'staging'"],
    ),
    ("unknown-proxy", VALID_PROFILE.replace("proxy:\n", "proxy:\n  kind: apache\n"), 6, ["proxy.kind", "'apache'"]),
    (
        "negative-limit",
        VALID_PROFILE.replace("  allow_unpinned: true\n", "  allow_unpinned: true\n  media_max_mb: -5\n"),
        5,
        ["tempo.media_max_mb", "greater than or equal to 1"],
    ),
    (
        "memory-under-dockers-floor",
        VALID_PROFILE + "containers:\n  limits:\n    proxy: {memory: 4m, cpus: 0.5, pids: 100}\n",
        11,
        ["containers.limits.proxy.memory", "Docker refuses a memory limit under 6m; got 4m"],
    ),
    (
        "root-uid",
        with_("containers:\n  users:\n    api: 0\n"),
        11,
        ["containers.users.api", "greater than or equal to 1"],
    ),
    (
        "bad-memory-size",
        with_("containers:\n  limits:\n    api: {memory: lots, cpus: 1, pids: 100}\n"),
        11,
        ["containers.limits.api.memory", "not a size"],
    ),
    (
        "bad-version",
        VALID_PROFILE.replace("  allow_unpinned: true\n", "  allow_unpinned: true\n  version: latest\n"),
        5,
        ["tempo.version", "not a Tempo release"],
    ),
    ("multiple-documents", VALID_PROFILE + "---\nname: other\n", 9, ["invalid YAML", "single document"]),
    ("non-string-key", with_("1: one\n"), 9, ["keys must be plain strings"]),
    ("merge-key", with_("tempo2:\n  <<: {a: 1}\n"), 10, ["merge keys"]),
    (
        "undefined-variable",
        VALID_PROFILE.replace("tempo.example.com", "${TEMPO_TEST_UNSET_DOMAIN}"),
        2,
        ["domain", "${TEMPO_TEST_UNSET_DOMAIN} is not set"],
    ),
    (
        "no-publish-address",
        VALID_PROFILE.replace("proxy:\n  publish_addresses: [203.0.113.10]\n", ""),
        None,
        ["proxy.publish_addresses", "required for a production proxy container"],
    ),
    (
        "loopback-in-production",
        VALID_PROFILE.replace("203.0.113.10", "127.0.0.1"),
        6,
        ["proxy.publish_addresses.0", "loopback"],
    ),
    ("extends-missing", "extends: _nowhere.yaml\n" + VALID_PROFILE, 1, ["extends", "not found"]),
]
# The wildcard-CORS case needs cors_origins under tempo:, not under proxy:.
CASES[10] = (
    "wildcard-cors",
    VALID_PROFILE.replace("  allow_unpinned: true\n", "  allow_unpinned: true\n  cors_origins: ['*']\n"),
    5,
    ["tempo.cors_origins.0", "wildcard"],
)


@pytest.mark.parametrize("case_id, content, line, fragments", CASES, ids=[c[0] for c in CASES])
def test_malformed_profile_is_refused_with_a_located_message(
    cli: RunCli, project: Path, case_id: str, content: str | bytes, line: int, fragments: list[str]
) -> None:
    path = project / "profiles" / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    result = cli("validate", str(path))
    assert time.monotonic() - started < 10, "malformed input must be refused quickly"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    where = f"profiles/bad.yaml:{line}:" if line else "profiles/bad.yaml"
    assert where in result.output, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_every_problem_is_reported_not_just_the_first(cli: RunCli, project: Path) -> None:
    path = project / "profiles" / "bad.yaml"
    path.write_text(
        "name: demo\ndomain: 'bad domain'\ntempo:\n  media_max_mb: 0\n  nope: 1\n"
        "proxy:\n  publish_addresses: [203.0.113.10]\n"
    )
    result = cli("validate", str(path))
    assert result.exit_code == 2
    assert "profiles/bad.yaml:2: domain:" in result.output
    assert "profiles/bad.yaml:4: tempo.media_max_mb:" in result.output
    assert "profiles/bad.yaml:5: tempo.nope:" in result.output
    assert "3 problem(s) found" in result.output


def test_extends_cycle_is_refused(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "_a.yaml").write_text("extends: _b.yaml\n")
    (project / "profiles" / "_b.yaml").write_text("extends: _a.yaml\n")
    result = cli("validate", str(project / "profiles" / "_a.yaml"))
    assert result.exit_code == 2
    assert "a cycle" in result.output


def test_a_failed_render_writes_nothing(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "bad.yaml").write_text("name: demo\ndomain: 'x y'\n")
    result = cli("render")
    assert result.exit_code == 2
    assert not (project / "out").exists()
