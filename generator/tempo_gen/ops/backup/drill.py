"""The drill: restore the newest backup into a throwaway stack and compare it with the live deployment.

The throwaway stack is a Postgres container and a media volume of its own
(names <deployment>-drill-<random>), from the images the live deployment
runs, on the engine that runs its API. It has no network at all (Postgres
listens on its socket only), publishes nothing, runs with the live services'
uids, no capabilities and read-only roots, and is removed afterwards, also
what a killed drill left. The comparison: row counts of every table, and the
sha256 of every media file (imports/ excluded on both sides).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError, UsageError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.crypt import Decryption, Identity
from tempo_gen.ops.backup.layout import DRILL_RECORD, DrillRecord, backup_names
from tempo_gen.ops.backup.restore import EXTRACT_MEDIA, RESTORE_DATABASE, verify_backup
from tempo_gen.ops.backup.take import backup_folder, in_postgres, locked
from tempo_gen.ops.running.oneoff import LABEL, job_labels, run_job
from tempo_gen.ops.running.stack import RunningStack, exec_stream
from tempo_gen.policy.ports import MEDIA_ROOT
from tempo_gen.policy.releases import IMPORT_STAGING
from tempo_gen.safe_fs import open_dir_beneath, stage_beside

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

READY_TIMEOUT = 120  # seconds the throwaway Postgres may take to initialise and accept connections
_COUNT_ROWS = (
    "SELECT format('%I.%I', schemaname, tablename) || ' ' || (xpath('/row/c/text()', query_to_xml("
    "format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename), false, true, '')))[1]::text "
    "FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)
ROW_COUNTS = in_postgres("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", _COUNT_ROWS)
MEDIA_SUMS = [
    "sh",
    "-c",
    f'cd "$1" && find . -path ./{IMPORT_STAGING} -prune -o -type f -print0 | xargs -0r sha256sum',
    "sh",
    MEDIA_ROOT,
]


@dataclass
class DrillReport:
    backup: str
    tables: dict[str, int]
    media: set[str]
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else f"FAILED ({len(self.mismatches)} mismatch(es))"
        return [
            f"drill of backup {self.backup}: {verdict}",
            f"  tables: {len(self.tables)}, rows: {sum(self.tables.values())}, media files: {len(self.media)}",
            *(f"  mismatch: {line}" for line in self.mismatches),
        ]


def drill(profile: Profile, stack: RunningStack, identity: Identity, say: Callable[[str], object]) -> DrillReport:
    """Drill the newest backup; the report (its mismatches empty when the restored copy equals the live one).
    A passed drill is recorded in drill.json."""
    folder = backup_folder(profile)
    names = backup_names(folder)
    if not names:
        raise UsageError(f"no complete backup in {folder} to drill: run `tempo-gen backup {profile.name}` first")
    with locked(folder):
        name = names[0]
        verify_backup(folder, name, identity)
        say(f"backup {name} verified; restoring it into a throwaway stack")
        live_tables = _tables(_output(lambda sink: stack.exec_stream("postgres", ROW_COUNTS, sink=sink), "live rows"))
        live_media = _media(_output(lambda sink: stack.exec_stream("api", MEDIA_SUMS, sink=sink), "live media"))
        with _throwaway(profile, stack) as scratch:
            tables, media = scratch.restore(folder, name, identity)
    report = DrillReport(name, tables, media)
    for table in sorted(set(tables) | set(live_tables)):
        if tables.get(table) != live_tables.get(table):
            report.mismatches.append(
                f"table {table}: {tables.get(table, 'missing')} rows restored, {live_tables.get(table, 'missing')} live"
            )
    for line in sorted(media ^ live_media):
        where = "only in the backup" if line in media else "only live (or changed)"
        report.mismatches.append(f"media {line.split(' ', 1)[-1].strip()}: {where}")
    if report.passed:
        _record(
            folder,
            DrillRecord(
                finished=datetime.now(UTC).replace(microsecond=0),
                backup=name,
                tables=len(tables),
                rows=sum(tables.values()),
                media_files=len(media),
            ),
        )
    return report


def _output(run: Callable[[Callable[[bytes], object]], tuple[int, str]], what: str) -> str:
    """The stdout of a streamed command that `run` starts with a sink; DeploymentError when it failed."""
    output = bytearray()
    code, stderr = run(output.extend)
    if code != 0:
        raise DeploymentError(f"reading the {what} failed (exit {code}): {stderr.strip()[-300:]}")
    return output.decode(errors="replace")


def _tables(text: str) -> dict[str, int]:
    """`schema.table count` lines to counts."""
    counts = {}
    for line in text.splitlines():
        table, _, count = line.rpartition(" ")
        if table and count.isdigit():
            counts[table] = int(count)
    return counts


def _media(text: str) -> set[str]:
    """sha256sum lines (`<sha256>  ./path`), one per media file."""
    return set(text.splitlines())


class _Scratch:
    """The throwaway Postgres container and media volume."""

    def __init__(self, client: DockerClient, tag: str, postgres: Container, api: Container):
        self.client, self.tag, self.live_postgres, self.live_api = client, tag, postgres, api
        self.postgres: Container | None = None

    def restore(self, folder: Path, name: str, identity: Identity) -> tuple[dict[str, int], set[str]]:
        postgres = self._start_postgres()
        with open_dir_beneath(folder, (name,), follow_root=False) as fd:
            database = Decryption(identity, fd, "db.dump.age", folder / name / "db.dump.age")
            code, stderr = exec_stream(postgres, RESTORE_DATABASE, source=database.chunks())
            if code != 0:
                raise DeploymentError(
                    f"pg_restore into the throwaway stack failed (exit {code}): {stderr.strip()[-400:]}"
                )
            media = Decryption(identity, fd, "media.tar.age", folder / name / "media.tar.age")
            volume = self._volume("media")
            code, stderr = self._job("unpack", EXTRACT_MEDIA, volume, "rw", media.chunks())
            if code != 0:
                raise DeploymentError(
                    f"unpacking the media into the throwaway stack failed (exit {code}): {stderr.strip()[-400:]}"
                )
        tables = _tables(_output(lambda sink: exec_stream(postgres, ROW_COUNTS, sink=sink), "restored rows"))
        listing = _output(lambda sink: self._job("list", MEDIA_SUMS, volume, "ro", sink=sink), "restored media")
        return tables, _media(listing)

    def _volume(self, role: str) -> str:
        return str(self.client.volumes.create(f"{self.tag}-{role}", labels=job_labels(self.tag)).name)

    def _job(
        self,
        what: str,
        command: list[str],
        volume: str,
        mode: str,
        source: Iterable[bytes] | None = None,
        sink: Callable[[bytes], object] | None = None,
    ) -> tuple[int, str]:
        api = self.live_api
        return run_job(
            self.client,
            str(api.image.id if api.image else ""),
            command,
            name=f"{self.tag}-{what}",
            user=str(api.attrs["Config"].get("User") or ""),
            volumes={volume: (MEDIA_ROOT, mode)},
            source=source,
            sink=sink,
        )

    def _start_postgres(self) -> Container:
        live = self.live_postgres.attrs
        user = str(live["Config"].get("User") or "")
        environment = dict(entry.split("=", 1) for entry in live["Config"].get("Env") or [] if "=" in entry)
        data = next((m["Destination"] for m in live.get("Mounts", []) if m.get("Type") == "volume"), None)
        if not user or user.startswith(("0", "root")) or data is None:
            raise DeploymentError("the live Postgres container has no non-root user or no data volume to mirror")
        uid, _, gid = user.partition(":")
        owned = f"uid={uid},gid={gid or uid},mode=0700"
        self.postgres = self.client.containers.run(
            str(self.live_postgres.image.id if self.live_postgres.image else ""),
            ["postgres", "-c", "listen_addresses="],
            detach=True,
            name=f"{self.tag}-postgres",
            labels=job_labels(self.tag),
            user=user,
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs={"/var/run/postgresql": owned, "/tmp": owned},
            environment={
                "POSTGRES_USER": environment.get("POSTGRES_USER", "postgres"),
                "POSTGRES_DB": environment.get("POSTGRES_DB", "postgres"),
                # Socket only, in a container without a network: nothing but an exec can reach it.
                "POSTGRES_HOST_AUTH_METHOD": "trust",
            },
            volumes={self._volume("db"): {"bind": data, "mode": "rw"}},
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.postgres.reload()
            if self.postgres.status != "running":
                raise DeploymentError(
                    f"the throwaway Postgres stopped: {self.postgres.logs(tail=20).decode(errors='replace')}"
                )
            if (
                b"init process complete" in self.postgres.logs()
                and exec_stream(self.postgres, ["pg_isready", "-q"])[0] == 0
            ):
                return self.postgres
            time.sleep(1)
        raise DeploymentError(f"the throwaway Postgres did not become ready within {READY_TIMEOUT}s")


@contextlib.contextmanager
def _throwaway(profile: Profile, stack: RunningStack) -> Iterator[_Scratch]:
    postgres, api = stack.container("postgres"), stack.container("api")
    client = api.client or stack.client
    prefix = f"{profile.name}-drill-"
    _remove_labelled(client, prefix)  # what a killed drill left
    scratch = _Scratch(client, prefix + secrets.token_hex(4), postgres, api)
    try:
        yield scratch
    finally:
        _remove_labelled(client, scratch.tag)


def _remove_labelled(client: DockerClient, prefix: str) -> None:
    import docker

    for container in client.containers.list(all=True, filters={"label": LABEL}):
        if container.labels.get(LABEL, "").startswith(prefix):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": LABEL}):
        if (volume.attrs.get("Labels") or {}).get(LABEL, "").startswith(prefix):
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)


def _record(folder: Path, record: DrillRecord) -> None:
    with open_dir_beneath(folder, follow_root=False) as fd:
        staged = stage_beside(
            Path(DRILL_RECORD), "new", (record.model_dump_json(indent=2) + "\n").encode(), 0o600, dir_fd=fd
        )
        os.replace(staged, DRILL_RECORD, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)
