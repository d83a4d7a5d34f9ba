"""The one interface every secret backend offers the CLI, and the results it reports.

A backend is chosen once from the profile's deploy.mode (secret_store in
ops/secrets/__init__.py): secret files for Compose (files.py, rotated by
rotation.py), versioned Swarm secrets for Swarm (swarm.py). No backend ever
returns a secret's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tempo_gen.errors import UsageError

# What `secrets rotate WHICH` names, and the secret that is.
ROTATABLE = {"jwt": "jwt_key", "db": "db_password"}


def secret_to_rotate(which: str) -> str:
    """The secret `which` (`jwt` or `db`) names."""
    if which not in ROTATABLE:
        raise UsageError(f"cannot rotate {which!r}: choose one of {', '.join(ROTATABLE)}")
    return ROTATABLE[which]


@dataclass(frozen=True)
class Created:
    """One secret `secrets init` looked at: where it is (a file, a Swarm secret) and whether it was made now."""

    where: str
    created: bool
    fixed: str = ""
    """What init corrected on a kept secret, e.g. its owner after a uid change; empty: nothing."""


@dataclass(frozen=True)
class SecretProblem:
    """One thing wrong with a secret, worded for the user (never showing its value)."""

    where: str
    problem: str


class SecretStore(Protocol):
    def init(self) -> list[Created]:
        """Create every missing secret from a fresh random value; never replace one."""
        ...

    def init_hints(self) -> list[str]:
        """Lines to show after init: what the user must still do by hand (empty when nothing)."""
        ...

    def check(self) -> list[SecretProblem]:
        """Every problem with the stored secrets."""
        ...

    def rotate(self, which: str) -> list[str]:
        """Rotate the JWT key (`jwt`) or the database password (`db`) of the running stack; say what happened."""
        ...
