"""Stand-in for Tempo's ASP.NET Core API (Tempo.Api.dll) in end-to-end tests.

Keeps the runtime contract a deployment relies on, nothing more:
configuration from ASP.NET-style environment variables, start-up refusal with
a bad JWT key, schema creation at start (exit if Postgres is unreachable),
/health and /ready, cookie login whose `secure` flag follows Request.IsHttps,
media upload/download and a 500 MB streaming bulk import, and the
`reset-password` verb. Secret values are never written to any output.
"""

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, TypedDict, Unpack
from urllib.parse import urlsplit

import psycopg2
import psycopg2.extensions

PLACEHOLDER_KEY = "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE"
MIN_KEY_LENGTH = 32
MAX_REQUEST_BODY = 500_000_000  # Kestrel MaxRequestBodySize set by Tempo
JSON_BODY_LIMIT = 1 << 20
CLOCK_SKEW = 300  # seconds, ASP.NET JwtBearer default
CHUNK = 1 << 16
# Exit code of an unhandled .NET exception on Linux (the runtime aborts).
DOTNET_CRASH = 134

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


def crash(message: str) -> NoReturn:
    """Mimic an unhandled start-up exception: message on stderr, code 134."""
    print(f"Unhandled exception. System.InvalidOperationException: {redact(message)}", file=sys.stderr, flush=True)
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
        self.db = parse_connection_string(
            cfg.get(
                "connectionstrings:defaultconnection",
                "Host=localhost;Port=5432;Database=tempo;Username=postgres;Password=postgres",
            )
        )
        _secrets.append(self.db.get("password", ""))
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


def migrate(settings: Settings) -> None:
    """Like EF Core migrations at start: create the schema or fail."""
    try:
        with db_cursor(settings) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(4242)")  # two replicas, one migration
            cur.execute(SCHEMA)
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


# ------------------------------------------------------------------ JWT (HS256)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(settings: Settings, user_id: str, username: str, expires: int) -> str:
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
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
        with db_cursor(self.settings, timeout=5) as cur:
            cur.execute("SELECT id, username FROM users WHERE id = %s", (claims.get("sub"),))
            row = cur.fetchone()
        return {"id": str(row[0]), "username": row[1]} if row else None

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
            log("ERR", f"Database error on {method} {path}: {type(exc).__name__}")
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
        started = time.monotonic()
        headers = [
            ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers", "content-type")),
        ]
        self._body_read = False
        self.send(204 if self._cors_headers() else 405, headers=headers)
        log(
            "INF",
            f"HTTP OPTIONS {self._path()} responded {self._status} in {(time.monotonic() - started) * 1000:.1f} ms",
        )

    def route(self, method: str, path: str) -> Callable[[], None] | None:
        table = {
            ("GET", "/health"): self.health,
            ("GET", "/ready"): self.ready,
            ("POST", "/auth/register"): self.register,
            ("POST", "/auth/login"): self.login,
            ("POST", "/auth/logout"): self.logout,
            ("GET", "/auth/me"): self.me,
            ("GET", "/auth/registration-available"): self.registration_available,
            ("POST", "/workouts/import/bulk"): self.bulk_import,
            ("POST", "/workouts/import/export"): self.bulk_import,
        }
        if (method, path) in table:
            return table[(method, path)]
        m = MEDIA_PATH.match(path)
        if m and method == "POST" and not m.group(2):
            return lambda: self.upload_media(m.group(1))
        if m and method == "GET" and m.group(2):
            return lambda: self.get_media(m.group(1), m.group(2))
        return None

    # -- endpoints

    def health(self) -> None:
        self.send_json(200, {"status": "healthy"})

    def ready(self) -> None:
        try:
            with db_cursor(self.settings, timeout=3) as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except psycopg2.Error:
            self.send_json(503, {"status": "unhealthy", "database": "unreachable"})
            return
        self.send_json(200, {"status": "ready"})

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
        if len(password) < 6:
            return self.send_json(400, {"error": "Password must be at least 6 characters"})
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
        with db_cursor(self.settings) as cur:
            cur.execute("SELECT id, password_hash FROM users WHERE username = %s", (username,))
            row = cur.fetchone()
            if not row or not verify_password(str(body["password"]), row[1]):
                return self.send(401)
            cur.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (row[0],))
        expires = int(time.time()) + self.settings.expiration_days * 86400
        token = make_jwt(self.settings, str(row[0]), username, expires)
        # Attribute order as ASP.NET Core writes it; `secure` iff Request.IsHttps.
        cookie = (
            f"authToken={token}; expires={email.utils.formatdate(expires, usegmt=True)}; "
            f"path=/{'; secure' if self.is_https() else ''}; samesite=lax; httponly"
        )
        log("INF", f"User logged in: {username}")
        expires_at = datetime.datetime.fromtimestamp(expires, datetime.UTC)
        self.send_json(
            200,
            {"userId": str(row[0]), "username": username, "expiresAt": expires_at.isoformat().replace("+00:00", "Z")},
            headers=[("Set-Cookie", cookie)],
        )

    def logout(self) -> None:
        self.send_json(
            200,
            {"message": "Logged out successfully"},
            headers=[("Set-Cookie", "authToken=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/")],
        )

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

    def bulk_import(self) -> None:
        if not self.current_user():
            return self.send(401)
        total = sum(len(chunk) for chunk in self.iter_body(MAX_REQUEST_BODY))
        log("INF", f"Bulk import received {total} bytes")
        self.send_json(200, {"bytes": total})


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


