"""A browser-like client for one Tempo deployment, per release.

It talks to the deployment the way that release's web app does, through the
public origin (HTTPS with the test CA, see tls_client.tls_context; plain HTTP
when no CA is given, for the stand-in tests):

- `register()` / `login()` as `POST /api/auth/...` (login returns the
  `authToken=...` cookie pair the browser would send back);
- `upload_export()`:
  - before 2.7 the app posts the whole ZIP, multipart field `file`,
    cross-origin to `https://<host>:<import_port>/workouts/import/bulk` (or
    `/export`) with `Origin: <page origin>` and the cookie (the 2.1.x
    `getDirectApiUrl()`); the caller names that port;
  - from 2.7 it creates an import job (`POST /api/workouts/import/jobs`),
    PUTs 512 KiB chunks one after another to
    `/api/workouts/import/jobs/{id}/chunks/{i}?total=N`, completes the job
    and polls `GET /api/workouts/import/jobs/{id}` (bounded in count and time)
    until it is `completed` or `failed`.

Every response's status code is recorded in `statuses`, so a test can assert
that no 429 and no 413 was seen. `write_zip()` writes a valid stored ZIP of
an exact size with incompressible data, block by block.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import ssl
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from support.tls_client import tls_context

CHUNK_BYTES = 512 * 1024  # upstream IMPORT_JOB_CHUNK_SIZE (2.7+)
CHUNKED_IMPORTS_SINCE = (2, 7, 0)
BLOCK = 1 << 20


def version_tuple(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("-", maxsplit=1)[0].split("."))


@dataclass(frozen=True)
class Origin:
    """Where to connect (`address`:`port`) and the host name the browser uses (SNI, Host, Origin)."""

    address: str
    port: int
    host: str
    ca: trustme.CA | None = None  # None: plain HTTP

    @property
    def scheme(self) -> str:
        return "https" if self.ca else "http"

    @property
    def url(self) -> str:
        """The origin as a browser writes it (default ports omitted)."""
        default = 443 if self.ca else 80
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.ca is None:
            return http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        return _TLSConnection(self.address, self.port, self.host, tls_context(self.ca), timeout)


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, verified for (and with SNI of) a host name; reconnects by itself."""

    def __init__(self, address: str, port: int, host: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._sni, self._tls = host, context

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._sni)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class UploadResult:
    """What upload_export() saw: the final job document (2.7+) or the summary (before)."""

    mode: str  # "direct" (cross-origin whole body) or "chunked"
    final: dict[str, Any]
    statuses: list[int]
    chunks: int = 0
    polls: int = 0
    seconds: float = 0.0
    cors_allowed: bool | None = None  # direct mode: would a browser let the page read the answer


class UploadFailed(AssertionError):
    """The upload did not end as the release's app expects (the message says where)."""


