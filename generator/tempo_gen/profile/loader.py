"""Profile file -> validated Profile: `extends:` overlays, `${VAR}` from .env, located errors."""

from __future__ import annotations

import difflib
import io
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tempo_gen.errors import Problem, ProfileError, UnsafeFile
from tempo_gen.models.base import PLACEHOLDER_SECRET, RuleViolations, control_character
from tempo_gen.models.profile import Profile
from tempo_gen.profile.source import FieldPath, SourceMap, dotted, read_yaml
from tempo_gen.project import misplaced_secrets_dir, unignorable
from tempo_gen.safe_fs import read_bounded

MAX_EXTENDS_DEPTH = 8
MAX_ENV_BYTES = 256 * 1024
# python-dotenv expands ${VAR} in time quadratic in the references and lines: 60 KB of `${` took minutes.
MAX_ENV_LINES = 1000
MAX_ENV_REFERENCES = 1000
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_WORDS = ("password", "secret", "token", "key", "credential")


@dataclass(frozen=True)
class LoadedProfile:
    profile: Profile
    path: Path
    display_path: str
    """The path as it appears in generated headers: relative to the project, POSIX style."""


def load_profile(path: Path, project_root: Path, *, require_pins: bool = True) -> LoadedProfile:
    """Read, merge, interpolate and validate one profile; raise ProfileError listing every problem.

    require_pins=False accepts unpinned images as if tempo.allow_unpinned were set:
    `tempo-gen lock` must read the very profiles that fail for lack of pins.
    """
    display = _display(path, project_root)
    data, source = _read_with_extends(path, project_root, chain=())
    env = {**_read_env(project_root), **os.environ}
    problems: list[Problem] = []
    data = _interpolate(data, (), env, source, display, problems)
    _refuse_unsafe_strings(data, (), source, display, problems)
    if problems:
        raise ProfileError(problems)
    if not require_pins and isinstance(data.get("tempo", {}), dict):
        data = deep_merge(data, {"tempo": {"allow_unpinned": True}})
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_explain(exc, source, display)) from None
    _check_secrets_dir(profile, project_root, source, display)
    return LoadedProfile(profile, path, display)


def _read_env(project_root: Path) -> dict[str, str | None]:
    """.env's variables, read by us (bounded, regular files only) so a FIFO or a huge file cannot stall the run."""
    path = project_root / ".env"
    if not os.path.lexists(path):
        return {}
    try:
        text = read_bounded(path, MAX_ENV_BYTES).decode("utf-8")
    except UnsafeFile as exc:
        raise ProfileError([Problem(".env", None, "", exc.reason)]) from None
    except UnicodeDecodeError:
        raise ProfileError([Problem(".env", None, "", "file is not valid UTF-8 text")]) from None
    if text.count("\n") > MAX_ENV_LINES or text.count("${") > MAX_ENV_REFERENCES:
        reason = f"over {MAX_ENV_LINES} lines or {MAX_ENV_REFERENCES} ${{...}} references (a deployment needs a few)"
        raise ProfileError([Problem(".env", None, "", reason)])
    return dict(dotenv_values(stream=io.StringIO(text)))


def _check_secrets_dir(profile: Profile, project_root: Path, source: SourceMap, display: str) -> None:
    """secrets.dir must be a folder of its own, outside what git sees (out/, profiles/, the project root)."""
    if profile.secrets.dir is None:
        return
    file, line = source.locate(("secrets", "dir"), display)
    reason = misplaced_secrets_dir(profile.secrets_dir, project_root)
    if reason is None and not profile.secrets_dir.is_absolute():
        reason = unignorable(profile.secrets_dir)
    if reason:
        raise ProfileError([Problem(file, line, "secrets.dir", f"{profile.secrets.dir!r} {reason}")])


_UNSAFE_IN_HEADER = "\\{}<>"


def _display(path: Path, project_root: Path) -> str:
    """The path as every message and file header names it. A control character, backslash or
    `>` in it could end the header comment of a generated file (`-->` ends Markdown's), and a
    brace could open template syntax (which the output checks refuse), so such a name is refused."""
    try:
        display = path.resolve().relative_to(project_root.resolve()).as_posix()
    except ValueError:
        display = path.as_posix()
    if control_character(display) or any(c in display for c in _UNSAFE_IN_HEADER):
        shown = ascii(display)
        raise ProfileError(
            [
                Problem(
                    shown,
                    None,
                    "",
                    f"the file name has a control character or one of {' '.join(_UNSAFE_IN_HEADER)}; rename it",
                )
            ]
        )
    return display


