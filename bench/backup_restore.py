"""Backup and restore speed as ratios to doing the same by hand, measured in one run (never a test).

On a stack the e2e harness brings up (stand-in images, no proxy, Compose project
`backupops-bench-<hex>`, removed afterwards), it fills the media volume with
--media-mb of incompressible files and the database with --db-mb of rows, then
times:

  by hand   backup:  docker exec pg_dump -Fc | age -r KEY > db.dump.age
                     tar -c <media volume> --exclude imports | age -r KEY > media.tar.age
            restore: age -d | docker exec -i pg_restore --clean;  age -d | tar -x
  tempo-gen backup PROFILE / tempo-gen restore PROFILE BACKUP --identity KEY

and prints tool / by-hand for each (target: <= 1.3x). `--baseline-only` times the
by-hand part alone (e.g. before `tempo-gen backup` exists in the checkout).

Run as root from the repository root (Docker, age; the stand-ins build on first use):
    python bench/backup_restore.py [--media-mb 1024] [--db-mb 300] [--baseline-only]
Sizes also come from BENCH_MEDIA_MB / BENCH_DB_MB; run it small first (--media-mb 64 --db-mb 32).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "generator"), str(REPO / "tests")]

import docker  # noqa: E402  (after the source roots are on the path)

from e2e.images.build import build_standins, release_images  # noqa: E402
from support.engine import compose  # noqa: E402
from tempo_gen.policy.releases import NEWEST  # noqa: E402

MEDIA_ROOT = "/app/media"
FILE_MB = 4  # media files of 4 MiB, like photos: incompressible random bytes
TIMEOUT = 3600


def profile_text(name: str, images: dict[str, str], backups: Path, recipient: str) -> str:
    return f"""\
name: {name}
domain: tempo.test
environment: development
tempo:
  version: {NEWEST}
  allow_unpinned: true
  images:
    api: {release_images(NEWEST)["api"]}
    frontend: {release_images(NEWEST)["frontend"]}
    postgres: {images["postgres"]}
proxy:
  kind: none
firewall:
  enabled: false
backup:
  dir: {backups}
  recipients: [{recipient}]
