"""The Jinja environment every target renders with: strict, deterministic, no clock or randomness."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import jinja2

import tempo_gen.templates


def yaml_string(value: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML), safe for any text."""
    return json.dumps(str(value))


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
    env.filters["q"] = yaml_string
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tempo-gen" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home only costs speed
    return jinja2.FileSystemBytecodeCache(str(folder))


def template_root() -> Path:
    return Path(tempo_gen.templates.__file__).parent


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
