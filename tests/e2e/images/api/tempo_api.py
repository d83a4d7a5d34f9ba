"""Stand-in for Tempo's ASP.NET Core API (Tempo.Api.dll) in end-to-end tests.

Keeps the runtime contract a deployment relies on, nothing more, for the
release baked into the image (/app/VERSION, build arg TEMPO_VERSION):
configuration from ASP.NET-style environment variables, start-up refusal with
a bad JWT key (2.10: bad logging profile, SQLite connection string), schema
creation at start (exit if Postgres is unreachable), /health (2.10: /ready,
/version), cookie login (2.4: always `secure` in Production), password rules
(2.5: 16-64 characters, session version), media upload/download, bulk imports
(before 2.7: synchronous, unzipped into the temp folder; 2.7: chunked import
jobs staged under the media root), CARTO key (2.8) and the 2.10
`reset-password` verb. tests/e2e/README.md is the reference. Secret values are
never written to any output.
"""

import base64
import datetime
import email.utils
import errno
import getpass
import hashlib
import hmac
import io
import itertools
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any, NoReturn, TypedDict, Unpack
from urllib.parse import parse_qs, urlsplit

import psycopg2
import psycopg2.extensions

PLACEHOLDER_KEY = "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE"
MIN_KEY_LENGTH = 32
MAX_REQUEST_BODY = 500_000_000  # Kestrel MaxRequestBodySize set by Tempo
JSON_BODY_LIMIT = 1 << 20
DRAIN_LIMIT = 1 << 20  # unread request bodies up to this size are drained before answering
CLOCK_SKEW = 300  # seconds, ASP.NET JwtBearer default
CHUNK = 1 << 16
# Exit code of an unhandled .NET exception on Linux (the runtime aborts).
DOTNET_CRASH = 134
IMPORT_CHUNK_BYTES = 512 * 1024  # ImportJobLimits.ChunkSizeBytes (2.7+)
IMPORT_MAX_BYTES = 500_000_000  # ImportJobLimits.MaxByteSize
STALE_RECEIVING = 15 * 60  # seconds: an idle receiving job is replaced by a new one
READY_TIMEOUT = 2  # seconds: /ready's CanConnect budget (2.10)
PASSWORD_MIN, PASSWORD_MAX = 16, 64  # PasswordPolicy (2.5+)
DEFAULT_CONNECTION = "Host=localhost;Port=5432;Database=tempo;Username=postgres;Password=postgres"  # appsettings.json
# Stand-in only (upstream has no such setting): seconds a running import job
# waits before it unzips, so tests can catch it running.
IMPORT_DELAY_VARIABLE = "TEMPO_E2E_IMPORT_DELAY_SECONDS"

# ------------------------------------------------------------------ release


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("-")[0].split(".") if part.isdigit())


def _baked_release() -> tuple[int, ...]:
    """The release this image keeps the contract of: /app/VERSION, written at build time."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")) as fh:
            return _version_tuple(fh.read())
    except OSError:
        return _version_tuple(os.environ.get("TEMPO_VERSION") or "2.1.0")


RELEASE = _baked_release()


def since(version: str) -> bool:
    """True when the baked release is `version` or later (compared as a version tuple)."""
    return _version_tuple(version) <= RELEASE


# ------------------------------------------------------------------ output

_secrets: list[str] = []


def redact(text: str) -> str:
    for value in _secrets:
        if value:
            text = text.replace(value, "***")
    return text


def log(level: str, message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp} {level}] {redact(message)}", flush=True)


def crash(message: str, exception: str = "System.InvalidOperationException") -> NoReturn:
    """Mimic an unhandled start-up exception: message on stderr, code 134."""
    print(f"Unhandled exception. {exception}: {redact(message)}", file=sys.stderr, flush=True)
    sys.exit(DOTNET_CRASH)


# ------------------------------------------------------------------ configuration


def load_config(environ: Mapping[str, str]) -> dict[str, str]:
    """ASP.NET maps env var A__B to config key A:B, case-insensitively."""
    return {k.replace("__", ":").lower(): v for k, v in environ.items()}


def parse_connection_string(text: str) -> dict[str, str]:
    """Npgsql `Key=Value;...` (values may be quoted) -> psycopg2 keywords."""
    aliases = {
        "host": "host",
        "server": "host",
        "port": "port",
        "database": "dbname",
        "db": "dbname",
        "username": "user",
        "user id": "user",
        "userid": "user",
        "user": "user",
        "user name": "user",
        "password": "password",
        "pwd": "password",
        "timeout": "connect_timeout",
    }
    params = {"host": "localhost", "port": "5432", "connect_timeout": "15"}
    pattern = re.compile(r"""\s*([^=;]+?)\s*=\s*("(?:[^"]|"")*"|'(?:[^']|'')*'|[^;]*)\s*(?:;|$)""")
    pos = 0
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m or m.end() == pos:
            break
        key, value = m.group(1).lower(), m.group(2)
        if value[:1] in "\"'" and len(value) >= 2:
            value = value[1:-1].replace(value[0] * 2, value[0])
        if key in aliases:
            params[aliases[key]] = value
        pos = m.end()
    return params


class Settings:
    def __init__(self, environ: Mapping[str, str]) -> None:
        cfg = load_config(environ)
        self.connection_string = cfg.get("connectionstrings:defaultconnection")  # None: appsettings default
        self.db = parse_connection_string(self.connection_string or DEFAULT_CONNECTION)
        _secrets.append(self.db.get("password", ""))
        # IHostEnvironment: ASPNETCORE_ENVIRONMENT (DOTNET_ENVIRONMENT), Production when unset.
        self.environment = (
            environ.get("ASPNETCORE_ENVIRONMENT") or environ.get("DOTNET_ENVIRONMENT") or ""
        ).strip() or "Production"
        self.is_production = self.environment.lower() == "production"
        self.cookie_domain = (cfg.get("cookie:domain") or "").strip() or None
        self.remember_me_days = int(cfg.get("jwt:remembermeexpirationdays") or 30)
        self.logging_profile = cfg.get("tempo:logging:profile")
        self.carto_key = (cfg.get("cartobasemaps:apikey") or "").strip()
        # .NET Path.GetTempPath() on Unix: $TMPDIR when set, else /tmp.
        self.temp_path = environ.get("TMPDIR") or "/tmp"
        self.import_delay = float(environ.get(IMPORT_DELAY_VARIABLE) or 0)
        self.jwt_key = cfg.get("jwt:secretkey")
        self.issuer = cfg.get("jwt:issuer") or "Tempo"
        self.audience = cfg.get("jwt:audience") or "Tempo"
        self.expiration_days = int(cfg.get("jwt:expirationdays") or 7)
        self.cors_origins = [
            o.strip() for o in (cfg.get("cors:allowedorigins") or "http://localhost:3000").split(",") if o.strip()
        ]
        root = cfg.get("mediastorage:rootpath") or "./media"
        self.media_root = os.path.abspath(root)
        self.max_file_size = int(cfg.get("mediastorage:maxfilesizebytes") or 52_428_800)
        self.forwarded_headers = (environ.get("ASPNETCORE_FORWARDEDHEADERS_ENABLED") or "").strip().lower() == "true"
        self.urls = environ.get("ASPNETCORE_URLS") or ""
        self.http_ports = environ.get("ASPNETCORE_HTTP_PORTS") or ""

    def check_jwt_key(self) -> None:
        key = self.jwt_key
        if key is None:
            crash("JWT:SecretKey is not configured. Set the JWT__SecretKey environment variable.")
        _secrets.append(key)
        if key == PLACEHOLDER_KEY:
            crash(
                "JWT:SecretKey must be changed from the default placeholder value. "
                "Set the JWT__SecretKey environment variable with a secure random key."
            )
        if len(key) < MIN_KEY_LENGTH:
            crash(f"JWT:SecretKey must be at least {MIN_KEY_LENGTH} characters long.")

    def check_logging_profile(self) -> str:
        """2.10 LoggingProfile.Parse: empty -> standard; standard/debug (any case); else start-up fails."""
        value = (self.logging_profile or "").strip()
        if not value or value.lower() == "standard":
            return "standard"
        if value.lower() == "debug":
            return "debug"
        crash(f"Unknown Tempo:Logging:Profile '{value}'. Allowed values: standard, debug.")

    def check_connection_string(self) -> None:
        """2.10: PostgreSQL only; an empty or SQLite (`Data Source=`) string fails the start."""
        text = self.connection_string
        if text is not None and (not text.strip() or text.strip().lower().startswith("data source=")):
            crash(
                "PostgreSQL is required. ConnectionStrings:DefaultConnection must be a PostgreSQL connection "
                "string. SQLite is not supported (including Data Source= strings)."
            )

    def endpoints(self) -> list[tuple[str, int]]:
        """(host, port) pairs from ASPNETCORE_URLS, else ASPNETCORE_HTTP_PORTS."""
        urls = [u.strip() for u in self.urls.split(";") if u.strip()]
        if not urls and self.http_ports:
            urls = [f"http://+:{p.strip()}" for p in self.http_ports.split(";") if p.strip()]
        urls = urls or ["http://localhost:5000"]
        result: list[tuple[str, int]] = []
        for url in urls:
            m = re.fullmatch(r"(https?)://(\[[^\]]+\]|[^:/]+)(?::(\d+))?/?", url)
            if not m:
                crash(f"Invalid url: '{url}'")
            scheme, host, port = m.group(1), m.group(2), int(m.group(3) or 80)
            if scheme == "https":
                crash("Unable to configure HTTPS endpoint: the stand-in serves plain HTTP only.")
            if host in ("+", "*", "[::]", "0.0.0.0"):
                result.append(("::" if host != "0.0.0.0" else "0.0.0.0", port))
            elif host == "localhost":
                result.append(("127.0.0.1", port))
            else:
                result.append((host.strip("[]"), port))
        return result