@dataclass
class TempoClient:
    """One browser session against a deployment of Tempo `release` at `site`."""

    release: str
    site: Origin
    timeout: float = 600
    cookie: str | None = None
    statuses: list[int] = field(default_factory=list)
    # The page's origin in `Origin` headers (and the one CORS must allow); default
    # site.url. Give "https://<host>" when the test reaches a port-443 site elsewhere.
    page_origin: str | None = None

    def __post_init__(self) -> None:
        self._connections: dict[Origin, http.client.HTTPConnection] = {}

    @property
    def origin(self) -> str:
        return self.page_origin or self.site.url

    @property
    def chunked_imports(self) -> bool:
        return version_tuple(self.release) >= CHUNKED_IMPORTS_SINCE

    # -- plumbing

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _connection(self, origin: Origin) -> http.client.HTTPConnection:
        if origin not in self._connections:
            self._connections[origin] = origin.connect(self.timeout)
        return self._connections[origin]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        origin: Origin | None = None,
        length: int | None = None,
    ) -> Response:
        """One request on a kept-alive connection, with the session cookie and,
        for anything but GET/HEAD, the site's Origin (as browsers send it)."""
        target = origin or self.site
        sent = {"Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}"}
        if self.cookie:
            sent["Cookie"] = self.cookie
        if method not in ("GET", "HEAD"):
            sent["Origin"] = self.origin
        sent.update(headers or {})
        if isinstance(body, bytes):
            length = len(body)
        if body is not None or method in ("POST", "PUT"):
            sent["Content-Length"] = str(length or 0)
        connection = self._connection(target)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            connection.endheaders()
            if isinstance(body, bytes):
                connection.send(body)
            elif body is not None:
                for block in body:
                    connection.send(block)
            reply = connection.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            raise
        self.statuses.append(reply.status)
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)

    def send_json(self, method: str, path: str, payload: object) -> Response:
        """A request with a JSON body."""
        return self.request(method, path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    # -- auth

    def register(self, username: str, password: str) -> Response:
        return self.send_json("POST", "/api/auth/register", {"username": username, "password": password})

    def login(self, username: str, password: str, remember_me: bool = False) -> str:
        """Log in; return (and keep) the `authToken=...` pair the browser stores."""
        payload: dict[str, object] = {"username": username, "password": password}
        if remember_me:
            payload["rememberMe"] = True
        reply = self.send_json("POST", "/api/auth/login", payload)
        if reply.status != 200:
            raise UploadFailed(f"login answered {reply.status}: {reply.body[:200]!r}")
        cookie = reply.headers.get("set-cookie", "")
        if not cookie.startswith("authToken="):
            raise UploadFailed("login set no authToken cookie")
        self.cookie = cookie.split(";", 1)[0]
        return self.cookie

    def me(self) -> Response:
        return self.request("GET", "/api/auth/me")

    # -- imports

    def upload_export(
        self,
        archive: Path | bytes,
        kind: str = "strava_bulk",
        import_port: int | None = None,
        import_address: str | None = None,
        poll_interval: float = 0.5,
        max_polls: int = 1200,
        max_seconds: float = 900,
    ) -> UploadResult:
        """Upload a Strava export (`kind="strava_bulk"`) or a Tempo export
        (`"tempo_export"`) as this release's web app does; raise UploadFailed
        when it does not complete. `import_port` (the site's TLS port for the
        API's import routes) is required before 2.7; `import_address` connects
        elsewhere than the site's address (the Host stays the site's name)."""
        started = time.monotonic()
        first = len(self.statuses)
        if self.chunked_imports:
            result = self._upload_chunked(archive, kind, poll_interval, max_polls, started + max_seconds)
        else:
            if import_port is None:
                raise ValueError(f"Tempo {self.release} uploads to a separate port: give import_port")
            result = self._upload_direct(archive, kind, import_address or self.site.address, import_port)
        result.statuses = self.statuses[first:]
        result.seconds = time.monotonic() - started
        return result

    def _upload_direct(self, archive: Path | bytes, kind: str, address: str, import_port: int) -> UploadResult:
        route = "bulk" if kind == "strava_bulk" else "export"
        target = Origin(address, import_port, self.site.host, self.site.ca)
        boundary = f"----TempoClientBoundary{uuid.uuid4().hex}"
        name = archive.name if isinstance(archive, Path) else "export.zip"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = archive.stat().st_size if isinstance(archive, Path) else len(archive)

        def body() -> Iterator[bytes]:
            yield head
            yield from _blocks(archive)
            yield tail

        reply = self.request(
            "POST",
            f"/workouts/import/{route}",
            body(),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            origin=target,
            length=len(head) + size + len(tail),
        )
        allowed = (
            reply.headers.get("access-control-allow-origin") == self.origin
            and reply.headers.get("access-control-allow-credentials") == "true"
        )
        if reply.status != 200:
            where = f":{import_port}/workouts/import/{route}"
            raise UploadFailed(f"POST {where} answered {reply.status}: {reply.body[:300]!r}")
        if not allowed:
            raise UploadFailed(f"the import answer carries no CORS permission for {self.origin}")
        return UploadResult("direct", reply.json(), [], cors_allowed=allowed)

    def _upload_chunked(
        self, archive: Path | bytes, kind: str, poll_interval: float, max_polls: int, deadline: float
    ) -> UploadResult:
        size = archive.stat().st_size if isinstance(archive, Path) else len(archive)
        name = archive.name if isinstance(archive, Path) else "export.zip"
        created = self.send_json(
            "POST", "/api/workouts/import/jobs", {"kind": kind, "filename": name, "byteSize": size}
        )
        if created.status != 201:
            raise UploadFailed(f"creating the import job answered {created.status}: {created.body[:300]!r}")
        job_id = created.json()["id"]
        total = max(1, -(-size // CHUNK_BYTES))
        base = f"/api/workouts/import/jobs/{job_id}"
        for index, chunk in enumerate(_blocks(archive, CHUNK_BYTES)):
            reply = self.request(
                "PUT", f"{base}/chunks/{index}?total={total}", chunk, {"Content-Type": "application/octet-stream"}
            )
            if reply.status != 200:
                raise UploadFailed(f"chunk {index}/{total} answered {reply.status}: {reply.body[:300]!r}")
        done = self.request("POST", f"{base}/complete")
        if done.status != 202:
            raise UploadFailed(f"completing the import job answered {done.status}: {done.body[:300]!r}")
        job: dict[str, Any] = done.json()
        polls = 0
        while job.get("status") not in ("completed", "failed"):
            if polls >= max_polls or time.monotonic() > deadline:
                raise UploadFailed(f"import job {job_id} still {job.get('status')} after {polls} polls")
            time.sleep(poll_interval)
            polls += 1
            reply = self.request("GET", base)
            if reply.status != 200:
                raise UploadFailed(f"polling the import job answered {reply.status}")
            job = reply.json()
        if job["status"] != "completed":
            raise UploadFailed(f"import job {job_id} failed: {job.get('errorMessage')}")
        return UploadResult("chunked", job, [], chunks=total, polls=polls)


def _blocks(archive: Path | bytes, size: int = BLOCK) -> Iterator[bytes]:
    """The archive in blocks of `size` bytes (the last may be shorter), never whole in memory."""
    if isinstance(archive, bytes):
        for start in range(0, len(archive), size):
            yield archive[start : start + size]
        return
    with open(archive, "rb") as fh:
        while block := fh.read(size):
            yield block


def write_zip(path: Path, size: int, entry_bytes: int = 8 * BLOCK, seed: int = 0) -> Path:
    """Write a valid ZIP of exactly `size` bytes to `path`: an `activities.csv`
    and stored (uncompressed) entries of random, incompressible data, written
    block by block. Needs `size` of at least a few hundred bytes."""
    rng = random.Random(seed)
    csv = b"Activity ID,Activity Date,Activity Name,Activity Type,Filename\n"
    names: list[str] = ["activities.csv"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(_stored("activities.csv"), csv)
        while True:
            name = f"activities/{len(names):06d}.fit"
            # Bytes still free once this entry's headers and the central directory are counted.
            directory = sum(46 + len(n.encode()) for n in [*names, name]) + 22
            room = size - archive.fp.tell() - (30 + len(name.encode())) - directory  # type: ignore[union-attr]
            if room < 0:
                raise ValueError(f"{size} bytes is too small for a ZIP with data")
            names.append(name)
            entry = min(room, entry_bytes)
            info = _stored(name)
            info.file_size = entry
            with archive.open(info, "w") as out:
                left = entry
                while left:
                    block = rng.randbytes(min(left, BLOCK))
                    out.write(block)
                    left -= len(block)
            if entry == room:
                break
    actual = os.path.getsize(path)
    if actual != size:
        raise AssertionError(f"write_zip wrote {actual} bytes, not {size}")
    return path


def _stored(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    return info