def serve(settings: Settings) -> None:
    Handler.settings = settings
    servers: list[ThreadingHTTPServer] = []
    for host, port in settings.endpoints():
        try:
            if host == "::":
                server: ThreadingHTTPServer = DualStackServer(("::", port), Handler)
            else:
                server = ThreadingHTTPServer((host, port), Handler)
                server.daemon_threads = True
        except OSError as exc:
            if host != "::":
                crash(f"Failed to bind to address http://{host}:{port}: {exc.strerror}")
            server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # no IPv6 here
            server.daemon_threads = True
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


def reset_password(settings: Settings, args: list[str]) -> int:
    """`dotnet Tempo.Api.dll reset-password [--username U] [--password-stdin]`."""
    username: str | None = None
    from_stdin = False
    it = iter(args)
    for arg in it:
        if arg == "--username":
            username = next(it, None)
        elif arg == "--password-stdin":
            from_stdin = True
        else:
            print(f"reset-password: unknown argument {arg!r}", file=sys.stderr)
            return 2
    migrate(settings)
    password = sys.stdin.readline().rstrip("\r\n") if from_stdin else secrets.token_urlsafe(12)
    if len(password) < 6:
        print("reset-password: the password must be at least 6 characters", file=sys.stderr)
        return 1
    if from_stdin:
        _secrets.append(password)
    with db_cursor(settings) as cur:
        if username is None:
            cur.execute("SELECT username FROM users")
            rows = cur.fetchall()
            if len(rows) != 1:
                print("reset-password: --username is required", file=sys.stderr)
                return 1
            username = rows[0][0]
        cur.execute("UPDATE users SET password_hash = %s WHERE username = %s", (hash_password(password), username))
        updated = cur.rowcount
    if not updated:
        print(f"reset-password: no user named {username!r}", file=sys.stderr)
        return 1
    print(f"Password reset for user '{username}'.")
    if not from_stdin:  # the operator asked for a generated password: show it once
        print(f"New password: {password}")
    return 0


def main(argv: list[str]) -> int:
    settings = Settings(os.environ)
    if argv[:1] == ["reset-password"]:
        return reset_password(settings, argv[1:])
    settings.check_jwt_key()
    try:  # Directory.CreateDirectory at start, as upstream does
        os.makedirs(settings.media_root, exist_ok=True)
    except OSError as exc:
        crash(f"Cannot create media folder {settings.media_root}: {exc.strerror}")
    migrate(settings)
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