# ------------------------------------------------------------------ database

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id uuid PRIMARY KEY,
    username text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);
ALTER TABLE users ADD COLUMN IF NOT EXISTS session_version integer NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS import_jobs (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    status text NOT NULL,
    filename text NOT NULL,
    byte_size bigint NOT NULL,
    bytes_received bigint NOT NULL DEFAULT 0,
    processed integer NOT NULL DEFAULT 0,
    total integer NOT NULL DEFAULT 0,
    successful integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    updated integer NOT NULL DEFAULT 0,
    errors integer NOT NULL DEFAULT 0,
    error_message text,
    unit_preference text,
    archive_path text,
    cancel_requested boolean NOT NULL DEFAULT false,
    last_chunk_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS "__EFMigrationsHistory" (
    "MigrationId" character varying(150) PRIMARY KEY,
    "ProductVersion" character varying(32) NOT NULL
);
CREATE TABLE IF NOT EXISTS workout_media (
    id uuid PRIMARY KEY,
    workout_id uuid NOT NULL,
    filename text NOT NULL,
    file_path text NOT NULL,
    mime_type text NOT NULL,
    file_size_bytes bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


def connect(settings: Settings, timeout: int | None = None) -> psycopg2.extensions.connection:
    params = dict(settings.db)
    if timeout is not None:
        params["connect_timeout"] = str(timeout)
    return psycopg2.connect(application_name="tempo-api", **params)


@contextmanager
def db_cursor(settings: Settings, timeout: int | None = None) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in one transaction on a fresh connection (closed afterwards):
    no pool, so a restarted Postgres is picked up by the next request."""
    conn = connect(settings, timeout)
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


EF_PRODUCT_VERSION = "9.0.0"


def migration_id(release: tuple[int, ...]) -> str:
    """EF Core's history row for `release`: a 14-digit prefix that sorts like the version (real ids sort by
    their timestamp), e.g. 00021001000000_Release_2_10_1."""
    major, minor, patch = (*release, 0, 0, 0)[:3]
    return f"{major:04d}{minor:02d}{patch:02d}000000_Release_{major}_{minor}_{patch}"


# The never-ready variant's forward migration (a row and a column no earlier release has), applied
# before it refuses to become ready: what a rollback must take away again.
NEVER_READY_MIGRATION = "20991231000000_Standin_NeverReady"


def never_ready() -> bool:
    """Stand-in only (build arg STANDIN_NEVER_READY): migrate forward, then never answer /health or /ready."""
    return os.environ.get("TEMPO_E2E_NEVER_READY") == "1"


def migrate(settings: Settings) -> None:
    """Like EF Core migrations at start: create the schema or fail."""
    try:
        with db_cursor(settings) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(4242)")  # two replicas, one migration
            cur.execute(SCHEMA)
            ids = [migration_id(RELEASE)] + ([NEVER_READY_MIGRATION] if never_ready() else [])
            for mid in ids:
                cur.execute(
                    'INSERT INTO "__EFMigrationsHistory" ("MigrationId", "ProductVersion") VALUES (%s, %s)'
                    " ON CONFLICT DO NOTHING",
                    (mid, EF_PRODUCT_VERSION),
                )
            if never_ready():
                cur.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS never_ready_marker boolean")
    except psycopg2.Error as exc:
        log("FTL", "Failed to apply database migrations. Application cannot start.")
        crash(f"Npgsql: {type(exc).__name__}: {str(exc).strip()}")
    log("INF", "Database migrations completed successfully")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)
    return f"pbkdf2_sha256$100000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, rounds, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(rounds))
        return hmac.compare_digest(got, base64.b64decode(digest))
    except ValueError:
        return False


def password_error(password: str, username: str) -> str | None:
    """Why a new password (register, reset) is refused, or None.

    2.5+: 16-64 characters (and at most 72 UTF-8 bytes, no character five
    times in a row, not containing a username of 3+ characters); upstream's
    common-password blocklist is not modelled. Before: at least 6 characters.
    """
    if not since("2.5.0"):
        return None if len(password) >= 6 else "Password must be at least 6 characters"
    if not password.strip():
        return "Password is required"
    if len(password) < PASSWORD_MIN:
        return f"Password must be at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"Password must be at most {PASSWORD_MAX} characters"
    if len(password.encode()) > 72:
        return "Password is too long when encoded (maximum 72 bytes in UTF-8); use a shorter passphrase"
    if re.search(r"(.)\1{4}", password, re.DOTALL):
        return "Password must not contain the same character repeated five or more times in a row"
    name = username.strip()
    if len(name) >= 3 and name.lower() in password.lower():
        return "Password must not contain your username"
    return None


# ------------------------------------------------------------------ JWT (HS256)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(
    settings: Settings, user_id: str, username: str, expires: int, session_version: int = 0, remember_me: bool = False
) -> str:
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims: dict[str, object] = {
        "nameid": user_id,
        "sub": user_id,
        "unique_name": username,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": expires,
        "iss": settings.issuer,
        "aud": settings.audience,
    }
    if since("2.2.0"):
        claims["remember_me"] = "true" if remember_me else "false"
    if since("2.5.0"):
        claims["sess_ver"] = str(session_version)
    signing_input = ".".join(_b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims))
    assert settings.jwt_key is not None, "checked at start"
    sig = hmac.new(settings.jwt_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


def read_jwt(settings: Settings, token: str) -> dict[str, Any] | None:
    """Claims of a valid token (signature, alg, iss, aud, lifetime), else None."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(_unb64url(head_b64))
        claims = json.loads(_unb64url(body_b64))
        assert settings.jwt_key is not None, "checked at start"
        expected = hmac.new(settings.jwt_key.encode(), f"{head_b64}.{body_b64}".encode(), hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(expected, _unb64url(sig_b64)):
            return None
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        now = time.time()
        if (
            claims.get("iss") != settings.issuer
            or settings.audience not in audiences
            or float(claims.get("exp", 0)) + CLOCK_SKEW < now
            or float(claims.get("nbf", 0)) - CLOCK_SKEW > now
        ):
            return None
        return claims if isinstance(claims, dict) else None  # a dict: claims.get() worked
    except (ValueError, TypeError, AttributeError):
        return None


# ------------------------------------------------------------------ HTTP


class BodyTooLarge(Exception):
    pass


MEDIA_PATH = re.compile(r"^/workouts/([0-9a-fA-F-]{36})/media(?:/([0-9a-fA-F-]{36}))?$")


class SendOptions(TypedDict, total=False):
    """Handler.send()'s options that send_json() passes on."""

    headers: list[tuple[str, str]] | None
    close: bool


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Kestrel"
    sys_version = ""
    settings: Settings  # set on the class in main()
    logging_profile = "standard"  # 2.10: the parsed Tempo:Logging:Profile

    # -- plumbing

    def log_message(self, fmt: str, *args: object) -> None:  # request lines come from _finish()
        pass

    def version_string(self) -> str:
        return "Kestrel"

    def _path(self) -> str:
        return urlsplit(self.path).path

    def is_https(self) -> bool:
        """ASP.NET Request.IsHttps: the scheme is https only when the forwarded
        headers middleware (ASPNETCORE_FORWARDEDHEADERS_ENABLED) rewrote it from
        the last X-Forwarded-Proto value (ForwardLimit = 1)."""
        if not self.settings.forwarded_headers:
            return False
        values = [v.strip() for v in self.headers.get("X-Forwarded-Proto", "").split(",")]
        return bool(values) and values[-1].lower() == "https"

    def _cors_headers(self) -> list[tuple[str, str]]:
        origin = self.headers.get("Origin")
        if origin and origin in self.settings.cors_origins:
            return [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin"),
            ]
        return []

    def send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> None:
        if not close and self._body_pending() and not self.headers.get("Transfer-Encoding"):
            # Kestrel drains a small unread request body so the connection stays usable
            # (and a client still sending, e.g. a 512 KiB chunk, reads the answer).
            with suppress(BodyTooLarge):
                for _ in self.iter_body(DRAIN_LIMIT):
                    pass
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in self._cors_headers() + (headers or []):
            self.send_header(name, value)
        if close or self._body_pending():  # unread body: the connection cannot be reused
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self._status = status

    def send_json(self, status: int, payload: object, **kw: Unpack[SendOptions]) -> None:
        self.send(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json; charset=utf-8", **kw)

    def _body_pending(self) -> bool:
        if getattr(self, "_body_read", False):
            return False
        return (
            "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            or int(self.headers.get("Content-Length") or 0) > 0
        )

    def iter_body(self, limit: int) -> Iterator[bytes]:
        """Yield the request body in chunks (Content-Length or chunked)."""
        yield from self._iter_body(limit)
        self._body_read = True

    def _iter_body(self, limit: int) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                total += size
                if total > limit:
                    raise BodyTooLarge
                while size:
                    chunk = self.rfile.read(min(size, CHUNK))
                    if not chunk:
                        raise ConnectionError("client closed mid-body")
                    size -= len(chunk)
                    yield chunk
                self.rfile.readline(1024)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            if remaining > limit:
                raise BodyTooLarge
            while remaining:
                chunk = self.rfile.read(min(remaining, CHUNK))
                if not chunk:
                    raise ConnectionError("client closed mid-body")
                remaining -= len(chunk)
                yield chunk

    def read_json(self) -> object:
        try:
            return json.loads(b"".join(self.iter_body(JSON_BODY_LIMIT)) or b"{}")
        except json.JSONDecodeError:
            return None

    def current_user(self) -> dict[str, str] | None:
        token = None
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "authToken" and value:
                token = token or value
        claims = read_jwt(self.settings, token) if token else None
        if not claims:
            return None
        # Every authenticated request reloads the user; 2.5+ also compares the
        # token's session version, which a password reset bumps.
        with db_cursor(self.settings, timeout=5) as cur:
            cur.execute("SELECT id, username, session_version FROM users WHERE id = %s", (claims.get("sub"),))
            row = cur.fetchone()
        if not row:
            return None
        if since("2.5.0") and claims.get("sess_ver") != str(row[2]):
            return None
        return {"id": str(row[0]), "username": row[1]}

    def auth_cookie(self, token: str, expires: int | None) -> str:
        """Set-Cookie value in ASP.NET's attribute order.

        2.1.x-2.3.x: `secure` iff Request.IsHttps, host-only. 2.4+: `secure`
        always in Production (else IsHttps), `domain` from Cookie:Domain.
        """
        secure = self.is_https() or (since("2.4.0") and self.settings.is_production)
        parts = [f"authToken={token}"]
        if expires is not None:
            parts.append(f"expires={email.utils.formatdate(expires, usegmt=True)}")
        if since("2.4.0") and self.settings.cookie_domain:
            parts.append(f"domain={self.settings.cookie_domain}")
        parts.append("path=/")
        if secure:
            parts.append("secure")
        parts += ["samesite=lax", "httponly"]
        return "; ".join(parts)

    # -- dispatch

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        self._status = 0
        self._body_read = False
        path = self._path()
        try:
            route = self.route(method, path)
            if route is None:
                self.send(404)
            else:
                route()
        except BodyTooLarge:
            self.send_json(413, {"error": "Request body too large"}, close=True)
        except psycopg2.Error as exc:
            # The driver's first line (log() redacts every secret value): enough to tell a refused
            # connection from a lock timeout.
            first = str(exc).strip().splitlines()[:1]
            log("ERR", f"Database error on {method} {path}: {type(exc).__name__}: {''.join(first)[:200]}")
            self.send_json(500, {"error": "Database error"}, close=True)
        except ConnectionError:  # the client went away
            self.close_connection = True
        except Exception as exc:  # never a traceback: it could quote request data
            log("ERR", f"Unhandled {type(exc).__name__} on {method} {path}")
            if not self._status:
                self.send_json(500, {"error": "Internal server error"}, close=True)
        elapsed = (time.monotonic() - started) * 1000
        log("INF", f"HTTP {method} {path} responded {self._status} in {elapsed:.1f} ms")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_OPTIONS(self) -> None:  # CORS preflight
        """ASP.NET's CORS middleware answers every preflight 204; the allow
        headers (any method, any header, credentials, max-age 1 day) only for
        an origin in CORS:AllowedOrigins. Not a preflight: no OPTIONS route."""
        started = time.monotonic()
        self._body_read = False
        if not self.headers.get("Origin") or not self.headers.get("Access-Control-Request-Method"):
            self.send(405, headers=[("Allow", "GET, POST, PUT, DELETE")])
        elif self._cors_headers():
            headers = [
                ("Access-Control-Allow-Methods", self.headers.get("Access-Control-Request-Method", "")),
                ("Access-Control-Max-Age", "86400"),
            ]
            if self.headers.get("Access-Control-Request-Headers"):
                headers.append(("Access-Control-Allow-Headers", self.headers["Access-Control-Request-Headers"]))
            self.send(204, headers=headers)
        else:
            self.send(204)
        log(
            "INF",
            f"HTTP OPTIONS {self._path()} responded {self._status} in {(time.monotonic() - started) * 1000:.1f} ms",
        )

    def route(self, method: str, path: str) -> Callable[[], None] | None:
        table: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "/health"): self.health,
            ("POST", "/auth/register"): self.register,
            ("POST", "/auth/login"): self.login,
            ("POST", "/auth/logout"): self.logout,
            ("GET", "/auth/me"): self.me,
            ("GET", "/auth/registration-available"): self.registration_available,
        }
        if since("2.7.0"):
            table[("POST", "/workouts/import/bulk")] = lambda: self.accept_whole_archive("strava_bulk")
            table[("POST", "/workouts/import/export")] = lambda: self.accept_whole_archive("tempo_export")
            table[("POST", "/workouts/import/jobs")] = self.create_import_job
            table[("GET", "/workouts/import/jobs/current")] = self.current_import_job
        else:
            table[("POST", "/workouts/import/bulk")] = lambda: self.sync_import("strava_bulk")
            table[("POST", "/workouts/import/export")] = lambda: self.sync_import("tempo_export")
        if since("2.8.0"):
            table[("GET", "/settings/carto-basemaps")] = self.carto_basemaps
        if since("2.10.0"):
            table[("GET", "/ready")] = self.ready
            table[("GET", "/version")] = self.version
        if (method, path) in table:
            return table[(method, path)]
        m = MEDIA_PATH.match(path)
        if m and method == "POST" and not m.group(2):
            return lambda: self.upload_media(m.group(1))
        if m and method == "GET" and m.group(2):
            return lambda: self.get_media(m.group(1), m.group(2))
        j = JOB_PATH.match(path) if since("2.7.0") else None
        if j and j.group(2) == "/complete" and method == "POST":
            return lambda: self.job_call(j.group(1), complete_job)
        if j and j.group(2) is None and method == "GET":
            return lambda: self.job_call(j.group(1), get_job)
        if j and j.group(2) is None and method == "DELETE":
            return lambda: self.job_call(j.group(1), cancel_job)
        if j and j.group(2) and j.group(3) is not None and method == "PUT":
            return lambda: self.put_chunk(j.group(1), int(j.group(3)))
        return None

    # -- endpoints

    def health(self) -> None:
        if never_ready():
            self.send_json(503, {"status": "unhealthy"})
            return
        self.send_json(200, {"status": "healthy"})

    def ready(self) -> None:
        """2.10+: 200 when Postgres answers `SELECT 1` within 2 s, else 503 (no exception text)."""
        ok = False
        with suppress(psycopg2.Error), db_cursor(self.settings, timeout=READY_TIMEOUT) as cur:
            if never_ready():
                raise psycopg2.Error("the never-ready stand-in")
            cur.execute(f"SET statement_timeout = {READY_TIMEOUT * 1000}")
            cur.execute("SELECT 1")
            ok = cur.fetchone()[0] == 1
        if ok:
            self.send_json(200, {"status": "ready", "checks": {"database": "ok"}})
        else:
            log("WRN", "Readiness check failed: database")
            self.send_json(503, {"status": "not_ready", "checks": {"database": "fail"}})

    def version(self) -> None:
        """2.10+ public support snapshot: release, image references, no secrets, no Postgres."""

        def env(name: str) -> str:
            return (os.environ.get(name) or "").strip() or "unknown"

        info = {
            "version": os.environ.get("TEMPO_VERSION") or ".".join(map(str, RELEASE)),
            "gitCommit": env("TEMPO_GIT_COMMIT"),
            "buildDate": env("TEMPO_BUILD_DATE"),
            "logProfile": Handler.logging_profile,
            "environment": self.settings.environment,
            "apiImage": env("TEMPO_API_IMAGE"),
            "frontendImage": env("TEMPO_FRONTEND_IMAGE"),
        }
        info["snapshot"] = "Tempo support snapshot\n\n" + "".join(f"{k}: {v}\n" for k, v in info.items())
        self.send_json(200, info)

    def carto_basemaps(self) -> None:
        """2.8+: hands the configured CARTO key to any signed-in browser."""
        if not self.current_user():
            return self.send(401)
        self.send_json(200, {"apiKey": self.settings.carto_key})

    def registration_available(self) -> None:
        with db_cursor(self.settings) as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM users)")
            exists = cur.fetchone()[0]
        self.send_json(200, {"registrationAvailable": not exists})

    def register(self) -> None:
        body = self.read_json()
        if not isinstance(body, dict):
            return self.send_json(400, {"error": "Invalid JSON"})
        username = str(body.get("username") or "").strip()
        password = str(body.get("password") or "")
        if not 1 <= len(username) <= 50:
            return self.send_json(400, {"error": "Username must be between 1 and 50 characters"})
        problem = password_error(password, username)
        if problem:
            return self.send_json(400, {"error": problem})
        user_id = str(uuid.uuid4())
        with db_cursor(self.settings) as cur:
            cur.execute("LOCK TABLE users IN EXCLUSIVE MODE")  # one user per instance
            cur.execute("SELECT EXISTS (SELECT 1 FROM users)")
            if cur.fetchone()[0]:
                return self.send_json(400, {"error": "Registration is disabled. An account already exists."})
            cur.execute(
                "INSERT INTO users (id, username, password_hash) VALUES (%s, %s, %s)",
                (user_id, username, hash_password(password)),
            )
        log("INF", f"User registered: {username}")
        self.send_json(200, {"message": "User registered successfully", "userId": user_id, "username": username})

    def login(self) -> None:
        body = self.read_json()
        if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
            return self.send_json(400, {"error": "Username and password are required"})
        username = str(body["username"]).strip()
        # System.Text.Json web defaults: property names are case-insensitive.
        remember_me = since("2.2.0") and any(k.lower() == "rememberme" and v is True for k, v in body.items())
        with db_cursor(self.settings) as cur:
            cur.execute("SELECT id, password_hash, session_version FROM users WHERE username = %s", (username,))
            row = cur.fetchone()
            if not row or not verify_password(str(body["password"]), row[1]):
                return self.send(401)
            cur.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (row[0],))
        days = self.settings.remember_me_days if remember_me else self.settings.expiration_days
        expires = int(time.time()) + days * 86400
        token = make_jwt(self.settings, str(row[0]), username, expires, row[2], remember_me)
        log("INF", f"User logged in: {username}")
        expires_at = datetime.datetime.fromtimestamp(expires, datetime.UTC)
        self.send_json(
            200,
            {"userId": str(row[0]), "username": username, "expiresAt": expires_at.isoformat().replace("+00:00", "Z")},
            headers=[("Set-Cookie", self.auth_cookie(token, expires))],
        )

    def logout(self) -> None:
        if since("2.4.0"):  # deleted with the options it was set with (domain, secure)
            cookie = self.auth_cookie("", 0)
        else:
            cookie = "authToken=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/"
        self.send_json(200, {"message": "Logged out successfully"}, headers=[("Set-Cookie", cookie)])

    def me(self) -> None:
        user = self.current_user()
        if not user:
            return self.send(401)
        self.send_json(200, {"userId": user["id"], "username": user["username"]})

    def upload_media(self, workout_id: str) -> None:
        if not self.current_user():
            return self.send(401)
        ctype = self.headers.get("Content-Type", "")
        multipart = ctype.lower().startswith("multipart/form-data")
        limit = self.settings.max_file_size + (1 << 20 if multipart else 0)  # form envelope
        media_id = str(uuid.uuid4())
        folder = os.path.join(self.settings.media_root, workout_id)
        tmp_path = os.path.join(self.settings.media_root, f".upload-{media_id}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp_path, "wb") as fh:
                for chunk in self.iter_body(limit):
                    fh.write(chunk)
            filename = self.headers.get("X-File-Name", "upload.bin")
            mime = ctype or "application/octet-stream"
            if multipart:
                with open(tmp_path, "rb") as fh:
                    filename, mime, data = extract_form_file(fh.read(), ctype)
                if len(data) > self.settings.max_file_size:
                    raise BodyTooLarge
                with open(tmp_path, "wb") as fh:
                    fh.write(data)
            ext = os.path.splitext(os.path.basename(filename))[1][:10]
            final = os.path.join(folder, media_id + ext)
            os.replace(tmp_path, final)
        except ValueError as exc:
            return self.send_json(400, {"error": str(exc)})
        except ConnectionError:
            raise
        except OSError as exc:  # e.g. a read-only or root-owned media folder
            log("ERR", f"Media storage failed: {exc.strerror}")
            return self.send_json(500, {"error": "Media storage failed"})
        finally:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
        size = os.path.getsize(final)
        with db_cursor(self.settings) as cur:
            cur.execute(
                "INSERT INTO workout_media (id, workout_id, filename, file_path, mime_type,"
                " file_size_bytes) VALUES (%s, %s, %s, %s, %s, %s)",
                (media_id, workout_id, filename, final, mime, size),
            )
        log("INF", f"Uploaded media file for workout {workout_id}")
        self.send_json(200, {"id": media_id, "filename": filename, "mimeType": mime, "fileSizeBytes": size})

    def get_media(self, workout_id: str, media_id: str) -> None:
        if not self.current_user():
            return self.send(401)
        with db_cursor(self.settings) as cur:
            cur.execute(
                "SELECT file_path, mime_type FROM workout_media WHERE id = %s AND workout_id = %s",
                (media_id, workout_id),
            )
            row = cur.fetchone()
        if not row or not os.path.isfile(row[0]):
            return self.send_json(404, {"error": "Media not found"})
        size = os.path.getsize(row[0])
        self.send_response(200)
        self.send_header("Content-Type", row[1])
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(row[0], "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                self.wfile.write(block)
        self._status = 200

    # -- imports

    def receive_form_file(self) -> "FormFile | None":
        """Buffer a multipart body in the temp folder, as ASP.NET's form reader
        does (ASPNETCORE_TEMP, else Path.GetTempPath()), and locate its `file`
        part. Answers 400 itself (and returns None) when there is no such part."""
        ctype = self.headers.get("Content-Type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/form-data") or not m:
            self.send_json(400, {"error": "Request must be multipart/form-data"})
            return None
        folder = os.environ.get("ASPNETCORE_TEMP") or self.settings.temp_path
        path = os.path.join(folder, f"ASPNETCORE_{uuid.uuid4()}.tmp")
        body = self.iter_body(MAX_REQUEST_BODY)
        try:
            with open(path, "wb") as fh:
                for chunk in body:
                    fh.write(chunk)
            found = find_form_file(path, m.group(1).encode(), "file")
        except ConnectionError:  # the client went away
            with suppress(OSError):
                os.unlink(path)
            raise
        except OSError as exc:  # buffering failed: an unhandled IOException, a bare 500
            with suppress(OSError):
                os.unlink(path)
            for _ in body:  # drain, as Kestrel does, so the client reads the answer
                pass
            log("ERR", f"Unhandled IOException reading the form: {exc.strerror or exc}")
            self.send(500)
            return None
        except BaseException:
            with suppress(OSError):
                os.unlink(path)
            raise
        if found is None:
            os.unlink(path)
            self.send_json(400, {"error": "No file uploaded"})
            return None
        return found

    def sync_import(self, kind: str) -> None:
        """Before 2.7: the whole upload is handled in the request. The ZIP is
        fully extracted into Path.GetTempPath()/<guid>/ (removed afterwards);
        any failure there (ENOSPC on a small /tmp, a broken ZIP) answers 500."""
        if not self.current_user():
            return self.send(401)
        form = self.receive_form_file()
        if form is None:
            return None
        title = "Error processing bulk import" if kind == "strava_bulk" else "Error importing Tempo export"
        target = os.path.join(self.settings.temp_path, str(uuid.uuid4()))
        try:
            if not form.filename.lower().endswith(".zip"):
                return self.send_json(400, {"error": "File must be a ZIP file"})
            with open(form.path, "rb") as fh:
                files, size = extract_zip(window(fh, form.offset, form.length), target)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            log("ERR", f"{title}: {detail}")
            return self.send_problem(500, title, detail)
        finally:
            shutil.rmtree(target, ignore_errors=True)
            with suppress(OSError):
                os.unlink(form.path)
        log(
            "INF",
            f"Import of {form.length} bytes extracted {files} files ({size} bytes) into {self.settings.temp_path}",
        )
        extras = {"bytes": form.length, "extractedFiles": files, "extractedBytes": size}  # stand-in only
        if kind == "strava_bulk":
            summary: dict[str, object] = {
                "totalProcessed": files,
                "successful": files,
                "skipped": 0,
                "updated": 0,
                "errors": 0,
                "errorDetails": [],
            }
        else:
            counts = {"imported": 0, "skipped": 0, "errors": 0}
            summary = {
                "success": True,
                "importedAt": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
                "statistics": {name: dict(counts) for name in EXPORT_STATISTICS},
                "warnings": [],
                "errors": [],
            }
        self.send_json(200, {**summary, **extras})

    def accept_whole_archive(self, kind: str) -> None:
        """2.7+: a whole-body upload (API clients) becomes a queued import job: 202."""
        if not self.current_user():
            return self.send(401)
        form = self.receive_form_file()
        if form is None:
            return None
        try:
            with open(form.path, "rb") as fh:
                status, payload = accept_archive(self.settings, kind, form, window(fh, form.offset, form.length))
        finally:
            with suppress(OSError):
                os.unlink(form.path)
        self.send_job_result(status, payload)

    def create_import_job(self) -> None:
        if not self.current_user():
            return self.send(401)
        body = self.read_json()
        if not isinstance(body, dict):
            return self.send_json(400, {"error": "Invalid request body"})
        fields = {k.lower(): v for k, v in body.items()}
        size = fields.get("bytesize")
        status, payload = create_job(
            self.settings,
            str(fields.get("kind") or ""),
            str(fields.get("filename") or ""),
            size if isinstance(size, int) and not isinstance(size, bool) else 0,
            str(fields["unitpreference"]) if fields.get("unitpreference") else None,
        )
        self.send_job_result(status, payload)

    def current_import_job(self) -> None:
        if not self.current_user():
            return self.send(401)
        with db_cursor(self.settings) as cur:
            row = active_job(cur)
        if row is None:
            return self.send(204)
        self.send_json(200, job_document(row))

    def job_call(self, job_id: str, action: "Callable[[Settings, str], JobResult]") -> None:
        if not self.current_user():
            return self.send(401)
        self.send_job_result(*action(self.settings, job_id))

    def put_chunk(self, job_id: str, index: int) -> None:
        if not self.current_user():
            return self.send(401)
        query = parse_qs(urlsplit(self.path).query)
        total = (query.get("total") or [""])[0]
        if not re.fullmatch(r"-?\d+", total):
            return self.send_json(400, {"error": 'Required parameter "int total" was not provided from query string.'})
        self.send_job_result(*put_chunk(self.settings, job_id, index, int(total), self.iter_body(MAX_REQUEST_BODY)))

    def send_job_result(self, status: int, payload: "dict[str, object] | None") -> None:
        if status == 204:
            self.send(204)
        elif status >= 500:
            self.send_problem(status, "Error accepting bulk import", str((payload or {}).get("error", "")))
        else:
            self.send_json(status, payload)

    def send_problem(self, status: int, title: str, detail: str) -> None:
        body = {
            "type": "https://tools.ietf.org/html/rfc9110#section-15.6.1",
            "title": title,
            "status": status,
            "detail": detail,
        }
        self.send(status, json.dumps(body).encode(), "application/problem+json")


# ------------------------------------------------------------------ imports

EXPORT_STATISTICS = (
    "settings",
    "shoes",
    "workouts",
    "routes",
    "splits",
    "timeSeries",
    "media",
    "bestEfforts",
    "rawFiles",
)
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
JOB_PATH = re.compile(rf"^/workouts/import/jobs/({_GUID})(/complete|/chunks/(-?\d+))?$")
JOB_COLUMNS = (
    "id, kind, status, filename, byte_size, bytes_received, processed, total, successful, skipped,"
    " updated, errors, error_message, archive_path, last_chunk_at, created_at"
)
ACTIVE = ("receiving", "queued", "running")
JobResult = tuple[int, dict[str, object] | None]
_job_lock = threading.Lock()  # one active job: create/accept are serialised
_job_queue: "queue.Queue[str]" = queue.Queue()


class FormFile:
    """The `file` part of a multipart body buffered at `path`."""

    def __init__(self, path: str, filename: str, offset: int, length: int) -> None:
        self.path, self.filename, self.offset, self.length = path, filename, offset, length


class FileWindow(io.RawIOBase):
    """A seekable read-only view of bytes [start, start + length) of an open file."""

    def __init__(self, fh: IO[bytes], start: int, length: int) -> None:
        super().__init__()
        self._fh, self._start, self._length, self._pos = fh, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._length - self._pos)
        if want <= 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(view[:want])  # type: ignore[attr-defined]
        got = got or 0
        self._pos += got
        return int(got)


def window(fh: IO[bytes], start: int, length: int) -> IO[bytes]:
    return io.BufferedReader(FileWindow(fh, start, length), 1 << 20)


def find_form_file(path: str, boundary: bytes, field: str) -> FormFile | None:
    """Scan a buffered multipart body for the part named `field` that carries a file."""
    delimiter = b"\r\n--" + boundary
    positions: list[int] = []
    with open(path, "rb") as fh:
        head = fh.read(len(delimiter))
        if head.startswith(delimiter[2:]):
            positions.append(-2)  # the body opens with the first delimiter (no CRLF before it)
        offset, carry = 0, b""
        fh.seek(0)
        for block in iter(lambda: fh.read(1 << 20), b""):
            data = carry + block
            start = 0
            while (hit := data.find(delimiter, start)) >= 0:
                positions.append(offset - len(carry) + hit)
                start = hit + 1
            carry = data[-(len(delimiter) - 1) :]
            offset += len(block)
        for begin, end in itertools.pairwise(positions):
            part_start = begin + len(delimiter) + 2  # past the delimiter's CRLF
            fh.seek(part_start)
            head_bytes = fh.read(16384)
            header_end = head_bytes.find(b"\r\n\r\n")
            if header_end < 0:
                continue
            headers = head_bytes[:header_end].decode("utf-8", "replace")
            name = re.search(r'(?i)content-disposition:.*?\bname="([^"]*)"', headers)
            filename = re.search(r'filename="([^"]*)"', headers)
            if name and name.group(1) == field and filename:
                data_start = part_start + header_end + 4
                return FormFile(path, os.path.basename(filename.group(1)), data_start, end - data_start)
    return None


def extract_zip(source: IO[bytes], into: str) -> tuple[int, int]:
    """Extract every entry under `into` (BulkImportService.ExtractZipArchive); (files, bytes)."""
    files = size = 0
    os.makedirs(into, exist_ok=True)
    root = os.path.realpath(into)
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            target = os.path.realpath(os.path.join(root, info.filename))
            if not target.startswith(root + os.sep):
                raise ValueError(f"ZIP entry outside the extraction folder: {info.filename}")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            files += 1
            size += info.file_size
    return files, size


def job_document(row: tuple[Any, ...]) -> dict[str, object]:
    """ImportJobDocument as System.Text.Json writes it (camelCase)."""
    doc: dict[str, object] = {
        "id": str(row[0]),
        "kind": row[1],
        "status": row[2],
        "filename": row[3],
        "byteSize": row[4],
        "bytesReceived": row[5],
        "processed": row[6],
        "total": row[7],
        "successful": row[8],
        "skipped": row[9],
        "updated": row[10],
        "errors": row[11],
        "errorDetails": [],
        "errorMessage": row[12],
    }
    if row[1] == "tempo_export" and row[2] == "completed":
        doc["statistics"] = {name: {"imported": 0, "skipped": 0, "errors": 0} for name in EXPORT_STATISTICS}
        doc["warnings"] = []
        doc["errorMessages"] = []
    return doc


def job_dir(settings: Settings, job_id: str) -> str:
    return os.path.join(settings.media_root, "imports", job_id)


def chunk_path(settings: Settings, job_id: str, index: int) -> str:
    return os.path.join(job_dir(settings, job_id), "chunks", f"{index:08d}.part")


def expected_chunks(byte_size: int) -> int:
    return 0 if byte_size <= 0 else (byte_size + IMPORT_CHUNK_BYTES - 1) // IMPORT_CHUNK_BYTES


def fetch_job(cur: Any, job_id: str, lock: bool = False) -> tuple[Any, ...] | None:
    cur.execute(f"SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = %s{' FOR UPDATE' if lock else ''}", (job_id,))
    row: tuple[Any, ...] | None = cur.fetchone()
    return row


def active_job(cur: Any) -> tuple[Any, ...] | None:
    cur.execute(f"SELECT {JOB_COLUMNS} FROM import_jobs WHERE status IN %s ORDER BY created_at DESC LIMIT 1", (ACTIVE,))
    row: tuple[Any, ...] | None = cur.fetchone()
    return row


def fail_job(cur: Any, settings: Settings, job_id: str, message: str) -> None:
    cur.execute(
        "UPDATE import_jobs SET status = 'failed', error_message = %s, finished_at = now(), archive_path = NULL"
        " WHERE id = %s",
        (message, job_id),
    )
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)


