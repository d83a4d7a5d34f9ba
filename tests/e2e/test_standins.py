"""The stand-in images keep the runtime contract of the upstream images they
replace (see tests/e2e/README.md). Real containers on the running engine."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from docker.models.containers import Container

from support.sandbox import Sandbox
from support.wait import wait_until

pytestmark = pytest.mark.e2e

PLACEHOLDER_KEY = "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE"
HARDENED = {  # what tempo-gen's Compose files ask of every service
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "read_only": True,
}
CREDS = json.dumps({"username": "runner", "password": "correct-horse"})


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
    box: Sandbox, alias: str, db_password: str, jwt_key: str | None, db_host: str = "postgres", **env: str
) -> Container:
    return box.run(
        "tempo-e2e/api:v2.1.0",
        alias,
        user="1654:1654",
        environment=api_environment(db_password, jwt_key, db_host, **env),
        tmpfs={"/tmp": "", "/app/media": "uid=1654,gid=1654"},
        **HARDENED,
    )


def wait_api(box: Sandbox, api: Container, timeout: float = 30) -> None:
    wait_until(
        lambda: box.exec(api, "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:5001/health")[0] == 0,
        timeout,
        f"{api.name} /health",
    )


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
    [cookie] = [c for c in headers.get("set-cookie", []) if c.startswith("authToken=")]
    token, *attrs = [part.strip() for part in cookie.split(";")]
    return token.split("=", 1)[1], {a.split("=", 1)[0].lower() for a in attrs}


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


def test_api_ready_follows_postgres_while_health_stays_up(sandbox: Sandbox) -> None:
    db_password = secrets.token_urlsafe(16)
    pg = start_postgres(sandbox, db_password)
    wait_postgres(sandbox, pg)
    api = start_api(sandbox, "api", db_password, secrets.token_urlsafe(48))
    wait_api(sandbox, api)
    assert api_status(sandbox, api, "/ready") == 200

    pg.stop(timeout=20)
    wait_until(lambda: api_status(sandbox, api, "/ready") == 503, 30, "/ready to report 503")
    assert api_status(sandbox, api, "/health") == 200

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


def test_api_reset_password_verb_reads_the_password_from_stdin(sandbox: Sandbox) -> None:
    db_password = secrets.token_urlsafe(16)
    pg = start_postgres(sandbox, db_password)
    wait_postgres(sandbox, pg)
    api = start_api(sandbox, "api", db_password, secrets.token_urlsafe(48))
    wait_api(sandbox, api)
    assert post_json(sandbox, "http://api:5001/auth/register")[0] == 200

    new_password = "fresh-" + secrets.token_urlsafe(12)
    verb = sandbox.run(
        "tempo-e2e/api:v2.1.0",
        "reset",
        user="1654:1654",
        tmpfs={"/tmp": ""},
        **HARDENED,
        environment={**api_environment(db_password, None), "NEW_PASSWORD": new_password},
        entrypoint=[
            "sh",
            "-c",
            'printf "%s\\n" "$NEW_PASSWORD" | dotnet Tempo.Api.dll reset-password --username runner --password-stdin',
        ],
    )
    assert Sandbox.wait_exit(verb, timeout=60) == 0, Sandbox.logs(verb)[-2000:]
    logs = Sandbox.logs(verb)
    assert "Password reset" in logs
    leaked = contains(logs, new_password) or contains(logs, db_password)
    assert not leaked, "reset-password printed a secret"

    assert post_json(sandbox, "http://api:5001/auth/login")[0] == 401  # old password
    fresh = json.dumps({"username": "runner", "password": new_password})
    assert post_json(sandbox, "http://api:5001/auth/login", fresh)[0] == 200


# ---------------------------------------------------------------- frontend


def test_frontend_serves_the_page_and_rewrites_api_to_the_api_service(sandbox: Sandbox) -> None:
    db_password = secrets.token_urlsafe(16)
    pg = start_postgres(sandbox, db_password)
    wait_postgres(sandbox, pg)
    api = start_api(sandbox, "api", db_password, secrets.token_urlsafe(48))
    frontend = sandbox.run(
        "tempo-e2e/frontend:v2.1.0",
        "frontend",
        user="1000:1000",
        tmpfs={"/tmp": "", "/app/.next/cache": "uid=1000,gid=1000"},
        **HARDENED,
    )
    wait_api(sandbox, api)
    wait_until(lambda: sandbox.http_status("http://frontend:3000/") == 200, 30, "frontend /")

    status, headers, body = sandbox.http("http://frontend:3000/api/health")
    assert status == 200 and json.loads(body) == {"status": "healthy"}
    assert headers["x-powered-by"] == ["Next.js"]
    assert headers["server"] == ["Kestrel"]  # the API answered, through the rewrite
    assert sandbox.http_status("http://frontend:3000/api/ready") == 200

    status, headers, body = sandbox.http("http://frontend:3000/")
    assert "text/html" in headers["content-type"][0] and "/_next/static/" in body
    assert sandbox.http_status("http://frontend:3000/_next/static/chunks/app.js") == 200
    assert sandbox.http_status("http://frontend:3000/health") == 404  # only /api/health exists
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
