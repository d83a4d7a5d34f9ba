"""`tempo-gen deploy` and `upgrade` on the real engine: only what changed is recreated, and every failure
(a proxy that cannot start, a release whose API never becomes ready) rolls back to a serving site with its data.

One Compose stack for the module, published on loopback (no world namespace); the tests run in file order,
each starting from the state the one before left.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import trustme

from support.engine import compose
from support.project import run_tempo_gen, snapshot
from support.proxy import free_port
from support.tls_client import https_request, site_certificate
from tempo_gen.ops.backup.layout import backup_names, read_index
from tempo_gen.policy.releases import IMPORT_CHUNK_BYTES, NEWEST, SUPPORTED

from .images.build import NEVER_READY_TAG, ROLE_TAGS, built_image, release_images
from .test_stack import profile_text

pytestmark = pytest.mark.e2e

DOMAIN = "tempo.test"
OLDEST = SUPPORTED[0]
USER, PASSWORD = "runner", "correct horse battery staple"
LOGIN = {"username": USER, "password": PASSWORD}
MIGRATION = "_Release_"  # after the stand-in's 14-digit prefix
PROXY_UID = 101


@dataclass
class Site:
    root: Path
    name: str
    repo: str  # this module's own image names, so `upgrade` can move their tags like a registry would
    client: docker.DockerClient
    ca: trustme.CA
    http_port: int
    https_port: int
    tls: Path
    recipient: str  # the age public key of the pre-deploy backups

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def profile(self) -> Path:
        return self.root / "profiles" / f"{self.name}.yaml"

    @property
    def bundle(self) -> Path:
        return self.root / "out" / self.name

    def tempo_gen(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_tempo_gen(self.root, *args, timeout=900)

    def https(self, method: str, path: str, body: dict[str, str] | None = None) -> int:
        status, _, _ = https_request("127.0.0.1", self.https_port, DOMAIN, self.ca, method, path, json_body=body)
        return status

    def container_ids(self) -> dict[str, str]:
        return {
            c.labels["com.docker.compose.service"]: c.id or ""
            for c in self.client.containers.list(filters={"label": f"com.docker.compose.project={self.name}"})
        }

    def psql(self, query: str) -> str:
        postgres = self.client.containers.list(
            filters={"label": [f"com.docker.compose.project={self.name}", "com.docker.compose.service=postgres"]}
        )[0]
        # The test reads the password inside the container (tempo-gen itself never needs it to deploy).
        script = 'PGPASSWORD="$(cat /run/secrets/db_password)" exec psql -h 127.0.0.1 -U tempo -d tempo -tAc "$0"'
        code, out = postgres.exec_run(["sh", "-c", script, query])
        assert isinstance(out, bytes), "not streamed"
        return out.decode().strip() if code == 0 else f"error: {out.decode()}"

    def tag(self, source: str, version: str, role: str = "api") -> None:
        self.client.images.get(source).tag(f"{self.repo}/{role}", f"v{version}")


def _profile(site: Site, version: str, cert_file: str = "fullchain.pem", frontend_memory: str = "512m") -> str:
    """test_stack's profile, published on loopback, with this module's image names and a frontend limit."""
    images = {role: built_image(ROLE_TAGS[role]) for role in ("postgres", "nginx")}
    text = profile_text(
        site.name,
        "nginx",
        images,
        "127.0.0.1",
        site.http_port,
        site.https_port,
        site.tls,
        version=version,
        logs=site.root / "logs",
    )
    for role, image in release_images(version).items():
        text = text.replace(f"{role}: {image}\n", f"{role}: {site.repo}/{role}:v{version}\n")
    text = text.replace("/fullchain.pem", f"/{cert_file}")
    return text + (
        f"containers:\n  limits:\n    frontend: {{memory: {frontend_memory}, cpus: 0.5, pids: 100}}\n"
        f"backup:\n  dir: {site.backups}\n  recipients: [{site.recipient}]\n"
    )


@pytest.fixture(scope="module")
def site(
    docker_client: docker.DockerClient,
    standin_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    age_keys: dict[str, tuple[Path, str]],
) -> Iterator[Site]:
    if os.geteuid() != 0:
        pytest.skip("the deploy tests need root (secret files owned by the services' uids)")
    root = tmp_path_factory.mktemp("deploy")
    tag = uuid.uuid4().hex[:8]
    ca = trustme.CA()
    tls = root / "tls"
    site_certificate(ca, DOMAIN, tls, PROXY_UID)
    (root / "logs").mkdir(mode=0o750)
    os.chown(root / "logs", PROXY_UID, PROXY_UID)
    (root / "profiles").mkdir()
    site = Site(
        root,
        f"deploy-{tag}",
        f"deploy-e2e-{tag}",
        docker_client,
        ca,
        free_port(),
        free_port(),
        tls,
        age_keys["right"][1],
    )
    for version in (OLDEST, NEWEST):
        for role, image in release_images(version).items():
            site.tag(image, version, role)
    site.tag(built_image(NEVER_READY_TAG), NEWEST)  # the next release's API, broken: replaced before the good one
    site.profile.write_text(_profile(site, OLDEST))
    for command in (("secrets", "init"), ("render",)):
        result = site.tempo_gen(*command)
        assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield site
    finally:
        logs = compose(site.bundle, "logs", "--no-color", project_name=site.name, timeout=60, check=False)
        (root / "compose.log").write_text(logs.stdout + logs.stderr)
        for bundle in (site.bundle, root / ".tempo-gen" / site.name):
            if (bundle / "compose.yaml").exists():
                compose(bundle, "down", "-v", "--rmi", "local", project_name=site.name, timeout=300, check=False)
        for ref in (f"{site.repo}/{role}:v{v}" for role in ("api", "frontend") for v in (OLDEST, NEWEST)):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(ref, noprune=True)


def test_first_deploy_brings_the_site_up_and_records_it(site: Site) -> None:
    result = site.tempo_gen("deploy", str(site.profile))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for api to report healthy" in result.stdout
    assert "summary: smoke test passed" in result.stdout
    assert site.https("POST", "/api/auth/register", LOGIN) == 200
    assert site.https("POST", "/api/auth/login", LOGIN) == 200
    state = site.root / ".tempo-gen"
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert (state / site.name / "DEPLOYED.json").is_file()


def test_a_new_limit_recreates_only_that_service(site: Site) -> None:
    before = site.container_ids()
    site.profile.write_text(_profile(site, OLDEST, frontend_memory="384m"))
    assert site.tempo_gen("render").returncode == 0
    result = site.tempo_gen("deploy", str(site.profile))
    assert result.returncode == 0, result.stdout + result.stderr
    after = site.container_ids()
    assert [s for s in sorted(after) if after[s] != before[s]] == ["frontend"]
    assert "summary: recreated: frontend; unchanged: api, postgres, proxy" in result.stdout
    assert site.https("GET", "/") == 200


def test_a_proxy_that_cannot_start_rolls_back_to_the_previous_config(site: Site) -> None:
    site.profile.write_text(_profile(site, OLDEST, cert_file="missing.pem", frontend_memory="384m"))
    assert site.tempo_gen("render").returncode == 0
    result = site.tempo_gen("deploy", str(site.profile))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "proxy did not become healthy" in result.stdout
    assert "rolled back to the deploy of" in result.stderr
    assert site.https("GET", "/") == 200
    assert site.https("POST", "/api/auth/login", LOGIN) == 200
    # Back to the committed profile for what follows.
    site.profile.write_text(_profile(site, OLDEST, frontend_memory="384m"))
    assert site.tempo_gen("render").returncode == 0


def test_an_upgrade_whose_api_never_becomes_ready_rolls_back_release_and_database(site: Site) -> None:
    profile, out = site.profile.read_bytes(), snapshot(site.bundle)
    api_before = site.container_ids()["api"]
    result = site.tempo_gen("upgrade", str(site.profile), "--to", NEWEST)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "database rollback point" in output and "putting the database copy back" in output, output
    assert "rolled back to the deploy of" in result.stderr, output
    assert site.profile.read_bytes() == profile and snapshot(site.bundle) == out
    assert site.container_ids()["api"] != api_before  # recreated from the previous image
    migrations = site.psql('SELECT "MigrationId" FROM "__EFMigrationsHistory" ORDER BY 1')
    assert migrations.endswith(MIGRATION + OLDEST.replace(".", "_")) and "\n" not in migrations, migrations
    column = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'never_ready_marker'"
    assert site.psql(column) == "0"
    assert site.psql("SELECT username FROM users") == USER
    assert site.https("POST", "/api/auth/login", LOGIN) == 200
    assert _pre_deploy_backups(site) == [OLDEST]  # encrypted, kept, recorded as the release that wrote it


def _pre_deploy_backups(site: Site) -> list[str]:
    indexes = [read_index(site.backups, name) for name in backup_names(site.backups)]
    return [index.tempo_version for index in indexes if index.kind == "pre-deploy"]


def test_an_upgrade_to_a_healthy_release_succeeds(site: Site) -> None:
    site.tag(release_images(NEWEST)["api"], NEWEST)  # the release's API is fixed upstream
    result = site.tempo_gen("upgrade", str(site.profile), "--to", NEWEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"summary: deployed {site.name}: Tempo {OLDEST} -> {NEWEST}" in result.stdout
    assert f"version: {NEWEST}" in site.profile.read_text()
    assert site.tempo_gen("render", "--check").returncode == 0
    assert site.psql(f'SELECT count(*) FROM "__EFMigrationsHistory" WHERE "MigrationId" LIKE \'%{MIGRATION}%\'') == "2"
    assert site.https("GET", "/api/ready") == 200
    assert site.https("POST", "/api/auth/login", LOGIN) == 200
    assert _pre_deploy_backups(site) == [OLDEST, OLDEST]


def test_deploy_refuses_while_an_import_is_in_progress(site: Site) -> None:
    status, headers, _ = https_request(
        "127.0.0.1", site.https_port, DOMAIN, site.ca, "POST", "/api/auth/login", json_body=LOGIN
    )
    assert status == 200
    cookie = headers["set-cookie"].split(";", 1)[0]

    def call(method: str, path: str, **kw: Any) -> tuple[int, str]:
        status, _, body = https_request(
            "127.0.0.1", site.https_port, DOMAIN, site.ca, method, path, cookie=cookie, **kw
        )
        return status, str(body)

    job = {"kind": "strava_bulk", "filename": "export.zip", "byteSize": IMPORT_CHUNK_BYTES + 1}
    status, body = call("POST", "/api/workouts/import/jobs", json_body=job)
    assert status == 201, body
    job_id = json.loads(body)["id"]
    chunk = f"/api/workouts/import/jobs/{job_id}/chunks/0?total=2"
    assert call("PUT", chunk, body=b"x" * IMPORT_CHUNK_BYTES, content_type="application/octet-stream")[0] == 200
    before = site.container_ids()
    result = site.tempo_gen("deploy", str(site.profile))
    assert result.returncode == 1 and "bulk import in progress" in result.stderr, result.stdout + result.stderr
    assert site.container_ids() == before
    assert call("DELETE", f"/api/workouts/import/jobs/{job_id}")[0] == 200


def test_audit_live_reports_the_ongoing_checks_of_the_upgraded_site(site: Site) -> None:
    result = site.tempo_gen("audit", "--live", str(site.profile))
    lines = [line.strip() for line in result.stdout.splitlines()]
    for secret in ("db_password", "jwt_key"):
        assert f"ok        secret {secret}: 0 days old (at most 180)" in lines, result.stdout
    for service in ("api", "frontend", "postgres", "proxy"):
        assert any(line.startswith(f"ok        image {service}: runs a build FROM") for line in lines), result.stdout
    assert f"ok        release: Tempo {NEWEST} is the newest release tempo-gen supports" in lines