def validate_new_job(kind: str, filename: str, byte_size: int, unit_preference: str | None) -> str | None:
    if not kind.strip():
        return "kind is required"
    if kind not in ("strava_bulk", "tempo_export"):
        return "kind must be strava_bulk or tempo_export"
    if kind == "tempo_export" and unit_preference and unit_preference.strip():
        return "unitPreference is not allowed for tempo_export"
    if not filename.strip() or not filename.lower().endswith(".zip"):
        return "File must be a ZIP file"
    if byte_size <= 0:
        return "byteSize must be greater than 0"
    if byte_size > IMPORT_MAX_BYTES:
        return "File exceeds the 500MB limit"
    return None


def replace_or_conflict(cur: Any, settings: Settings) -> JobResult | None:
    """One active job: a receiving job idle for 15 min is replaced, any other active job is a 409."""
    row = active_job(cur)
    if row is None:
        return None
    last = row[14] or row[15]
    if row[2] == "receiving" and time.time() - last.timestamp() >= STALE_RECEIVING:
        fail_job(cur, settings, str(row[0]), "replaced")
        return None
    return 409, job_document(row)


def create_job(settings: Settings, kind: str, filename: str, byte_size: int, unit: str | None) -> JobResult:
    problem = validate_new_job(kind, filename, byte_size, unit)
    if problem:
        return 400, {"error": problem}
    job_id = str(uuid.uuid4())
    with _job_lock, db_cursor(settings) as cur:
        blocked = replace_or_conflict(cur, settings)
        if blocked:
            return blocked
        os.makedirs(job_dir(settings, job_id), exist_ok=True)
        cur.execute(
            "INSERT INTO import_jobs (id, kind, status, filename, byte_size, unit_preference, archive_path,"
            " last_chunk_at) VALUES (%s, %s, 'receiving', %s, %s, %s, %s, now())",
            (job_id, kind, os.path.basename(filename), byte_size, unit or "metric", job_archive(settings, job_id)),
        )
        row = fetch_job(cur, job_id)
    assert row is not None, "just inserted"
    log("INF", f"Import job {job_id} created ({kind}, {byte_size} bytes)")
    return 201, job_document(row)


