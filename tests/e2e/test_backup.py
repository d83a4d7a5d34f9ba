"""Backups, restore and the drill on the real engine: one Compose stack of the newest release, its proxy on
loopback (no world namespace needed), real age keys.

Order matters (file order, one stack): the round trip leaves a good backup the later tests use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import trustme
from docker.models.containers import Container

from support.engine import compose, service_container
from support.project import RenderedProject, run_tempo_gen, tempo_gen_env
from support.proxy import free_port
from support.tempo_client import Origin, TempoClient
from support.tls_client import site_certificate
from support.wait import wait_until
from tempo_gen.ops.running.oneoff import LABEL
from tempo_gen.policy.releases import NEWEST
from test_backup_refusals import write_backup

from .test_stack import DOMAIN, PASSWORD, UIDS, USER, profile_text

pytestmark = pytest.mark.e2e

ADDRESS = "127.0.0.1"
UP_TIMEOUT = 300
MEDIA_FILES = 3
MEDIA_BYTES = 512 * 1024
PAUSED_TIMEOUT = 120  # seconds a paused tempo-gen may take to reach its pause point


@dataclass
class Deployment(RenderedProject):
    client: docker.DockerClient
    ca: trustme.CA
    https_port: int
    key: Path
    wrong_key: Path

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    def compose(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return compose(self.bundle, "-f", "compose.yaml", *args, project_name=self.name, timeout=timeout)

    def up(self) -> None:
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=2 * UP_TIMEOUT)

    def container(self, service: str) -> Container:
        return service_container(self.client, self.name, service)

    def tempo_gen(self, *args: str, key: Path | None = None) -> subprocess.CompletedProcess[str]:
        identity = ("--identity", str(key)) if key else ()
        return run_tempo_gen(self.root, *args, *identity, timeout=600)

    def killed_at(self, step: str, *args: str) -> None:
        """tempo-gen ARGS killed (SIGKILL) where it paused at `step` (the TEMPO_GEN_PAUSE_AT hook)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tempo_gen", "--project", str(self.root), *args],
            env=tempo_gen_env(TEMPO_GEN_PAUSE_AT=step),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        deadline = time.monotonic() + PAUSED_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if process.stderr.readline().startswith(f"paused at {step}"):
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                return
        process.kill()
        pytest.fail(f"tempo-gen never paused at {step}: {process.communicate(timeout=30)}")

    def browser(self) -> TempoClient:
        return TempoClient(NEWEST, Origin(ADDRESS, self.https_port, DOMAIN, self.ca), page_origin=f"https://{DOMAIN}")

    def signed_in(self) -> TempoClient:
        (browser := self.browser()).login(USER, PASSWORD)
        return browser

    def rows(self) -> dict[str, int]:
        """Row count of every table, read in the Postgres container with psql."""
        query = (
            "SELECT relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I',"
            " schemaname, relname), false, true, '')))[1]::text FROM pg_stat_user_tables ORDER BY 1"
        )
        script = 'PGPASSWORD="$(cat /run/secrets/db_password)" psql -X -At -F " " -U tempo -d tempo -c "$1"'
        return {line.split()[0]: int(line.split()[1]) for line in self._exec("postgres", script, query).splitlines()}

    def media(self) -> dict[str, str]:
        """path -> sha256 of every file of the media volume (imports/ staging included)."""
        listing = self._exec("api", "cd /app/media && find . -type f -exec sha256sum {} +")
        return {line.split()[1]: line.split()[0] for line in listing.splitlines()}

    def _exec(self, service: str, script: str, *args: str) -> str:
        code, out = self.container(service).exec_run(["sh", "-c", script, "sh", *args])
        assert code == 0 and isinstance(out, bytes), out
        return out.decode()

    def serving(self) -> bool:
        try:
            return self.browser().request("GET", "/api/health").status == 200
        except OSError:
            return False

    def complete(self) -> list[str]:
        return sorted(p.name for p in self.backups.iterdir() if p.is_dir() and not p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def deployment(
    docker_client: docker.DockerClient,
    standin_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    age_keys: dict[str, tuple[Path, str]],
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("backup")
    name = f"backup-{uuid.uuid4().hex[:8]}"
    ca = trustme.CA()
    tls = site_certificate(ca, DOMAIN, root / "tls", UIDS["proxy"])
    (root / "profiles").mkdir()
    (key, public), (wrong_key, _) = age_keys["right"], age_keys["wrong"]
    logs = root / "logs"  # the proxy's access log folder, owned by its uid as monitoring/install.sh makes it
    logs.mkdir(mode=0o750)
    os.chown(logs, UIDS["proxy"], UIDS["proxy"])
    https_port = free_port()
    text = profile_text(name, "nginx", standin_images, ADDRESS, free_port(), https_port, tls, logs=logs)
    (root / "profiles" / f"{name}.yaml").write_text(
        # Every backup this module takes is kept (retention would prune the older ones of today).
        text + f"backup:\n  dir: {root / 'backups'}\n  recipients: [{public}]\n  retention: {{last: 50}}\n"
    )
    for command in (("secrets", "init"), ("render",)):
        result = run_tempo_gen(root, *command, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    running = Deployment(root, name, docker_client, ca, https_port, key, wrong_key)
    try:
        running.up()
        yield running
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": LABEL}):
            if container.labels[LABEL].startswith(name):  # a one-off container a killed run left
                container.remove(force=True)
        compose(running.bundle, "-f", "compose.yaml", "down", "-v", "--rmi", "local", project_name=name, check=False)


def stage_import(browser: TempoClient) -> str:
    """An import job receiving its chunks (the first one staged); its path."""
    job = browser.send_json(
        "POST", "/api/workouts/import/jobs", {"kind": "strava_bulk", "filename": "a.zip", "byteSize": 600_000}
    )
    assert job.status == 201, job.body
    path = f"/api/workouts/import/jobs/{job.json()['id']}"
    chunk = browser.request(
        "PUT", f"{path}/chunks/0?total=2", b"\0" * 524_288, {"Content-Type": "application/octet-stream"}
    )
    assert chunk.status == 200, chunk.body
    return path


@dataclass(frozen=True)
class Backed:
    """What the good backup holds: its name, the rows and media files it was taken of, the uploads."""

    name: str
    rows: dict[str, int]
    media: dict[str, str]
    payloads: dict[tuple[str, str], bytes]
    started: int  # when the backup started (unix time)


@pytest.fixture(scope="module")
def good_backup(deployment: Deployment) -> Backed:
    """User, media on two workouts and an import being staged; then one backup. What it holds."""
    wait_until(deployment.serving, 60, "the API answering through the proxy")
    browser = deployment.browser()
    assert browser.register(USER, PASSWORD).status == 200
    browser.login(USER, PASSWORD)
    payloads: dict[tuple[str, str], bytes] = {}
    for number in range(MEDIA_FILES):
        workout = str(uuid.uuid4()) if number < 2 else next(iter(payloads))[0]
        payload = os.urandom(MEDIA_BYTES)
        reply = browser.request(
            "POST", f"/api/workouts/{workout}/media", payload, {"Content-Type": "application/octet-stream"}
        )
        assert reply.status == 200, reply.body
        payloads[(workout, reply.json()["id"])] = payload
    stage_import(browser)  # its chunk is staged under imports/, which no backup holds
    rows, media = deployment.rows(), deployment.media()
    started = int(time.time()) - 1
    result = deployment.tempo_gen("backup", str(deployment.profile))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1, "one log line per run"
    (name,) = deployment.complete()
    return Backed(name, rows, media, payloads, started)


def test_a_backup_is_encrypted_private_and_complete(deployment: Deployment, good_backup: Backed) -> None:
    folder = deployment.backups / good_backup.name
    assert os.stat(deployment.backups).st_mode & 0o777 == 0o700
    assert os.stat(folder).st_mode & 0o777 == 0o700
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["db.dump.age", "index.json", "manifest.json.age", "media.tar.age"]
    for file in folder.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file
    everything = b"".join(p.read_bytes() for p in folder.iterdir())
    assert USER.encode() not in everything
    for payload in good_backup.payloads.values():
        assert payload[:64] not in everything and payload[-64:] not in everything

    # With the key: the manifest, and a media archive without the import staging.
    def decrypt(part: str) -> bytes:
        return subprocess.run(
            ["age", "-d", "-i", str(deployment.key), str(folder / part)], check=True, capture_output=True, timeout=60
        ).stdout

    # The database password: in no exec's command line (the engine's events show each one) nor in the
    # container's configuration.
    password = (deployment.root / "secrets" / deployment.name / "db_password").read_text().strip()
    postgres = deployment.container("postgres")
    events = deployment.client.events(
        since=good_backup.started, until=int(time.time()) + 1, filters={"container": postgres.id}, decode=True
    )
    execs = [event["Action"] for event in events if event["Action"].startswith("exec_start")]
    assert any("pg_dump" in action for action in execs), execs
    assert password not in json.dumps(execs) + json.dumps(postgres.attrs)
    manifest = json.loads(decrypt("manifest.json.age"))
    assert manifest["tempo_version"] == NEWEST and manifest["kind"] == "manual"
    assert manifest["last_migration"].endswith("_Release_" + NEWEST.replace(".", "_"))
    members = subprocess.run(
        ["tar", "-t"], input=decrypt("media.tar.age"), check=True, capture_output=True, timeout=60
    ).stdout.decode()
    assert "imports" not in members
    assert sum(1 for line in members.splitlines() if not line.endswith("/")) == MEDIA_FILES


def test_restore_after_down_v_brings_back_every_row_and_file(deployment: Deployment, good_backup: Backed) -> None:
    deployment.compose("down", "-v", timeout=180)
    deployment.up()
    assert deployment.rows()["users"] == 0, "the volumes really were deleted"
    result = deployment.tempo_gen("restore", str(deployment.profile), good_backup.name, key=deployment.key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert deployment.rows() == good_backup.rows
    restored = deployment.media()
    expected = {p: s for p, s in good_backup.media.items() if not p.startswith("./imports/")}
    assert restored == expected
    browser = deployment.signed_in()
    for (workout, media_id), payload in good_backup.payloads.items():
        assert browser.request("GET", f"/api/workouts/{workout}/media/{media_id}").body == payload
    kinds = sorted(
        json.loads((deployment.backups / n / "index.json").read_text())["kind"] for n in deployment.complete()
    )
    assert kinds == ["manual", "safety"], "a safety backup was taken before the restore"


def _variant(deployment: Deployment, source: str, name: str) -> Path:
    copy = deployment.backups / name
    shutil.copytree(deployment.backups / source, copy)
    return copy


# damage -> (the backup restored, the refusal)
DAMAGES = {
    "wrong key": ("", "is not a key this backup was encrypted to"),
    "truncated": ("20000101T000000Z", "db.dump.age: is not what was written"),
    "flipped byte": ("20000101T000001Z", "media.tar.age: is not what was written"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_bad_backup_or_key_is_refused_and_nothing_is_touched(
    deployment: Deployment, good_backup: Backed, damage: str
) -> None:
    name = {damage: DAMAGES[damage][0] or good_backup.name}
    key = deployment.wrong_key if damage == "wrong key" else deployment.key
    if damage != "wrong key":
        part = _variant(deployment, good_backup.name, name[damage]) / (
            "db.dump.age" if damage == "truncated" else "media.tar.age"
        )
        data = bytearray(part.read_bytes())
        if damage == "truncated":
            del data[len(data) // 2 :]
        else:
            data[len(data) // 2] ^= 0x01
        part.write_bytes(bytes(data))
    before = {s: deployment.container(s).attrs["State"]["StartedAt"] for s in ("api", "frontend", "postgres")}
    backups, rows = deployment.complete(), deployment.rows()
    result = deployment.tempo_gen("restore", str(deployment.profile), name[damage], key=key)
    assert result.returncode == 2, result.stdout + result.stderr
    assert DAMAGES[damage][1] in result.stderr and "nothing was touched" in result.stderr
    assert {s: deployment.container(s).attrs["State"]["StartedAt"] for s in before} == before
    assert deployment.complete() == backups, "no safety backup: nothing was started"
    assert deployment.rows() == rows and deployment.serving()


def test_a_restore_waits_for_an_import_in_progress(deployment: Deployment, good_backup: Backed) -> None:
    browser = deployment.signed_in()
    current = browser.request("GET", "/api/workouts/import/jobs/current")
    if current.status == 200:  # the restored job of the good backup, its chunk gone with `down -v`
        assert browser.request("DELETE", f"/api/workouts/import/jobs/{current.json()['id']}").status == 200
    path = stage_import(browser)
    api = deployment.container("api").attrs["State"]["StartedAt"]
    try:
        result = deployment.tempo_gen("restore", str(deployment.profile), good_backup.name, key=deployment.key)
        assert result.returncode == 1 and "a bulk import is in progress" in result.stderr, result.stderr
        assert deployment.container("api").attrs["State"]["StartedAt"] == api, "the API was not stopped"
    finally:
        assert browser.request("DELETE", path).status == 200


def test_a_restore_that_fails_midway_puts_the_deployment_back(
    deployment: Deployment, age_keys: dict[str, tuple[Path, str]]
) -> None:
    """A backup that verifies (digests and manifest agree) but whose dump pg_restore cannot read."""
    write_backup(deployment.backups, "20000101T000002Z", age_keys["right"][1])
    rows, media = deployment.rows(), deployment.media()
    result = deployment.tempo_gen("restore", str(deployment.profile), "20000101T000002Z", key=deployment.key)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed at step 'database'" in result.stderr and "the deployment is back as it was" in result.stderr
    assert deployment.rows() == rows and deployment.media() == media
    assert deployment.signed_in().me().status == 200
    assert not (deployment.backups / "restore.json").exists()


def test_the_drill_passes_on_a_good_backup_and_fails_on_a_bad_one(deployment: Deployment) -> None:
    assert deployment.tempo_gen("backup", str(deployment.profile)).returncode == 0  # newer than the safety backup
    result = deployment.tempo_gen("backup", "drill", str(deployment.profile), key=deployment.key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout
    record = json.loads((deployment.backups / "drill.json").read_text())
    assert record["backup"] == deployment.complete()[-1] and record["media_files"] == MEDIA_FILES
    # The newest backup altered: refused before anything is restored.
    newest = _variant(deployment, deployment.complete()[-1], "29991231T235959Z")
    data = bytearray((newest / "db.dump.age").read_bytes())
    data[-100] ^= 0x80
    (newest / "db.dump.age").write_bytes(bytes(data))
    result = deployment.tempo_gen("backup", "drill", str(deployment.profile), key=deployment.key)
    assert result.returncode != 0 and "db.dump.age: is not what was written" in result.stderr
    shutil.rmtree(newest)
    # A backup that no longer matches the live deployment: the comparison says so.
    browser = deployment.signed_in()
    extra = browser.request(
        "POST", f"/api/workouts/{uuid.uuid4()}/media", b"new", {"Content-Type": "application/octet-stream"}
    )
    assert extra.status == 200
    result = deployment.tempo_gen("backup", "drill", str(deployment.profile), key=deployment.key)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mismatch: table public.workout_media" in result.stdout and "only live" in result.stdout
    assert not [
        c for c in deployment.client.containers.list(all=True) if (c.name or "").startswith(f"{deployment.name}-drill")
    ]


def test_a_backup_killed_midway_leaves_nothing_that_looks_complete(deployment: Deployment) -> None:
    backups = deployment.complete()
    deployment.killed_at("backup:postgres", "backup", str(deployment.profile))
    partial = [p.name for p in deployment.backups.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and deployment.complete() == backups
    assert deployment.serving()
    result = deployment.tempo_gen("backup", str(deployment.profile))
    assert result.returncode == 0, result.stderr
    assert not [p for p in deployment.backups.iterdir() if p.name.endswith(".partial")]
    assert len(deployment.complete()) == len(backups) + 1
    assert "retention: kept" in result.stdout


def test_a_restore_killed_midway_is_recovered_by_the_next_run(deployment: Deployment, good_backup: Backed) -> None:
    name = good_backup.name
    deployment.killed_at("restore:media", "restore", str(deployment.profile), name, "--identity", str(deployment.key))
    assert (deployment.backups / "restore.json").exists()
    state = deployment.container("api").attrs["State"]
    assert state["Status"] != "running", f"killed with the API stopped: {state}"
    refused = deployment.tempo_gen("backup", str(deployment.profile))
    assert refused.returncode == 1 and "was interrupted at step 'media'" in refused.stderr
    result = deployment.tempo_gen("restore", str(deployment.profile), name, key=deployment.key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "putting back the safety backup" in result.stdout
    assert not (deployment.backups / "restore.json").exists()
    assert deployment.rows() == good_backup.rows
    wait_until(deployment.serving, 60, "the site serving again")
    browser = deployment.signed_in()
    (workout, media_id), payload = next(iter(good_backup.payloads.items()))
    assert browser.request("GET", f"/api/workouts/{workout}/media/{media_id}").body == payload
