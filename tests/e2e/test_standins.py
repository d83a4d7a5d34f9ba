"""The stand-in images keep the runtime contract of the upstream images they
replace (see tests/e2e/README.md), per Tempo release where it differs. Real
containers on the running engine."""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from docker.models.containers import Container

from support.sandbox import Sandbox
from support.tempo_client import Origin, TempoClient, version_tuple, write_zip
from support.wait import wait_until

from .images.build import NEVER_READY_TAG, STANDIN_RELEASES, built_image, release_images

pytestmark = pytest.mark.e2e

PLACEHOLDER_KEY = "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE"
HARDENED = {  # what tempo-gen's Compose files ask of every service
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "read_only": True,
}
CREDS = json.dumps({"username": "runner", "password": "correct-horse"})
OLDEST = min(STANDIN_RELEASES, key=version_tuple)  # 2.1.0
NEWEST = max(STANDIN_RELEASES, key=version_tuple)  # 2.10.1
PASSPHRASE = "stride tempo cadence 9"  # 22 characters: fits the 2.5+ policy
MIB = 1 << 20
CHUNK = 512 * 1024


def contains(haystack: str, secret: str) -> bool:
    """A bare bool, so a failing assert never echoes the secret."""
    return secret in haystack


def start_postgres(box: Sandbox, password: str, **env: str) -> Container:
    return box.run(
        "tempo-e2e/postgres:16-alpine",
        "postgres",
        user="70:70",
        tmpfs={"/var/run/postgresql": "", "/tmp": ""},
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_DB": "tempo", **env},
        **HARDENED,
    )


def wait_postgres(box: Sandbox, pg: Container, timeout: float = 60) -> None:
    # Over TCP: during initialisation the temporary server listens on the socket only.
    wait_until(
        lambda: box.exec(pg, "pg_isready", "-h", "127.0.0.1", "-q")[0] == 0,
        timeout,
        "postgres to accept TCP connections",
    )


def api_environment(db_password: str, jwt_key: str | None, db_host: str = "postgres", **env: str) -> dict[str, str]:
    environment = {
        "ConnectionStrings__DefaultConnection": (
            f"Host={db_host};Port=5432;Database=tempo;Username=postgres;Password={db_password}"
        ),
        "ASPNETCORE_ENVIRONMENT": "Production",
        **env,
    }
    if jwt_key is not None:
        environment["JWT__SecretKey"] = jwt_key
    return environment


def start_api(
    box: Sandbox,
    alias: str,
    db_password: str,
    jwt_key: str | None,
    db_host: str = "postgres",
    release: str = OLDEST,
    tmpfs: dict[str, str] | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
    extra: Mapping[str, str] | None = None,
    **env: str,
) -> Container:
    return box.run(
        image("api", release),
        alias,
        user="1654:1654",
        environment=api_environment(db_password, jwt_key, db_host, **{**(extra or {}), **env}),
        tmpfs=tmpfs if tmpfs is not None else {"/tmp": "", "/app/media": "uid=1654,gid=1654"},
        volumes=volumes or {},
        **HARDENED,
    )


def image(role: str, release: str) -> str:
    """The stand-in this session built for `release` (by content hash: the shared
    engine's fixed tags may be re-pointed by other checkouts' builds meanwhile)."""
    return release_images(release)[role]


def start_frontend(box: Sandbox, release: str, alias: str = "frontend", **env: str) -> Container:
    return box.run(
        image("frontend", release),
        alias,
        user="1000:1000",
        tmpfs={"/tmp": "", "/app/.next/cache": "uid=1000,gid=1000"},
        environment=env,
        **HARDENED,
    )


def address(box: Sandbox, container: Container) -> str:
    """The container's address on the sandbox network (the host routes to it)."""
    container.reload()
    ip: str = container.attrs["NetworkSettings"]["Networks"][box.name]["IPAddress"]
    return ip


def secrets_and_db(box: Sandbox) -> tuple[str, str]:
    """(db password, JWT key) of a started, answering Postgres."""
    db_password = secrets.token_urlsafe(16)
    wait_postgres(box, start_postgres(box, db_password))
    return db_password, secrets.token_urlsafe(48)


def wait_api(box: Sandbox, api: Container, timeout: float = 30) -> None:
    wait_until(
        lambda: box.exec(api, "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:5001/health")[0] == 0,
        timeout,
        f"{api.name} /health",
    )


def api_json(box: Sandbox, api: Container, path: str, *curl: str) -> tuple[int, object]:
    """(status, parsed JSON or None) of a request made inside the API container."""
    marker = "\n--status--"
    code, out = box.exec(api, "curl", "-s", "-w", marker + "%{http_code}", *curl, f"http://127.0.0.1:5001{path}")
    if code != 0 or marker not in out:
        return 0, None
    body, status = out.rsplit(marker, 1)
    try:
        return int(status), json.loads(body) if body else None
    except json.JSONDecodeError:
        return int(status), None