def job_archive(settings: Settings, job_id: str) -> str:
    return os.path.join(job_dir(settings, job_id), "archive.zip")


def accept_archive(settings: Settings, kind: str, form: FormFile, data: IO[bytes]) -> JobResult:
    problem = validate_new_job(kind, form.filename, form.length, None)
    if problem:
        return 400, {"error": problem}
    job_id = str(uuid.uuid4())
    with _job_lock, db_cursor(settings) as cur:
        blocked = replace_or_conflict(cur, settings)
        if blocked:
            return blocked
        try:
            os.makedirs(job_dir(settings, job_id), exist_ok=True)
            with open(job_archive(settings, job_id), "wb") as out:
                shutil.copyfileobj(data, out, 1 << 20)
        except OSError as exc:
            log("ERR", f"Failed to accept import upload: {exc.strerror}")
            shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
            return 500, {"error": exc.strerror or str(exc)}
        cur.execute(
            "INSERT INTO import_jobs (id, kind, status, filename, byte_size, bytes_received, unit_preference,"
            " archive_path, last_chunk_at) VALUES (%s, %s, 'queued', %s, %s, %s, 'metric', %s, now())",
            (job_id, kind, form.filename, form.length, form.length, job_archive(settings, job_id)),
        )
        row = fetch_job(cur, job_id)
    assert row is not None, "just inserted"
    _job_queue.put(job_id)
    return 202, job_document(row)


