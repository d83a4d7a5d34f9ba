"""The database's rollback point for a deploy that changes Tempo's release: its data folder, copied while stopped.

Tempo's migrations only go forward, so a failed upgrade must put back the
database as it was before the new API touched it. With the API and Postgres
stopped the data folder is consistent, and copying it needs no database
password at all (nothing to keep off a command line); putting it back restores
exactly what was there, roles and all. The copy is streamed through the
engine's archive API into a file only the deploying user can read
(`.tempo-gen/.<name>.db-rollback.tar`, 0600 in the 0700 state folder), and
deleted once the deploy succeeded or the rollback used it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError
from tempo_gen.ops.deploy.state import state_root

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

PGDATA = "/var/lib/postgresql/data"
"""The data folder of every supported Postgres image (the bundle mounts its volume there)."""
STOP_TIMEOUT = 60  # seconds Postgres gets to shut down cleanly (a checkpoint) before it is killed
CHUNK = 1 << 20


def snapshot_path(bundle: Path) -> Path:
    return state_root(bundle) / f".{bundle.name}.db-rollback.tar"


def take(client: DockerClient, postgres: Container, path: Path) -> int:
    """Stop Postgres (the API is stopped already), stream its data folder to `path`; the bytes written.

    Postgres stays stopped: the deploy that follows starts it again."""
    postgres.stop(timeout=STOP_TIMEOUT)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    partial = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            stream, _ = client.api.get_archive(str(postgres.id), PGDATA, chunk_size=CHUNK)
            for chunk in stream:
                out.write(chunk)
                written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)  # complete, or not there: a half copy never looks like a snapshot
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return written


def put_back(client: DockerClient, postgres: Container, path: Path) -> None:
    """Replace Postgres's data folder with the snapshot at `path` (Postgres is stopped here, then left stopped)."""
    import docker

    postgres.reload()
    if postgres.status == "running":
        postgres.stop(timeout=STOP_TIMEOUT)
    volume = next((m for m in postgres.attrs["Mounts"] if m.get("Destination") == PGDATA), None)
    if volume is None or volume.get("Type") != "volume":
        raise DeploymentError(f"postgres has no data volume at {PGDATA}; cannot put the database back")
    user = postgres.attrs["Config"].get("User") or "70:70"
    # Postgres's own root is read-only, so the copy goes in through a throwaway container of the same
    # image on the same volume, without network: it first empties the folder as the data's own uid (files
    # a newer release created must not survive next to the restored ones), then receives the archive.
    name = f"{postgres.labels.get('com.docker.compose.project', 'tempo')}-db-rollback"
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)  # left by a run that was killed
    helper = client.containers.create(
        str(postgres.attrs["Image"]),
        ["find", PGDATA, "-mindepth", "1", "-delete"],
        entrypoint=[],
        user=user,
        network_mode="none",
        volumes={volume["Name"]: {"bind": PGDATA, "mode": "rw"}},
        name=name,
    )
    try:
        helper.start()
        if helper.wait(timeout=STOP_TIMEOUT).get("StatusCode") != 0:
            raise DeploymentError(f"emptying the data folder failed: {helper.logs().decode(errors='replace')[-300:]}")
        with open(path, "rb") as snapshot:
            if not client.api.put_archive(str(helper.id), os.path.dirname(PGDATA), snapshot):
                raise DeploymentError("the engine refused to put the database snapshot back")
    finally:
        helper.remove(force=True)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
