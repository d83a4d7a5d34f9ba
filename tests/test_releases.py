"""policy.releases: one capability table decides what each Tempo release gets, and what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support.project import VALID_PROFILE, RunCli
from support.proxy import dev_profile, refusal, target_input_for
from tempo_gen.policy.releases import NEWEST, RELEASES, SUPPORTED, release
from tempo_gen.reports.audit import weakenings
from tempo_gen.targets import compose, nginx, tempo_images, traefik

TARGETS = {"nginx": nginx, "traefik": traefik}


def _compose(**tempo: Any) -> dict[str, Any]:
    profile = dev_profile("nginx", tempo=tempo)
    (rendered,) = compose.files_for(target_input_for(profile))
    document: dict[str, Any] = yaml.safe_load(rendered.content)
    return document


def _api_health(version: str) -> str:
    files = tempo_images.files_for(target_input_for(dev_profile("nginx", tempo={"version": version})))
    return next(f.content for f in files if f.path.name == "api-healthcheck.sh")


def test_the_table_knows_every_release_once_and_supports_the_newest_by_default() -> None:
    known = [v for row in RELEASES for v in row.versions]
    assert len(known) == len(set(known))
    assert known[0] == "2.1.0" and known[-1] == NEWEST == "2.10.1"
    assert SUPPORTED[0] == "2.1.0" and SUPPORTED[-1] == NEWEST
    assert dev_profile("nginx").tempo.version == NEWEST
    assert [v for v in SUPPORTED if release(v).import_port] == known[: known.index("2.7.0")]


@pytest.mark.parametrize("version", ["2.1.0", "2.4.0", "2.6.0"])
@pytest.mark.parametrize("kind", ["nginx", "traefik"])
def test_a_release_whose_browser_posts_imports_to_port_5001_gets_the_import_listener(kind: str, version: str) -> None:
    profile = dev_profile(kind, tempo={"version": version})
    files = {str(f.path): f.content for f in TARGETS[kind].files_for(target_input_for(profile))}
    if kind == "nginx":
        site = files["proxy/nginx/sites-available/tempo.test.conf"]
        assert "set $tempo_public_port 5001;" in site and 'location ~ "^/workouts/import/(?:bulk|export)$"' in site
    else:
        assert "imports" in yaml.safe_load(files["proxy/traefik/traefik.yml"])["entryPoints"]
    newer = dev_profile(kind, tempo={"version": "2.7.0"})
    text = "".join(f.content for f in TARGETS[kind].files_for(target_input_for(newer)))
    assert "/workouts/import/(?:bulk|export)$" not in text.replace("/api/workouts/import/(?:bulk|export)$", "")


def test_an_unknown_release_is_refused_with_the_supported_list(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("tempo:\n", "tempo:\n  version: 2.11.0\n"))
    result = cli("validate")
    assert result.exit_code == 2
    assert "profiles/demo.yaml:4: tempo.version: Tempo 2.11.0 is not a release tempo-gen knows" in result.output
    assert ", ".join(SUPPORTED) in result.output


@pytest.mark.parametrize(
    ("version", "tempo", "field", "first"),
    [
        ("2.9.0", {"logging_profile": "debug"}, "tempo.logging_profile", "2.10.0"),
        ("2.7.0", {"carto_api_key": "abc"}, "tempo.carto_api_key", "2.8.0"),
    ],
)
def test_a_setting_the_release_ignores_is_refused_on_its_own_line(
    cli: RunCli, project: Path, version: str, tempo: dict[str, str], field: str, first: str
) -> None:
    (key, value), *_ = tempo.items()
    text = VALID_PROFILE.replace("tempo:\n", f"tempo:\n  version: {version}\n  {key}: {value}\n")
    (project / "profiles" / "demo.yaml").write_text(text)
    result = cli("validate")
    assert result.exit_code == 2
    assert f"profiles/demo.yaml:5: {field}: needs Tempo {first} or later; tempo.version is {version}" in result.output


def test_the_cookie_domain_must_cover_the_site(tmp_path: Path) -> None:
    message = refusal(tmp_path, "nginx", {"tempo": {"cookie_domain": "example.org"}})
    assert "tempo.cookie_domain" in message and "nor a parent of it" in message
    parent = dev_profile("nginx", domain="tempo.example.com", tempo={"cookie_domain": "example.com"})
    assert parent.tempo.cookie_domain == "example.com"


def test_the_api_reads_the_settings_of_its_release_and_never_a_ram_temp_folder() -> None:
    api = _compose(
        jwt={"remember_me_days": 60}, cookie_domain="tempo.test", carto_api_key="k-1", logging_profile="debug"
    )["services"]["api"]
    environment = api["environment"]
    assert environment["JWT__RememberMeExpirationDays"] == "60"
    assert environment["Cookie__Domain"] == "tempo.test"
    assert environment["CartoBasemaps__ApiKey"] == "k-1"
    assert environment["Tempo__Logging__Profile"] == "debug"
    assert environment["TEMPO_API_IMAGE"] == "ghcr.io/trevordavies095/tempo/api:v2.10.1"
    assert environment["TEMPO_FRONTEND_IMAGE"] == "ghcr.io/trevordavies095/tempo/frontend:v2.10.1"
    # Imports are unzipped whole into Path.GetTempPath(): TMPDIR is the disk volume, not the 64 MiB tmpfs.
    assert environment["TMPDIR"] == "/var/tmp/tempo"
    assert "api_uploads:/var/tmp/tempo" in api["volumes"]
    assert not any(mount.startswith("/var/tmp") for mount in api["tmpfs"])
    assert api["deploy"]["resources"]["limits"]["memory"] == "2g"

    older = _compose(version="2.7.0")["services"]["api"]["environment"]
    assert not {"TEMPO_API_IMAGE", "Tempo__Logging__Profile", "CartoBasemaps__ApiKey"} & set(older)
    assert older["TMPDIR"] == "/var/tmp/tempo"


def test_health_checks_follow_the_release() -> None:
    assert "http://127.0.0.1:5001/ready" in _api_health("2.10.1")
    assert "http://127.0.0.1:5001/health" in _api_health("2.9.0")
    frontend_2_10 = " ".join(_compose()["services"]["frontend"]["healthcheck"]["test"])
    frontend_2_7 = " ".join(_compose(version="2.7.0")["services"]["frontend"]["healthcheck"]["test"])
    assert "127.0.0.1:3000/health'" in frontend_2_10 and "r.ok" in frontend_2_10
    assert "127.0.0.1:3000/'" in frontend_2_7


def test_audit_reports_the_settings_that_widen_exposure() -> None:
    widened = {"cookie_domain": "tempo.test", "carto_api_key": "k", "logging_profile": "debug"}
    found = {f.field for f in weakenings(dev_profile("nginx", tempo=widened))}
    assert {"tempo.cookie_domain", "tempo.carto_api_key", "tempo.logging_profile"} <= found
    assert not {"tempo.logging_profile"} & {f.field for f in weakenings(dev_profile("nginx"))}


@pytest.mark.parametrize(
    ("version", "password", "expected"),
    [
        ("2.10.1", "short", "Tempo needs a password of 16 to 64 characters (got 5)"),
        ("2.10.1", "x" * 65, "Tempo needs a password of 16 to 64 characters (got 65)"),
        ("2.9.0", "a-long-enough-password", "no reset-password command (it came in 2.10.0)"),
    ],
)
def test_reset_password_is_refused_before_anything_runs(
    cli: RunCli, project: Path, version: str, password: str, expected: str
) -> None:
    path = project / "profiles" / "demo.yaml"
    path.write_text(VALID_PROFILE.replace("tempo:\n", f"tempo:\n  version: {version}\n"))
    # No engine is asked: the policy and the release's commands are checked first.
    result = cli(
        "admin",
        "reset-password",
        str(path),
        env={"DOCKER_HOST": "unix:///nonexistent"},
        input=f"{password}\n",
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output and password not in result.output


def test_rotation_names_what_the_release_loses() -> None:
    from tempo_gen.ops.running.tempo_api import restart_effects

    newest, older = restart_effects(release("2.10.1"), "jwt"), restart_effects(release("2.9.0"), "jwt")
    assert any("intervals.icu" in effect for effect in newest)
    assert not any("intervals.icu" in effect for effect in older)
    assert all(any("session" in e for e in effects) for effects in (newest, older))
    assert restart_effects(release("2.10.1"), "db") == ["the API restarts: an import in progress would be interrupted"]