def put_chunk(settings: Settings, job_id: str, index: int, total: int, body: Iterator[bytes]) -> JobResult:
    incoming = os.path.join(job_dir(settings, job_id), f".incoming-{uuid.uuid4().hex}")
    try:
        with db_cursor(settings) as cur:
            row = fetch_job(cur, job_id, lock=True)
            if row is None:
                return 404, {"error": "Import job not found"}
            if row[2] != "receiving":
                return 400, {"error": "Job is not receiving chunks"}
            expected = expected_chunks(row[4])
            if total != expected or index < 0 or index >= expected:
                return 400, {"error": "Chunk index or total is invalid"}
            chunks = os.path.dirname(chunk_path(settings, job_id, 0))
            os.makedirs(chunks, exist_ok=True)
            size = 0
            with open(incoming, "wb") as fh:
                for block in body:
                    fh.write(block)
                    size += len(block)
            if size == 0:
                return 400, {"error": "Chunk is empty"}
            if index < expected - 1 and size != IMPORT_CHUNK_BYTES:
                return 400, {"error": "Chunk size is invalid"}
            if index != len([n for n in os.listdir(chunks) if n.endswith(".part")]):
                return 400, {"error": "Chunks must be uploaded sequentially"}
            os.replace(incoming, chunk_path(settings, job_id, index))
            cur.execute(
                "UPDATE import_jobs SET bytes_received = bytes_received + %s, last_chunk_at = now() WHERE id = %s",
                (size, job_id),
            )
            row = fetch_job(cur, job_id)
        assert row is not None, "locked above"
        return 200, job_document(row)
    finally:
        with suppress(OSError):
            os.unlink(incoming)


