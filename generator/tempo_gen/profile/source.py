"""Read one YAML profile file into plain data plus the line of every field.

Profiles are small, hand-written files, so anything unusual is refused early with
a located message: oversized or binary files, several documents, duplicate keys,
non-string keys, and anchors/aliases (the billion-laughs vector; `extends:` is the
supported way to share values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tempo_gen.errors import Problem, ProfileError, UnsafeFile
from tempo_gen.safe_fs import read_bounded

MAX_PROFILE_BYTES = 1024 * 1024

FieldPath = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Where each field path of a (possibly merged) profile was written."""

    locations: dict[FieldPath, tuple[str, int]] = field(default_factory=dict)

    def locate(self, path: FieldPath, default_file: str) -> tuple[str, int | None]:
        """The file and line of `path`, or of its nearest written parent."""
        for end in range(len(path), -1, -1):
            found = self.locations.get(tuple(path[:end]))
            if found:
                return found
        return default_file, None


MAX_NESTING = 32
"""Deepest nesting of mappings and lists: a profile needs about 5; PyYAML's composer recurses per level."""


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors and aliases before anything expands, and nesting
    deep enough to exhaust the composer's recursion."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases are not allowed in profiles (use `extends:` to share values)",
                problem_mark=event.start_mark,
            )
        if self.depth >= MAX_NESTING:
            raise yaml.MarkedYAMLError(
                problem=f"nested more than {MAX_NESTING} levels deep", problem_mark=event.start_mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _problem(file: str, line: int | None, message: str, fieldpath: str = "") -> ProfileError:
    return ProfileError([Problem(file, line, fieldpath, message)])


def dotted(path: FieldPath) -> str:
    """("proxy", "tls", 0) as proxy.tls.0, the way messages name a field."""
    return ".".join(str(p) for p in path)


def read_yaml(path: Path, display: str | None = None) -> tuple[dict[str, Any], SourceMap]:
    """Parse `path` into a mapping and its SourceMap, or raise ProfileError."""
    name = display or str(path)
    try:
        raw = read_bounded(path, MAX_PROFILE_BYTES)  # type and size checked on the open file, before reading
    except UnsafeFile as exc:
        raise _problem(name, None, exc.reason) from None
    if b"\0" in raw:
        raise _problem(name, None, "file is binary (contains NUL bytes), not a YAML profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _problem(name, line, "file is not valid UTF-8 text") from None

    loader = _NoAliasLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        if "'\\t'" in message:
            message += " (YAML does not allow tabs for indentation; use spaces)"
        raise _problem(name, mark.line + 1 if mark else None, f"invalid YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise _problem(name, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()

    if root is None:
        raise _problem(name, None, "file is empty; a profile is a YAML mapping (see `tempo-gen init`)")
    if not isinstance(root, yaml.MappingNode):
        raise _problem(
            name, root.start_mark.line + 1, "the top level must be a mapping of fields, not a list or a scalar"
        )
    source = SourceMap()
    data = _build(root, (), name, source, loader)
    return data, source


def _build(node: yaml.Node, path: FieldPath, name: str, source: SourceMap, loader: yaml.SafeLoader) -> Any:
    """Turn a composed node into Python data, recording each field's line."""
    source.locations[path] = (name, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _problem(name, line, "merge keys (<<) are not allowed; use `extends:`", dotted(path))
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise _problem(name, line, "keys must be plain strings", dotted(path))
            if key in result:
                raise _problem(
                    name,
                    line,
                    f"duplicate key {key!r} (first given on line {source.locations[path + (key,)][1]})",
                    dotted(path),
                )
            result[key] = _build(value_node, path + (key,), name, source, loader)
            source.locations[path + (key,)] = (name, line)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), name, source, loader) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as exc:
        raise _problem(name, node.start_mark.line + 1, f"invalid value: {exc}", dotted(path)) from None
