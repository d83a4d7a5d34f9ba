"""Errors tempo-gen reports to its user: each carries a message fit to print, never a traceback."""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 but newline and tab, DEL and C1: an escape sequence in an out/ file or file name would drive the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` with every control character but newline and tab shown as an escape, e.g. \\x1b."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02x}", text)


class TempoGenError(Exception):
    """Base of every error the CLI turns into a message and an exit status."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a profile, located as precisely as we know."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ProfileError(TempoGenError):
    """The profile (or a file it names) is invalid: exit status 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RenderError(TempoGenError):
    """A target could not render, or a rendered file failed validation."""


class UsageError(TempoGenError):
    """The command line asks for something impossible (bad path, missing profile)."""

    exit_code = 2


class UnsafeFile(TempoGenError):
    """A path is not a regular file of bounded size, or is reached through a symlink: exit status 2."""

    exit_code = 2

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PartialWrite(TempoGenError):
    """A render replaced some bundles before it failed to swap in another; the message names both: exit status 2."""

    exit_code = 2


class EditError(TempoGenError):
    """A profile's text cannot take a value where asked (e.g. a list sits on the path)."""


class RegistryError(TempoGenError):
    """Why an image tag could not be resolved to a digest, worded for the user."""


class RegistryUnreachable(RegistryError):
    """The registry did not answer at all (offline, DNS, TLS, timeout)."""


class DeploymentError(TempoGenError):
    """The running deployment is not in the state an operation needs, or a step against it failed."""