def complete_job(settings: Settings, job_id: str) -> JobResult:
    with db_cursor(settings) as cur:
        row = fetch_job(cur, job_id, lock=True)
        if row is None:
            return 404, {"error": "Import job not found"}
        if row[2] != "receiving":
            return 400, {"error": "Job is not receiving chunks"}
        expected = expected_chunks(row[4])
        if not all(os.path.exists(chunk_path(settings, job_id, i)) for i in range(expected)):
            return 400, {"error": "Not all chunk indexes are present"}
        archive = job_archive(settings, job_id)
        with open(archive, "wb") as out:
            for i in range(expected):
                with open(chunk_path(settings, job_id, i), "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        if os.path.getsize(archive) != row[4]:
            os.unlink(archive)
            return 400, {"error": "Assembled archive size does not match byteSize"}
        cur.execute(
            "UPDATE import_jobs SET status = 'queued', bytes_received = byte_size, archive_path = %s WHERE id = %s",
            (archive, job_id),
        )
        row = fetch_job(cur, job_id)
    assert row is not None, "locked above"
    _job_queue.put(job_id)
    log("INF", f"Import job {job_id} assembled and queued")
    return 202, job_document(row)


def get_job(settings: Settings, job_id: str) -> JobResult:
    with db_cursor(settings) as cur:
        row = fetch_job(cur, job_id)
    return (200, job_document(row)) if row else (404, {"error": "Import job not found"})


def cancel_job(settings: Settings, job_id: str) -> JobResult:
    with db_cursor(settings) as cur:
        row = fetch_job(cur, job_id, lock=True)
        if row is None:
            return 404, {"error": "Import job not found"}
        if row[2] not in ACTIVE:
            return 400, {"error": "Job cannot be cancelled"}
        cur.execute("UPDATE import_jobs SET cancel_requested = true WHERE id = %s", (job_id,))
        if row[2] != "running":  # a running job is failed as cancelled by the worker
            fail_job(cur, settings, job_id, "cancelled")
        row = fetch_job(cur, job_id)
    assert row is not None, "locked above"
    return 200, job_document(row)


def interrupt_incomplete_jobs(settings: Settings) -> None:
    """At start (2.7+): queued and running jobs fail as `interrupted`; their staging goes."""
    try:
        with db_cursor(settings) as cur:
            cur.execute("SELECT id FROM import_jobs WHERE status IN ('queued', 'running') FOR UPDATE")
            for (job_id,) in cur.fetchall():
                cur.execute("UPDATE import_jobs SET cancel_requested = true WHERE id = %s", (job_id,))
                fail_job(cur, settings, str(job_id), "interrupted")
                log("WRN", f"Import job {job_id} interrupted by a restart")
    except psycopg2.Error as exc:
        log("ERR", f"Failed to mark interrupted import jobs on startup: {type(exc).__name__}")


def cancel_requested(settings: Settings, job_id: str) -> bool:
    with db_cursor(settings) as cur:
        cur.execute("SELECT cancel_requested FROM import_jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
    return bool(row and row[0])


def process_job(settings: Settings, job_id: str) -> None:
    """ImportJobWorker: unzip the staged archive into the temp folder, count its files."""
    with db_cursor(settings) as cur:
        row = fetch_job(cur, job_id, lock=True)
        if row is None or row[2] != "queued":
            return
        if cancel_requested(settings, job_id):
            fail_job(cur, settings, job_id, "cancelled")
            return
        cur.execute("UPDATE import_jobs SET status = 'running', started_at = now() WHERE id = %s", (job_id,))
    archive = job_archive(settings, job_id)
    target = os.path.join(settings.temp_path, str(uuid.uuid4()))
    try:
        deadline = time.monotonic() + settings.import_delay
        while time.monotonic() < deadline:
            if cancel_requested(settings, job_id):
                raise InterruptedError("cancelled")
            time.sleep(0.2)
        with open(archive, "rb") as fh:
            files, size = extract_zip(fh, target)
        if cancel_requested(settings, job_id):
            raise InterruptedError("cancelled")
    except InterruptedError:
        with db_cursor(settings) as cur:
            fail_job(cur, settings, job_id, "cancelled")
        return
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log("ERR", f"Import job {job_id} failed: {message}")
        with db_cursor(settings) as cur:
            fail_job(cur, settings, job_id, message)
        return
    finally:
        shutil.rmtree(target, ignore_errors=True)
    with db_cursor(settings) as cur:
        cur.execute(
            "UPDATE import_jobs SET status = 'completed', finished_at = now(), error_message = NULL,"
            " archive_path = NULL, total = %s, processed = %s, successful = %s WHERE id = %s",
            (files, files, files, job_id),
        )
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
    log("INF", f"Import job {job_id} completed: {files} files, {size} bytes extracted")


def import_worker(settings: Settings) -> None:
    while True:
        job_id = _job_queue.get()
        try:
            process_job(settings, job_id)
        except Exception as exc:  # never a traceback
            log("ERR", f"Unhandled {type(exc).__name__} processing import job {job_id}")


def extract_form_file(data: bytes, content_type: str) -> tuple[str, str, bytes]:
    """(filename, content type, bytes) of the first file part of a form body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("multipart/form-data without boundary")
    for part in data.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, body = part.partition(b"\r\n\r\n")
        headers = head.decode("utf-8", "replace")
        name = re.search(r'filename="([^"]*)"', headers)
        if not sep or not name:
            continue
        mime = re.search(r"(?im)^content-type:\s*([^\s;]+)", headers)
        body = body[:-2] if body.endswith(b"\r\n") else body
        return name.group(1), mime.group(1) if mime else "application/octet-stream", body
    raise ValueError("No files provided")


class DualStackServer(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def bind(host: str, port: int) -> ThreadingHTTPServer:
    """Kestrel's bind, failing the start like an unhandled IOException."""
    shown = f"[{host}]" if ":" in host else host
    try:
        if host == "::":
            try:
                return DualStackServer(("::", port), Handler)
            except OSError as exc:
                if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    raise
                host = "0.0.0.0"  # no IPv6 here
        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        return server
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        crash(f"Failed to bind to address http://{shown}:{port}: {reason}.", "System.IO.IOException")


def serve(settings: Settings) -> None:
    Handler.settings = settings
    servers: list[ThreadingHTTPServer] = []
    for host, port in settings.endpoints():
        server = bind(host, port)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        shown = f"[{host}]" if ":" in host else host
        log("INF", f"Now listening on: http://{shown}:{port}")
    log("INF", "Application started. Press Ctrl+C to shut down.")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log("INF", "Application is shutting down...")
    for server in servers:
        server.shutdown()


# ------------------------------------------------------------------ verbs

RESET_USAGE = """Usage: dotnet Tempo.Api.dll reset-password [options]

Host-only password reset. Not an HTTP route.

Options:
  --username <name>     User to reset (optional when exactly one account exists)
  --password-stdin      Read the new password from stdin (no prompt)
  --help, -h            Show this help
"""


def parse_reset_args(args: list[str]) -> tuple[str | None, bool, bool] | str:
    """(username, from stdin, help), or the error to print."""
    username: str | None = None
    from_stdin = show_help = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--help", "-h"):
            show_help = True
        elif arg == "--username":
            if i + 1 >= len(args) or args[i + 1].startswith("-") or not args[i + 1].strip():
                return "--username requires a value."
            i += 1
            username = args[i].strip()
        elif arg == "--password-stdin":
            from_stdin = True
        elif arg == "--password" or arg.startswith("--password="):
            return "Do not pass --password; use --password-stdin."
        else:
            return f"Unknown argument: {arg}"
        i += 1
    return username, from_stdin, show_help


def reset_password(args: list[str]) -> int:
    """2.10 `dotnet Tempo.Api.dll reset-password [--username U] [--password-stdin]`.

    As upstream: arguments and the password are read first (no TTY and no
    --password-stdin: exit 1); then the whole host is built, so the logging
    profile, JWT:SecretKey and the connection string must be in this process's
    environment (else an unhandled exception, exit 134); migrations are
    skipped; the policy is enforced; the session version is bumped.
    """
    parsed = parse_reset_args(args)
    if isinstance(parsed, str):
        print(f"{parsed}\n\n{RESET_USAGE}", file=sys.stderr)
        return 1
    username, from_stdin, show_help = parsed
    if show_help:
        print(RESET_USAGE)
        return 0
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        print("No TTY. Use docker compose exec -it, or pass --password-stdin.", file=sys.stderr)
        return 1
    else:
        first = getpass.getpass("New password: ", stream=sys.stderr)
        if first != getpass.getpass("Confirm password: ", stream=sys.stderr):
            print("Passwords did not match.", file=sys.stderr)
            return 1
        password = first
    _secrets.append(password)

    settings = build_host(os.environ)  # no migrations
    try:
        with db_cursor(settings) as cur:
            if username:
                cur.execute("SELECT id, username FROM users WHERE username = %s", (username,))
                rows = cur.fetchall()
                if not rows:
                    print("User not found.", file=sys.stderr)
                    return 1
            else:
                cur.execute("SELECT id, username FROM users ORDER BY username")
                rows = cur.fetchall()
                if not rows:
                    print("No account exists. Register in the app.", file=sys.stderr)
                    return 1
                if len(rows) > 1:
                    print("Multiple users found. Pass --username <name>:", file=sys.stderr)
                    for row in rows:
                        print(row[1], file=sys.stderr)
                    return 1
            user_id, name = rows[0]
            problem = password_error(password, name)
            if problem:
                print(problem, file=sys.stderr)
                return 1
            cur.execute(
                "UPDATE users SET password_hash = %s, session_version = session_version + 1 WHERE id = %s",
                (hash_password(password), user_id),
            )
    except psycopg2.Error as exc:
        crash(f"{type(exc).__name__}: {str(exc).strip()}", "Npgsql.NpgsqlException")
    log("INF", f"Password reset via break-glass: {name}")
    print(f"Password reset for {name}. Existing sessions are invalid. Log in again.")
    return 0


def build_host(environ: Mapping[str, str]) -> Settings:
    """What WebApplication.CreateBuilder + Build do before anything runs: read
    and check the configuration, create the media folder."""
    settings = Settings(environ)
    if since("2.10.0"):
        Handler.logging_profile = settings.check_logging_profile()
        log("INF", f"Logging profile: {Handler.logging_profile}")
    settings.check_jwt_key()
    if since("2.10.0"):
        settings.check_connection_string()
    try:  # Directory.CreateDirectory at start, as upstream does
        os.makedirs(settings.media_root, exist_ok=True)
    except OSError as exc:
        crash(f"Cannot create media folder {settings.media_root}: {exc.strerror}", "System.IO.IOException")
    return settings


def main(argv: list[str]) -> int:
    # Before 2.10 there is no verb: .NET's command-line configuration ignores a
    # bare word, so `reset-password` starts the web host like no argument.
    if since("2.10.0") and argv[:1] == ["reset-password"]:
        return reset_password(argv[1:])
    settings = build_host(os.environ)
    migrate(settings)
    if since("2.7.0"):
        interrupt_incomplete_jobs(settings)
        threading.Thread(target=import_worker, args=(settings,), daemon=True).start()
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
