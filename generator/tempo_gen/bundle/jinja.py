"""The Jinja environment every target renders with: strict, deterministic, no clock or randomness."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import jinja2
import yaml

from tempo_gen.errors import RenderError

_UNSAFE_IN_NGINX_STRING = re.compile(r'["\\$\x00-\x1f\x7f{}]')


def nginx_string(value: object) -> str:
    """A double-quoted nginx string; the models already refuse these characters, this is the second lock."""
    text = str(value)
    if _UNSAFE_IN_NGINX_STRING.search(text):
        raise RenderError(f"refusing to put {text!r} into the nginx config")
    return f'"{text}"'


def yaml_string(value: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML), safe for any text."""
    return json.dumps(str(value))


_SINGLE_SPACE = re.compile(r"(?<! ) (?! )")


def yaml_wrapped(value: object, indent: int, width: int = 100) -> str:
    """A YAML double-quoted scalar broken at single spaces (inside one, a line break reads as a
    space): after each `;` (one CSP directive a line) and before `width`, so long headers stay
    readable and pass yamllint's line length."""
    value = str(value)
    lines = [""]
    for word in _SINGLE_SPACE.split(value):
        quoted = json.dumps(word)[1:-1]
        if lines[-1] and (lines[-1].endswith(";") or len(lines[-1]) + len(quoted) >= width):
            lines.append("")
        lines[-1] += (" " if lines[-1] else "") + quoted
    text = '"' + ("\n" + " " * indent).join(lines) + '"'
    if yaml.safe_load(text) != value:  # the second lock: the value must read back unchanged
        raise RenderError(f"cannot write {value!r} as a YAML string")
    return text


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_root()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # Compiled templates are cached on disk (keyed by source checksum) so a
        # cold `render --check` does not recompile them every time.
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["yaml_quote"] = yaml_string
    env.filters["yaml_quote_wrapped"] = yaml_wrapped
    env.filters["nginx_quote"] = nginx_string
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tempo-gen" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home only costs speed
    return jinja2.FileSystemBytecodeCache(str(folder))


def template_root() -> Path:
    return Path(__file__).resolve().parent.parent / "templates"


def expand(template: str, values: Mapping[str, object]) -> str:
    """The text of `template` filled with `values`: one mapping, so no value can collide with a keyword."""
    return environment().get_template(template).render(values)
