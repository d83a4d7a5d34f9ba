"""Rotating the secrets of a running stack in the only safe order.

Database: the new password is written beside the old one, set inside the
running Postgres (as a SCRAM verifier, so no log can ever hold the password),
then moved into place, then the API is recreated with it. If Postgres refuses
the new one, nothing changed but the deleted .next file; if the move fails, the
old password is set back. Either way the old one keeps working until the new one
is in place.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from pathlib import Path

from tempo_gen.errors import DeploymentError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.running.compose import ComposeProject
from tempo_gen.ops.running.stack import RunningStack
from tempo_gen.ops.secrets.files import existing_secrets_folder, ownership, read_secret, secrets_dir, write_secret
from tempo_gen.ops.secrets.values import new_value
from tempo_gen.safe_fs import lexists_at

SCRAM_ITERATIONS = 4096
# psql reads the current password as the first line of stdin; the SQL follows.
# Nothing secret is in the command line or the environment of the exec.
_PSQL = [
    "sh",
    "-c",
    "IFS= read -r PGPASSWORD; export PGPASSWORD; "
    'exec psql -X -q -v ON_ERROR_STOP=1 --host=127.0.0.1 --username="$POSTGRES_USER" --dbname="$POSTGRES_DB"',
]


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier for `password` (RFC 5802/7677), as `\\password` computes it."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def rotate_jwt(profile: Profile, root: Path, stack: ComposeProject | None) -> None:
    """Replace the JWT key; the API is recreated, so every session ends and users log in again."""
    path = secrets_dir(profile, root) / "jwt_key"
    with existing_secrets_folder(profile, root) as folder:
        if folder is None or not lexists_at(folder, "jwt_key"):
            raise DeploymentError(f"{path} does not exist (run `tempo-gen secrets init`)")
        write_secret(folder, "jwt_key", new_value(), ownership(profile, "jwt_key"))
    if stack:
        stack.recreate("api")
        stack.wait_healthy("api")


def rotate_db(profile: Profile, root: Path, stack: ComposeProject) -> None:
    current_path = secrets_dir(profile, root) / "db_password"
    name, next_name = "db_password", "db_password.next"
    with existing_secrets_folder(profile, root) as folder:
        if folder is None or not lexists_at(folder, name):
            raise DeploymentError(f"{current_path} does not exist (run `tempo-gen secrets init`)")
        if lexists_at(folder, next_name):
            raise DeploymentError(
                f"{current_path}.next exists: a previous rotation did not finish; check which password "
                "Postgres accepts, keep that one as db_password and delete the other"
            )
        current, new = read_secret(folder, name, current_path), new_value()
        write_secret(folder, next_name, new, ownership(profile, name))
        try:
            set_db_password(stack, authenticate_with=current, verifier_for=new)
        except BaseException:
            os.unlink(next_name, dir_fd=folder)
            raise
        try:
            os.replace(next_name, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            set_db_password(stack, authenticate_with=new, verifier_for=current)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(next_name, dir_fd=folder)
            raise
    stack.recreate("api")
    stack.wait_healthy("api")


def set_db_password(stack: RunningStack, authenticate_with: str, verifier_for: str) -> None:
    """In the running Postgres, logged in with one password, make another the role's password (as a verifier)."""
    sql = f"ALTER ROLE CURRENT_USER WITH PASSWORD '{scram_verifier(verifier_for)}';\n"
    code, output = stack.exec_with_stdin("postgres", _PSQL, f"{authenticate_with}\n{sql}")
    if code != 0:
        raise DeploymentError(f"setting the new password in Postgres failed (exit {code}): {output.strip()[-300:]}")
