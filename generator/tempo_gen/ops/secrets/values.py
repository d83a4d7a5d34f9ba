"""The deployment's secrets as values, whatever stores them: their names, fresh values, what makes one weak.

Values use the URL-safe base64 alphabet: nothing in it can break an Npgsql
connection string (`;`, `=`, quotes).
"""

from __future__ import annotations

import secrets as csprng

from tempo_gen.models.base import PLACEHOLDER_SECRET
from tempo_gen.targets.tempo_images import MIN_SECRET_LENGTH

SECRET_NAMES = ("db_password", "jwt_key")
# 48 random bytes -> 64 characters; well above Tempo's 32-character minimum.
_RANDOM_BYTES = 48
_FORBIDDEN_IN_DB_PASSWORD = set(";='\"")


def new_value() -> str:
    return csprng.token_urlsafe(_RANDOM_BYTES)


def weaknesses(name: str, value: str) -> list[str]:
    found = []
    if not value:
        found.append("empty")
    elif len(value) < MIN_SECRET_LENGTH:
        found.append(f"shorter than {MIN_SECRET_LENGTH} characters")
    if PLACEHOLDER_SECRET in value:
        found.append("Tempo's placeholder value")
    if name == "db_password" and _FORBIDDEN_IN_DB_PASSWORD & set(value):
        found.append("contains ; = or a quote, which break the Npgsql connection string")
    return found