def api_status(box: Sandbox, api: Container, path: str) -> int:
    code, out = box.exec(api, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:5001{path}")
    return int(out) if code == 0 and out.isdigit() else 0


def post_json(box: Sandbox, url: str, body: str = CREDS, *headers: str) -> tuple[int, dict[str, list[str]], str]:
    """(status, headers, body) of a JSON POST made from the probe container."""
    args = ["-X", "POST", "-H", "Content-Type: application/json", "--data", body]
    for header in headers:
        args += ["-H", header]
    return box.http(url, *args)


def cookie_attributes(headers: dict[str, list[str]]) -> tuple[str, set[str]]:
    token, attrs = cookie_values(headers)
    return token, set(attrs)


def cookie_values(headers: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    """(token, lower-cased attribute -> value) of the authToken Set-Cookie."""
    [cookie] = [c for c in headers.get("set-cookie", []) if c.startswith("authToken=")]
    token, *attrs = [part.strip() for part in cookie.split(";")]
    values = {a.split("=", 1)[0].lower(): a.split("=", 1)[1] if "=" in a else "" for a in attrs}
    return token.split("=", 1)[1], values


# ---------------------------------------------------------------- postgres


def test_postgres_initialises_from_password_file_as_uid_70_read_only(sandbox: Sandbox, tmp_path: Path) -> None:
    password = secrets.token_urlsafe(24)
    secret = tmp_path / "db_password"
    secret.write_text(password + "\n")  # trailing newline: editors add one
    os.chown(secret, 70, 70)
    secret.chmod(0o400)
    pg = sandbox.run(
        "tempo-e2e/postgres:16-alpine",
        "postgres",
        user="70:70",
        tmpfs={"/var/run/postgresql": "", "/tmp": ""},
        environment={"POSTGRES_PASSWORD_FILE": "/run/secrets/db_password", "POSTGRES_DB": "tempo"},
        volumes={
            str(secret): {"bind": "/run/secrets/db_password", "mode": "ro"},
            sandbox.volume("pgdata"): {"bind": "/var/lib/postgresql/data", "mode": "rw"},
        },
        **HARDENED,
    )
    wait_postgres(sandbox, pg)

    query = ["psql", "-h", "postgres", "-U", "postgres", "-d", "tempo", "-tAc"]
    code, out = sandbox.probe(*query, "SELECT current_user || ':' || current_database()", env={"PGPASSWORD": password})
    assert (code, out.strip()) == (0, "postgres:tempo")
    code, out = sandbox.probe(
        *query,
        "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'",
        env={"PGPASSWORD": password},
    )
    assert (code, out.strip()) == (0, "t")
    code, out = sandbox.probe(*query, "SELECT 1", env={"PGPASSWORD": "wrong-" + password})
    assert code != 0 and "password authentication failed" in out

    code, out = sandbox.exec(pg, "stat", "-c", "%u:%g", "/var/lib/postgresql/data")
    assert out.strip() == "70:70"
    code, out = sandbox.exec(pg, "id", "-u")
    assert out.strip() == "70"
    leaked = contains(Sandbox.logs(pg), password)
    assert not leaked, "postgres logged its password"


def test_postgres_rejects_password_and_password_file_together(sandbox: Sandbox, tmp_path: Path) -> None:
    password = secrets.token_urlsafe(24)
    secret = tmp_path / "db_password"
    secret.write_text(password)
    secret.chmod(0o444)
    pg = sandbox.run(
        "tempo-e2e/postgres:16-alpine",
        "postgres",
        user="70:70",
        tmpfs={"/var/run/postgresql": "", "/tmp": ""},
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"},
        volumes={str(secret): {"bind": "/run/secrets/db_password", "mode": "ro"}},
        **HARDENED,
    )
    assert Sandbox.wait_exit(pg, timeout=30) != 0
    logs = Sandbox.logs(pg)
    assert "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set" in logs
    leaked = contains(logs, password)
    assert not leaked, "postgres logged its password"


def test_postgres_started_as_root_drops_to_uid_70(sandbox: Sandbox) -> None:
    pg = sandbox.run(
        "tempo-e2e/postgres:16-alpine",
        "postgres",
        environment={"POSTGRES_PASSWORD": secrets.token_urlsafe(16)},
    )
    wait_postgres(sandbox, pg)
    _, out = sandbox.exec(pg, "ps", "-o", "uid=", "-p", "1")
    assert out.strip() == "70"


# ---------------------------------------------------------------- api


@pytest.mark.parametrize("kind", ["missing", "placeholder", "31-chars"])
def test_api_refuses_to_start_without_a_proper_jwt_key(sandbox: Sandbox, kind: str) -> None:
    db_password = secrets.token_urlsafe(16)
    key = {"missing": None, "placeholder": PLACEHOLDER_KEY, "31-chars": secrets.token_urlsafe(32)[:31]}[
        kind
    ]  # random: a leak would show
    api = start_api(sandbox, "api", db_password, key, db_host="no-such-host")
    assert Sandbox.wait_exit(api, timeout=30) != 0
    logs = Sandbox.logs(api)
    assert "JWT:SecretKey" in logs
    assert "migrations" not in logs  # refused before touching the database
    for secret in filter(None, [key, db_password]):
        leaked = contains(logs, secret)
        assert not leaked, "api logged a secret"


def test_api_with_a_32_char_key_passes_the_key_check_and_needs_postgres(sandbox: Sandbox) -> None:
    db_password = secrets.token_urlsafe(16)
    key = secrets.token_urlsafe(32)[:32]
    api = start_api(sandbox, "api", db_password, key, db_host="no-such-host")
    assert Sandbox.wait_exit(api, timeout=60) != 0  # migrations fail: no retry, like EF Core
    logs = Sandbox.logs(api)
    assert "Failed to apply database migrations" in logs
    assert "JWT:SecretKey" not in logs
    for secret in (key, db_password):
        leaked = contains(logs, secret)
        assert not leaked, "api logged a secret"


def test_each_release_records_its_migration_and_the_never_ready_variant_migrates_then_never_answers(
    sandbox: Sandbox,
) -> None:
    db_password, key = secrets_and_db(sandbox)
    query = ["psql", "-h", "postgres", "-U", "postgres", "-d", "tempo", "-tAc"]

    def sql(statement: str) -> str:
        code, out = sandbox.probe(*query, statement, env={"PGPASSWORD": db_password})
        assert code == 0, out
        return out.strip()

    # Ids sort like the releases (a 14-digit prefix, as EF Core's timestamps do); the names follow it.
    history = (
        'SELECT string_agg(substring("MigrationId" from 16), \',\' ORDER BY "MigrationId") FROM "__EFMigrationsHistory"'
    )
    wait_api(sandbox, start_api(sandbox, "api", db_password, key, release=OLDEST))
    oldest = "Release_" + OLDEST.replace(".", "_")
    assert sql(history) == oldest
    broken = sandbox.run(
        built_image(NEVER_READY_TAG),
        "api-next",
        user="1654:1654",
        environment=api_environment(db_password, key),
        tmpfs={"/tmp": "", "/app/media": "uid=1654,gid=1654"},
        **HARDENED,
    )
    newest = "Release_" + NEWEST.replace(".", "_")
    wait_until(lambda: newest in sql(history), 30, "the never-ready api's migration")
    assert sql(history) == f"{oldest},{newest},Standin_NeverReady"
    assert sql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'never_ready_marker'") == "1"
    for path in ("/health", "/ready"):
        assert api_status(sandbox, broken, path) == 503, path


@pytest.mark.parametrize("release", [OLDEST, NEWEST])
def test_api_ready_exists_from_2_10_and_follows_postgres(sandbox: Sandbox, release: str) -> None:
    db_password, key = secrets_and_db(sandbox)
    pg = sandbox.containers[-1]
    api = start_api(sandbox, "api", db_password, key, release=release)
    wait_api(sandbox, api)
    if version_tuple(release) < (2, 10, 0):
        assert api_status(sandbox, api, "/ready") == 404  # no such route before 2.10
        pg.stop(timeout=20)
        assert api_status(sandbox, api, "/health") == 200
        return

    assert api_json(sandbox, api, "/ready") == (200, {"status": "ready", "checks": {"database": "ok"}})
    pg.stop(timeout=20)
    started = time.monotonic()
    assert api_json(sandbox, api, "/ready") == (503, {"status": "not_ready", "checks": {"database": "fail"}})
    assert time.monotonic() - started < 5  # the 2 s CanConnect budget, plus curl in a container
    assert api_json(sandbox, api, "/health") == (200, {"status": "healthy"})
    pg.start()
    wait_until(lambda: api_status(sandbox, api, "/ready") == 200, 60, "/ready to recover")
    api.reload()
    assert api.status == "running"


def test_login_cookie_is_secure_only_for_forwarded_https(sandbox: Sandbox) -> None:
    db_password = secrets.token_urlsafe(16)
    pg = start_postgres(sandbox, db_password)
    wait_postgres(sandbox, pg)
    key = secrets.token_urlsafe(48)
    trusting = start_api(sandbox, "api", db_password, key, ASPNETCORE_FORWARDEDHEADERS_ENABLED="true")
    plain = start_api(sandbox, "api-plain", db_password, key)
    wait_api(sandbox, trusting)
    wait_api(sandbox, plain)

    status, _, body = post_json(sandbox, "http://api:5001/auth/register")
    assert status == 200, body
    assert post_json(sandbox, "http://api:5001/auth/register")[0] == 400  # one user only

    cases = [
        ("http://api:5001", ["X-Forwarded-Proto: https"], True),
        ("http://api:5001", [], False),
        ("http://api:5001", ["X-Forwarded-Proto: http"], False),
        ("http://api-plain:5001", ["X-Forwarded-Proto: https"], False),
    ]
    for base, headers, secure in cases:
        status, got, body = post_json(sandbox, f"{base}/auth/login", CREDS, *headers)
        assert status == 200, body
        token, attrs = cookie_attributes(got)
        assert {"path", "httponly", "samesite"} <= attrs
        assert ("secure" in attrs) is secure, (base, headers, attrs)

    status, _, body = sandbox.http("http://api:5001/auth/me", "-H", f"Cookie: authToken={token}")
    assert status == 200 and json.loads(body)["username"] == "runner"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status = sandbox.http_status("http://api:5001/auth/me", "-H", f"Cookie: authToken={forged}")
    assert status == 401
    wrong = json.dumps({"username": "runner", "password": "wrong-one"})
    assert post_json(sandbox, "http://api:5001/auth/login", wrong)[0] == 401

    for container in (trusting, plain):
        logs = Sandbox.logs(container)
        for secret in (key, db_password, "correct-horse", token):
            leaked = contains(logs, secret)
            assert not leaked, "api logged a secret"


def test_2_10_cookie_is_secure_in_production_with_domain_and_remember_me(sandbox: Sandbox) -> None:
    db_password, key = secrets_and_db(sandbox)
    production = start_api(  # ASPNETCORE_ENVIRONMENT unset counts as Production
        sandbox,
        "api",
        db_password,
        key,
        release=NEWEST,
        ASPNETCORE_ENVIRONMENT="",
        Cookie__Domain="tempo.example",
        JWT__RememberMeExpirationDays="3",
    )
    development = start_api(
        sandbox,
        "api-dev",
        db_password,
        key,
        release=NEWEST,
        ASPNETCORE_ENVIRONMENT="Development",
        ASPNETCORE_FORWARDEDHEADERS_ENABLED="true",
    )
    wait_api(sandbox, production)
    wait_api(sandbox, development)
    creds = {"username": "runner", "password": PASSPHRASE}
    assert post_json(sandbox, "http://api:5001/auth/register", json.dumps(creds))[0] == 200

    cases = [  # (api, headers, remember me, secure expected)
        ("api", [], False, True),  # plain HTTP, no forwarded headers: Secure all the same
        ("api", ["X-Forwarded-Proto: http"], True, True),
        ("api-dev", [], False, False),  # outside Production the 2.1 rule (Request.IsHttps) remains
        ("api-dev", ["X-Forwarded-Proto: https"], False, True),
    ]
    for host, headers, remember, secure in cases:
        body = json.dumps({**creds, "rememberMe": remember})
        status, got, text = post_json(sandbox, f"http://{host}:5001/auth/login", body, *headers)
        assert status == 200, text
        _, attrs = cookie_values(got)
        assert ("secure" in attrs) is secure, (host, headers, attrs)
        assert attrs["path"] == "/" and {"httponly", "samesite"} <= set(attrs)
        assert attrs.get("domain") == ("tempo.example" if host == "api" else None)
        days = (email.utils.parsedate_to_datetime(attrs["expires"]).timestamp() - time.time()) / 86400
        assert round(days) == (3 if remember else 7), (host, remember, days)


@pytest.mark.parametrize("release", [OLDEST, NEWEST])
def test_password_length_rule_per_release(sandbox: Sandbox, release: str) -> None:
    db_password, key = secrets_and_db(sandbox)
    api = start_api(sandbox, "api", db_password, key, release=release)
    wait_api(sandbox, api)
    url = "http://api:5001/auth/register"
    if version_tuple(release) < (2, 5, 0):
        assert post_json(sandbox, url, json.dumps({"username": "runner", "password": "five5"}))[0] == 400
        assert post_json(sandbox, url, json.dumps({"username": "runner", "password": "six666"}))[0] == 200
        return
    for length in (15, 65):
        status, _, body = post_json(sandbox, url, json.dumps({"username": "runner", "password": passphrase(length)}))
        assert status == 400 and "characters" in json.loads(body)["error"], (length, body)
    status, _, body = post_json(sandbox, url, json.dumps({"username": "runner", "password": passphrase(64)}))
    assert status == 200, body
    # The same policy for the host-only reset (registration is locked now).
    assert reset_in(sandbox, api, "--password-stdin", passphrase(65))[0] == 1
    code, out = reset_in(sandbox, api, "--password-stdin", passphrase(16))
    assert code == 0, out
    creds = json.dumps({"username": "runner", "password": passphrase(16)})
    assert post_json(sandbox, "http://api:5001/auth/login", creds)[0] == 200


def passphrase(length: int) -> str:
    return ("tempo-stride-" * 6)[:length]


def reset_in(
    box: Sandbox, api: Container, args: str, password: str | None = None, unset: tuple[str, ...] = ()
) -> tuple[int, str]:
    """`dotnet Tempo.Api.dll reset-password ARGS` exec'd in a running API container, without a TTY."""
    pipe = 'printf "%s\\n" "$NEW_PASSWORD" | ' if password is not None else ""
    strip = "".join(f"-u {name} " for name in unset)
    command = f"{pipe}env {strip}dotnet Tempo.Api.dll reset-password {args}"
    return box.exec(api, "sh", "-c", command, env={"NEW_PASSWORD": password or ""}, timeout=60)


def test_2_10_reset_password_needs_its_secrets_and_ends_old_sessions(sandbox: Sandbox) -> None:
    db_password, key = secrets_and_db(sandbox)
    api = start_api(sandbox, "api", db_password, key, release=NEWEST)
    wait_api(sandbox, api)
    creds = {"username": "runner", "password": PASSPHRASE}
    assert post_json(sandbox, "http://api:5001/auth/register", json.dumps(creds))[0] == 200
    status, headers, _ = post_json(sandbox, "http://api:5001/auth/login", json.dumps(creds))
    old_token, _ = cookie_values(headers)
    assert sandbox.http_status("http://api:5001/auth/me", "-H", f"Cookie: authToken={old_token}") == 200
    fresh = "fresh-" + secrets.token_urlsafe(18)

    # The verb builds the whole host first: the secrets must be in its own environment.
    for missing in ("JWT__SecretKey", "ConnectionStrings__DefaultConnection"):
        code, out = reset_in(sandbox, api, "--password-stdin", fresh, unset=(missing,))
        assert code == 134 and "Unhandled exception" in out, (missing, out)
        leaked = contains(out, fresh) or contains(out, key) or contains(out, db_password)
        assert not leaked, "reset-password printed a secret"
    code, out = reset_in(sandbox, api, "")  # no TTY, no --password-stdin
    assert code == 1 and "No TTY" in out, out
    code, out = reset_in(sandbox, api, f"--password {fresh}")
    assert code == 1 and "--password-stdin" in out and not contains(out, f"Unknown argument: {fresh}")
    code, out = reset_in(sandbox, api, "--password-stdin", "too-short-15chr")
    assert code == 1 and "at least 16 characters" in out, out
    assert sandbox.http_status("http://api:5001/auth/me", "-H", f"Cookie: authToken={old_token}") == 200

    code, out = reset_in(sandbox, api, "--password-stdin", fresh)  # username optional: one account
    assert code == 0 and "Password reset for runner" in out, out
    leaked = contains(out + Sandbox.logs(api), fresh)
    assert not leaked, "reset-password printed the new password"
    assert sandbox.http_status("http://api:5001/auth/me", "-H", f"Cookie: authToken={old_token}") == 401
    assert post_json(sandbox, "http://api:5001/auth/login", json.dumps(creds))[0] == 401
    status, headers, _ = post_json(sandbox, "http://api:5001/auth/login", json.dumps({**creds, "password": fresh}))
    assert status == 200
    new_token, _ = cookie_values(headers)
    assert sandbox.http_status("http://api:5001/auth/me", "-H", f"Cookie: authToken={new_token}") == 200


def test_2_1_has_no_reset_password_verb(sandbox: Sandbox) -> None:
    """Before 2.10 .NET's command-line configuration ignores the bare word, so the
    verb starts a second web host, which cannot bind port 5001 in a running container."""
    db_password, key = secrets_and_db(sandbox)
    api = start_api(sandbox, "api", db_password, key, release=OLDEST)
    wait_api(sandbox, api)
    assert post_json(sandbox, "http://api:5001/auth/register")[0] == 200
    code, out = reset_in(sandbox, api, "--username runner --password-stdin", PASSPHRASE)
    assert code == 134 and "Failed to bind to address" in out, out
    assert post_json(sandbox, "http://api:5001/auth/login")[0] == 200  # the password did not change


@pytest.mark.parametrize(
    ("case", "env", "message"),
    [
        ("profile", {"Tempo__Logging__Profile": "verbose"}, "Unknown Tempo:Logging:Profile 'verbose'"),
        ("sqlite", {"ConnectionStrings__DefaultConnection": "Data Source=/app/tempo.db"}, "SQLite is not supported"),
        ("empty-connection", {"ConnectionStrings__DefaultConnection": ""}, "PostgreSQL is required"),
        ("unreachable", {}, "Failed to apply database migrations"),
    ],
)
def test_2_10_start_fails_on_bad_settings_and_unreachable_postgres(
    sandbox: Sandbox, case: str, env: dict[str, str], message: str
) -> None:
    db_password, key = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    api = start_api(sandbox, "api", db_password, key, db_host="no-such-host", release=NEWEST, extra=env)
    assert Sandbox.wait_exit(api, timeout=60) != 0
    logs = Sandbox.logs(api)
    assert message in logs, logs[-2000:]
    for secret in (key, db_password):
        leaked = contains(logs, secret)
        assert not leaked, "api logged a secret"


def test_2_10_version_and_carto_key(sandbox: Sandbox) -> None:
    db_password, key = secrets_and_db(sandbox)
    old = start_api(sandbox, "api-old", db_password, key, release=OLDEST, CartoBasemaps__ApiKey="carto-123")
    api = start_api(
        sandbox,
        "api",
        db_password,
        key,
        release=NEWEST,
        TEMPO_API_IMAGE="registry.example/tempo/api:v2.10.1@sha256:" + "a" * 64,
        Tempo__Logging__Profile="Debug",
        CartoBasemaps__ApiKey="carto-123",
    )
    wait_api(sandbox, api)
    wait_api(sandbox, old)
    status, body = api_json(sandbox, api, "/version")  # public: no cookie
    assert status == 200 and isinstance(body, dict)
    assert body["version"] == NEWEST and body["logProfile"] == "debug" and body["environment"] == "Production"
    assert body["apiImage"] == "registry.example/tempo/api:v2.10.1@sha256:" + "a" * 64
    assert body["frontendImage"] == "unknown"
    assert api_status(sandbox, old, "/version") == 404

    creds = json.dumps({"username": "runner", "password": PASSPHRASE})
    assert post_json(sandbox, "http://api:5001/auth/register", creds)[0] == 200
    token, _ = cookie_values(post_json(sandbox, "http://api:5001/auth/login", creds)[1])
    assert api_status(sandbox, api, "/settings/carto-basemaps") == 401
    assert api_json(sandbox, api, "/settings/carto-basemaps", "-H", f"Cookie: authToken={token}") == (
        200,
        {"apiKey": "carto-123"},
    )
    assert api_status(sandbox, old, "/settings/carto-basemaps") == 404  # 2.8+


# ---------------------------------------------------------------- imports


def writable_volume(box: Sandbox, role: str, uid: int = 1654) -> str:
    """A named volume owned by `uid`. It is left non-empty: Docker copies the mount
    point's content and ownership (root's /app/media) into an empty volume."""
    name = box.volume(role)
    chown = box.run(
        "tempo-e2e/tools:latest",
        f"chown-{role}",
        command=["sh", "-c", f"touch /volume/.keep && chown -R {uid}:{uid} /volume"],
        volumes={name: {"bind": "/volume", "mode": "rw"}},
    )
    assert Sandbox.wait_exit(chown, timeout=30) == 0
    return name


def listing(box: Sandbox, container: Container, folder: str) -> list[str]:
    """Every path below `folder` in a running container."""
    code, out = box.exec(container, "find", folder, "-mindepth", "1")
    assert code == 0, out
    return sorted(out.split())


def multipart(data: bytes, name: str = "export.zip") -> tuple[bytes, str]:
    boundary = "----standin" + secrets.token_hex(8)
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    body = (head + "Content-Type: application/zip\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def browser(box: Sandbox, release: str, api: Container, **frontend_env: str) -> tuple[TempoClient, Container]:
    """A frontend for `release` in front of `api` (alias api) and a signed-in client at its origin."""
    frontend = start_frontend(box, release, **frontend_env)
    wait_api(box, api)
    wait_until(lambda: box.http_status("http://frontend:3000/") == 200, 30, "frontend /")
    client = TempoClient(release, Origin(address(box, frontend), 3000, "tempo.test"), timeout=60)
    password = PASSPHRASE if version_tuple(release) >= (2, 5, 0) else "correct-horse"
    assert client.register("runner", password).status == 200
    client.login("runner", password)
    return client, frontend


def test_2_10_chunked_import_job_flow(sandbox: Sandbox, tmp_path: Path) -> None:
    db_password, key = secrets_and_db(sandbox)
    media = writable_volume(sandbox, "media")
    api = start_api(
        sandbox,
        "api",
        db_password,
        key,
        release=NEWEST,
        tmpfs={"/tmp": "", "/var/tmp/tempo": "uid=1654,gid=1654"},
        volumes={media: {"bind": "/app/media", "mode": "rw"}},
        TMPDIR="/var/tmp/tempo",
    )
    client, _ = browser(sandbox, NEWEST, api)

    # The browser's way: create, 7 sequential 512 KiB PUTs (the last shorter), complete, poll.
    archive = write_zip(tmp_path / "export.zip", 3 * MIB + 17)
    result = client.upload_export(archive)
    assert result.mode == "chunked" and result.chunks == 7
    assert result.final["status"] == "completed" and result.final["errorMessage"] is None
    assert result.final["byteSize"] == result.final["bytesReceived"] == 3 * MIB + 17
    assert result.final["total"] == 2  # activities.csv and one data entry, unzipped
    assert result.statuses[:9] == [201] + [200] * 7 + [202]
    assert set(result.statuses[9:]) <= {200}
    assert listing(sandbox, api, "/app/media/imports") == []  # staging removed
    assert listing(sandbox, api, "/var/tmp/tempo") == []  # the unzipped copy too
    assert client.request("GET", "/api/workouts/import/jobs/current").status == 204

    # One active job; chunks checked as upstream checks them; staging where upstream stages.
    jobs = "/api/workouts/import/jobs"
    size = CHUNK * 2 + 100
    created = client.send_json("POST", jobs, {"kind": "tempo_export", "filename": "t.zip", "byteSize": size})
    assert created.status == 201, created.body
    job = created.json()
    assert (job["status"], job["kind"], job["bytesReceived"]) == ("receiving", "tempo_export", 0)
    other = client.send_json("POST", jobs, {"kind": "strava_bulk", "filename": "s.zip", "byteSize": 9})
    assert other.status == 409 and other.json()["id"] == job["id"]
    octet = {"Content-Type": "application/octet-stream"}
    base = f"{jobs}/{job['id']}"
    for index, total, body, error in [
        (1, 3, bytes(CHUNK), "Chunks must be uploaded sequentially"),
        (0, 4, bytes(CHUNK), "Chunk index or total is invalid"),
        (0, 3, bytes(1000), "Chunk size is invalid"),
    ]:
        reply = client.request("PUT", f"{base}/chunks/{index}?total={total}", body, octet)
        assert (reply.status, reply.json()) == (400, {"error": error})
    reply = client.request("PUT", f"{base}/chunks/0?total=3", bytes(CHUNK), octet)
    assert reply.status == 200 and reply.json()["bytesReceived"] == CHUNK
    staged = f"/app/media/imports/{job['id']}/chunks/00000000.part"
    assert sandbox.exec(api, "stat", "-c", "%s", staged)[1].strip() == str(CHUNK)
    assert client.request("POST", f"{base}/complete").status == 400  # chunks 1 and 2 missing
    current = client.request("GET", f"{jobs}/current")
    assert current.status == 200 and current.json()["id"] == job["id"]
    cancelled = client.request("DELETE", base)
    assert cancelled.status == 200
    assert (cancelled.json()["status"], cancelled.json()["errorMessage"]) == ("failed", "cancelled")
    assert listing(sandbox, api, "/app/media/imports") == []
    assert client.request("DELETE", base).status == 400
    assert client.request("GET", f"{jobs}/{'0' * 8}-0000-0000-0000-{'0' * 12}").status == 404

    # Whole-body uploads (API clients) become queued jobs: 202, then the same worker.
    body, ctype = multipart(archive.read_bytes())
    accepted = client.request("POST", "/api/workouts/import/bulk", body, {"Content-Type": ctype})
    assert accepted.status == 202 and accepted.json()["status"] in ("queued", "running", "completed")
    done = wait_until(
        lambda: client.request("GET", f"{jobs}/{accepted.json()['id']}").json()["status"] == "completed",
        30,
        "the whole-body import to complete",
    )
    assert done
    assert 429 not in client.statuses and 413 not in client.statuses


def test_2_10_import_job_fails_when_the_temp_folder_is_too_small(sandbox: Sandbox, tmp_path: Path) -> None:
    db_password, key = secrets_and_db(sandbox)
    api = start_api(
        sandbox,
        "api",
        db_password,
        key,
        release=NEWEST,
        tmpfs={"/tmp": "size=1m", "/app/media": "uid=1654,gid=1654"},  # TMPDIR unset: /tmp
    )
    client, _ = browser(sandbox, NEWEST, api)
    with pytest.raises(AssertionError, match="No space left on device"):
        client.upload_export(write_zip(tmp_path / "export.zip", 3 * MIB))
    job = client.request("GET", "/api/workouts/import/jobs/current")
    assert job.status == 204  # the failed job is no longer active
    assert listing(sandbox, api, "/app/media/imports") == []
    assert listing(sandbox, api, "/tmp") == []


def test_2_10_restart_interrupts_running_import_jobs(sandbox: Sandbox, tmp_path: Path) -> None:
    db_password, key = secrets_and_db(sandbox)
    media = writable_volume(sandbox, "media")
    api = start_api(
        sandbox,
        "api",
        db_password,
        key,
        release=NEWEST,
        volumes={media: {"bind": "/app/media", "mode": "rw"}},
        tmpfs={"/tmp": ""},
        TEMPO_E2E_IMPORT_DELAY_SECONDS="120",  # stand-in only: keep the job running
    )
    client, _ = browser(sandbox, NEWEST, api)
    jobs = "/api/workouts/import/jobs"
    body, ctype = multipart(write_zip(tmp_path / "export.zip", MIB).read_bytes())

    def running_job() -> str:
        accepted = client.request("POST", "/api/workouts/import/bulk", body, {"Content-Type": ctype})
        assert accepted.status == 202, accepted.body
        job_id: str = accepted.json()["id"]
        wait_until(lambda: client.request("GET", f"{jobs}/{job_id}").json()["status"] == "running", 15, "running")
        assert f"/app/media/imports/{job_id}/archive.zip" in listing(sandbox, api, "/app/media/imports")
        return job_id

    first = running_job()
    assert client.request("DELETE", f"{jobs}/{first}").status == 200  # cancel requested, the worker stops it
    wait_until(lambda: client.request("GET", f"{jobs}/{first}").json()["errorMessage"] == "cancelled", 15, "cancel")
    assert listing(sandbox, api, "/app/media/imports") == []

    second = running_job()
    client.close()
    api.restart(timeout=10)
    wait_api(sandbox, api)
    job = client.request("GET", f"{jobs}/{second}").json()
    assert (job["status"], job["errorMessage"]) == ("failed", "interrupted")
    assert listing(sandbox, api, "/app/media/imports") == []
    assert client.request("GET", f"{jobs}/current").status == 204


def test_2_1_imports_unzip_into_the_temp_folder_cross_origin(sandbox: Sandbox, tmp_path: Path) -> None:
    db_password, key = secrets_and_db(sandbox)
    site = "http://tempo.test:3000"  # the page's origin, as the client's Origin header says
    scratch = {"/tmp": "", "/app/media": "uid=1654,gid=1654"}
    api = start_api(
        sandbox,
        "api",
        db_password,
        key,
        tmpfs={**scratch, "/scratch": "size=16m"},
        TMPDIR="/scratch",
        CORS__AllowedOrigins=f"http://localhost:3000, {site}",
    )
    small = start_api(  # the upload is buffered in /tmp (ASPNETCORE_TEMP), the unzip needs TMPDIR
        sandbox,
        "api-small",
        db_password,
        key,
        tmpfs={**scratch, "/scratch": "size=1m"},
        TMPDIR="/scratch",
        ASPNETCORE_TEMP="/tmp",
        CORS__AllowedOrigins=site,
    )
    tiny = start_api(  # without ASPNETCORE_TEMP the upload itself is buffered in TMPDIR
        sandbox,
        "api-tiny",
        db_password,
        key,
        tmpfs={**scratch, "/scratch": "size=1m"},
        TMPDIR="/scratch",
        CORS__AllowedOrigins=site,
    )
    client, _ = browser(sandbox, OLDEST, api)
    assert client.site.url == site
    archive = write_zip(tmp_path / "export.zip", 3 * MIB)

    result = client.upload_export(archive, import_port=5001, import_address=address(sandbox, api))
    assert result.mode == "direct" and result.cors_allowed and result.statuses == [200]
    assert result.final["totalProcessed"] == 2 and result.final["extractedBytes"] > 3 * MIB - 4096
    assert listing(sandbox, api, "/scratch") == []  # extracted there, then removed
    result = client.upload_export(archive, "tempo_export", import_port=5001, import_address=address(sandbox, api))
    assert result.final["success"] is True

    for container, error in ((small, r"answered 500.*No space left on device"), (tiny, r"answered 500: b''$")):
        wait_api(sandbox, container)
        with pytest.raises(AssertionError, match=error):
            client.upload_export(archive, import_port=5001, import_address=address(sandbox, container))
        assert listing(sandbox, container, "/scratch") == [] and listing(sandbox, container, "/tmp") == []
    assert 413 not in client.statuses and 429 not in client.statuses

    # Above 500,000,000 bytes: 413 before any byte of the body is read.
    connection = http.client.HTTPConnection(address(sandbox, api), 5001, timeout=10)
    connection.putrequest("POST", "/workouts/import/bulk")
    for name, value in (
        ("Content-Type", "multipart/form-data; boundary=x"),
        ("Content-Length", "500000001"),
        ("Cookie", client.cookie or ""),
    ):
        connection.putheader(name, value)
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()

    # CORS: credentialed preflight for the site, nothing for others; no cookie, no import.
    preflight = ["-X", "OPTIONS", "-H", "Access-Control-Request-Method: POST"]
    status, headers, _ = sandbox.http("http://api:5001/workouts/import/bulk", *preflight, "-H", f"Origin: {site}")
    assert status == 204 and headers["access-control-allow-origin"] == [site]
    assert headers["access-control-allow-credentials"] == ["true"]
    status, headers, _ = sandbox.http(
        "http://api:5001/workouts/import/bulk", *preflight, "-H", "Origin: http://evil.test"
    )
    assert status == 204 and "access-control-allow-origin" not in headers
    assert sandbox.http_status("http://api:5001/workouts/import/bulk", "-X", "POST", "-F", "file=@/etc/hostname") == 401
    assert client.send_json("POST", "/api/workouts/import/jobs", {}).status == 404


# ---------------------------------------------------------------- frontend


@pytest.mark.parametrize("release", [OLDEST, NEWEST])
def test_frontend_serves_the_page_and_rewrites_api_to_the_api_service(sandbox: Sandbox, release: str) -> None:
    db_password, key = secrets_and_db(sandbox)
    api = start_api(sandbox, "api", db_password, key, release=release)
    frontend = start_frontend(sandbox, release)
    wait_api(sandbox, api)
    wait_until(lambda: sandbox.http_status("http://frontend:3000/") == 200, 30, "frontend /")

    status, headers, body = sandbox.http("http://frontend:3000/api/health")
    assert status == 200 and json.loads(body) == {"status": "healthy"}
    assert headers["x-powered-by"] == ["Next.js"]
    assert headers["server"] == ["Kestrel"]  # the API answered, through the rewrite
    newest = version_tuple(release) >= (2, 10, 0)
    assert sandbox.http_status("http://frontend:3000/api/ready") == (200 if newest else 404)

    status, headers, body = sandbox.http("http://frontend:3000/")
    assert "text/html" in headers["content-type"][0] and "/_next/static/" in body
    assert sandbox.http_status("http://frontend:3000/_next/static/chunks/app.js") == 200
    status, headers, body = sandbox.http("http://frontend:3000/health")  # the frontend's own route (2.10+)
    if newest:
        assert status == 200 and json.loads(body) == {"status": "healthy"}
        assert "x-powered-by" in headers and "server" not in headers  # not proxied
    else:
        assert status == 404 and "text/html" in headers["content-type"][0]  # Next.js' 404 page
    frontend.reload()
    assert frontend.status == "running"  # read-only as uid 1000 is enough


# ---------------------------------------------------------------- proxies


def test_proxy_images_start(sandbox: Sandbox) -> None:
    nginx = sandbox.run("tempo-e2e/nginx:1.22", "nginx")
    wait_until(lambda: sandbox.http_status("http://nginx/") == 200, 30, "nginx default site")
    code, out = sandbox.exec(nginx, "nginx", "-v")
    assert code == 0 and "nginx/1.22" in out
    code, _ = sandbox.exec(nginx, "test", "-f", "/etc/nginx-dist/mime.types")
    assert code == 0

    # Port 80 as nobody without capabilities: the engine lets containers bind < 1024.
    traefik = sandbox.run(
        "tempo-e2e/traefik:v3",
        "traefik",
        command=["--ping=true", "--entrypoints.web.address=:80"],
        user="65534:65534",
        **HARDENED,
    )
    wait_until(lambda: sandbox.exec(traefik, "traefik", "healthcheck", "--ping")[0] == 0, 30, "traefik ping")
    assert sandbox.http_status("http://traefik/") == 404  # web entry point, no routers
    code, out = sandbox.exec(traefik, "traefik", "version")
    assert code == 0 and "Version:" in out and "3." in out