"""


def tempo_gen(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tempo_gen", "--project", str(root), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "generator")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)


class Stack:
    def __init__(self, root: Path, name: str, client: docker.DockerClient) -> None:
        self.root, self.name, self.client = root, name, client

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        bundle = self.root / "out" / self.name
        return compose(bundle, "-f", "compose.yaml", *args, project_name=self.name, timeout=TIMEOUT)

    def container_id(self, service: str) -> str:
        found = self.client.containers.list(
            filters={"label": [f"com.docker.compose.project={self.name}", f"com.docker.compose.service={service}"]}
        )
        return str(found[0].id)

    def media_dir(self) -> Path:
        volume = self.client.volumes.get(f"{self.name}_media")
        return Path(volume.attrs["Mountpoint"])


@contextmanager
def stack(root: Path, recipient: str) -> Iterator[Stack]:
    client = docker.from_env()
    images = build_standins(client)
    name = f"backupops-bench-{uuid.uuid4().hex[:8]}"
    (root / "profiles").mkdir()
    (root / "profiles" / f"{name}.yaml").write_text(profile_text(name, images, root / "backups", recipient))
    for command in (("secrets", "init"), ("render",)):
        done = tempo_gen(root, *command)
        if done.returncode != 0:
            raise SystemExit(f"tempo-gen {' '.join(command)} failed: {done.stdout}{done.stderr}")
    running = Stack(root, name, client)
    try:
        running.compose("up", "-d", "--build", "--wait", "--wait-timeout", "600")
        yield running
    finally:
        running.compose("down", "-v", "--rmi", "local", "--remove-orphans")


def fill(running: Stack, media_mb: int, db_mb: int) -> None:
    """Incompressible media files (owned by the API's uid) and db_mb of text rows (about 2x compressible)."""
    media = running.media_dir()
    owner = os.stat(media)
    for i in range(max(1, media_mb // FILE_MB)):
        path = media / "bench" / f"{i // 100:03d}" / f"photo-{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(FILE_MB * 1024 * 1024))
        os.chown(path, owner.st_uid, owner.st_gid)
    for folder in sorted({p.parent for p in (media / "bench").rglob("*.jpg")}) + [media / "bench"]:
        os.chown(folder, owner.st_uid, owner.st_gid)
    rows = db_mb * 1024 * 1024 // 512
    sql = (
        "CREATE TABLE IF NOT EXISTS bench_payload (id bigint PRIMARY KEY, body text NOT NULL);"
        # 16 different md5s a row (referencing g, so the subquery runs per row): hex, about 2x compressible.
        "INSERT INTO bench_payload SELECT g, array_to_string(ARRAY(SELECT md5(random()::text || g) "
        f"FROM generate_series(1, 16)), '') FROM generate_series(1, {rows}) g;"
    )
    psql(running, "-c", sql)


# Runs a Postgres client in the container as its user, the password from the Docker secret through a
# pgpass file on the container's tmpfs: never on a command line or in an environment.
_WITH_PGPASS = (
    'umask 077; printf "*:*:*:*:%s\\n" "$(cat /run/secrets/db_password)" >/tmp/.bench-pgpass; '
    'PGPASSFILE=/tmp/.bench-pgpass exec "$@"'
)


def in_postgres(running: Stack, *command: str, stdin: bool = False) -> list[str]:
    exec_ = ["docker", "exec", *(["-i"] if stdin else []), "-u", "postgres", running.container_id("postgres")]
    return [*exec_, "sh", "-c", _WITH_PGPASS, "sh", *command, "-U", "tempo", "-d", "tempo"]


def psql(running: Stack, *args: str) -> str:
    done = subprocess.run(
        [*in_postgres(running, "psql"), "-v", "ON_ERROR_STOP=1", "-qAt", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise SystemExit(f"psql failed: {done.stderr}")
    return done.stdout


def pipeline(first: list[str], second: list[str], stdout: Path | None = None) -> None:
    """`first | second [> stdout]`, both checked."""
    with open(stdout, "xb") if stdout else open(os.devnull, "wb") as out:
        producer = subprocess.Popen(first, stdout=subprocess.PIPE)
        consumer = subprocess.run(second, stdin=producer.stdout, stdout=out, timeout=TIMEOUT)
        assert producer.stdout is not None
        producer.stdout.close()
        if producer.wait(timeout=TIMEOUT) or consumer.returncode:
            raise SystemExit(f"failed: {' '.join(first)} | {' '.join(second)}")


def by_hand_backup(running: Stack, recipient: str, into: Path) -> float:
    into.mkdir(mode=0o700)
    started = time.perf_counter()
    pipeline(in_postgres(running, "pg_dump", "-Fc"), ["age", "-r", recipient], into / "db.dump.age")
    tar = ["tar", "-C", str(running.media_dir()), "--exclude=./imports", "-cf", "-", "."]
    pipeline(tar, ["age", "-r", recipient], into / "media.tar.age")
    return time.perf_counter() - started


def by_hand_restore(running: Stack, identity: Path, backup: Path) -> float:
    started = time.perf_counter()
    restore = [*in_postgres(running, "pg_restore", stdin=True), "--clean", "--if-exists"]
    pipeline(["age", "-d", "-i", str(identity), str(backup / "db.dump.age")], restore)
    untar = ["tar", "-C", str(running.media_dir()), "-xf", "-"]
    pipeline(["age", "-d", "-i", str(identity), str(backup / "media.tar.age")], untar)
    return time.perf_counter() - started


def tool_run(running: Stack, *args: str) -> float | None:
    started = time.perf_counter()
    done = tempo_gen(running.root, *args)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        print(f"tempo-gen {' '.join(args)} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        return None
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media-mb", type=int, default=int(os.environ.get("BENCH_MEDIA_MB", "1024")))
    parser.add_argument("--db-mb", type=int, default=int(os.environ.get("BENCH_DB_MB", "300")))
    parser.add_argument("--baseline-only", action="store_true", help="Time the by-hand backup and restore only.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="backupops-bench-") as folder:
        root = Path(folder)
        identity = root / "identity.txt"
        subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True, timeout=60)
        recipient = subprocess.run(
            ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True, timeout=60
        ).stdout.strip()
        with stack(root, recipient) as running:
            fill(running, options.media_mb, options.db_mb)
            database = psql(running, "-c", "SELECT pg_size_pretty(pg_database_size('tempo'))").strip()
            print(f"data: {options.media_mb} MiB of media in {FILE_MB} MiB files, database {database}")
            hand_backup = by_hand_backup(running, recipient, root / "by-hand")
            sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB" for p in (root / "by-hand").iterdir())
            print(f"by hand:   backup {hand_backup:7.1f} s  ({sizes})")
            hand_restore = by_hand_restore(running, identity, root / "by-hand")
            print(f"by hand:   restore {hand_restore:6.1f} s")
            if options.baseline_only:
                return
            profile = str(root / "profiles" / f"{running.name}.yaml")
            tool_backup = tool_run(running, "backup", profile)
            backups = sorted(p.name for p in (root / "backups").glob("*T*Z") if p.is_dir())
            tool_restore = (
                tool_run(running, "restore", profile, backups[-1], "--identity", str(identity)) if backups else None
            )
            for what, tool, hand in (("backup", tool_backup, hand_backup), ("restore", tool_restore, hand_restore)):
                if tool is not None:
                    print(f"tempo-gen: {what} {tool:6.1f} s = {tool / hand:.2f}x by hand (target <= 1.3x)")


if __name__ == "__main__":
    main()