def _read_with_extends(path: Path, root: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], SourceMap]:
    display = _display(path, root)
    data, source = read_yaml(path, display)
    base_ref = data.get("extends")
    if base_ref is None:
        return data, source
    line = source.locations[("extends",)][1]
    if not isinstance(base_ref, str) or not base_ref:
        raise ProfileError([Problem(display, line, "extends", "must be the path of a base profile")])
    if found := control_character(base_ref):
        raise ProfileError([Problem(display, line, "extends", f"contains the control character {found}")])
    base_path = (path.parent / base_ref).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ProfileError([Problem(display, line, "extends", f"{base_ref!r} extends itself (a cycle)")])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise ProfileError([Problem(display, line, "extends", f"more than {MAX_EXTENDS_DEPTH} levels of extends")])
    if not os.path.lexists(base_path):
        raise ProfileError([Problem(display, line, "extends", f"base profile {base_ref!r} not found")])
    base, base_source = _read_with_extends(base_path, root, chain + (path.resolve(),))
    base.pop("extends", None)
    merged = deep_merge(base, data)
    merged.pop("extends")
    base_source.locations.update(source.locations)
    return merged, base_source


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; any other value (lists included) replaces the base's."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _interpolate(
    value: Any, path: FieldPath, env: Mapping[str, str | None], source: SourceMap, display: str, problems: list[Problem]
) -> Any:
    """Replace ${VAR} in string values from the environment or .env; `$$` is a literal `$`."""
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), env, source, display, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), env, source, display, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        if env.get(match[1]) is None:
            file, line = source.locate(path, display)
            problems.append(Problem(file, line, dotted(path), f"${{{match[1]}}} is not set in the environment or .env"))
            return ""
        return str(env[match[1]])

    return _VARIABLE.sub(substitute, value)


def _refuse_unsafe_strings(
    value: Any, path: FieldPath, source: SourceMap, display: str, problems: list[Problem]
) -> None:
    """Every key and string value, after interpolation: no control character, no placeholder secret."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and (found := control_character(k)):
                file, line = source.locate(path, display)
                problems.append(Problem(file, line, dotted(path), f"a key contains the control character {found}"))
                continue
            _refuse_unsafe_strings(v, path + (k,), source, display, problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_unsafe_strings(v, path + (i,), source, display, problems)
    elif isinstance(value, str) and (found := control_character(value)):
        file, line = source.locate(path, display)
        problems.append(Problem(file, line, dotted(path), f"contains the control character {found}, never allowed"))
    elif isinstance(value, str) and PLACEHOLDER_SECRET in value:
        file, line = source.locate(path, display)
        problems.append(
            Problem(
                file,
                line,
                dotted(path),
                "Tempo's placeholder secret must never be used (and secrets never go in a profile)",
            )
        )


def _explain(exc: ValidationError, source: SourceMap, display: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, RuleViolations):
            for field_path, message in cause.violations:
                file, line = source.locate(loc + field_path, display)
                problems.append(Problem(file, line, dotted(loc + field_path), message))
            continue
        file, line = source.locate(loc, display)
        problems.append(Problem(file, line, dotted(loc), _message(error, loc)))
    return problems


def _message(error: ErrorDetails, loc: FieldPath) -> str:
    if error["type"] == "extra_forbidden":
        return _unknown_field(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"].startswith(("value_error", "assertion_error")):
        return message
    return f"{message}; got {_short(error.get('input'))}"


def _unknown_field(loc: FieldPath) -> str:
    key = str(loc[-1])
    if any(word in key.lower() for word in _SECRET_WORDS):
        return (
            f"unknown field {key!r}: secret values never go in a profile; "
            "`tempo-gen secrets init` creates them in the secrets directory"
        )
    allowed = sorted(_fields_at(loc[:-1]))
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {key!r}{hint} (allowed: {', '.join(allowed)})"


def _fields_at(loc: FieldPath) -> set[str]:
    """Field names of the model found at `loc` inside Profile."""
    model: type[BaseModel] = Profile
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [
            a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return set()
        model = candidates[0]
    return set(model.model_fields)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
