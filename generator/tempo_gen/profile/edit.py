"""Set scalar values in a YAML profile's text, keeping every other byte as written.

A YAML round-trip (ruamel included) re-indents, re-wraps long values and moves
comments: a blank line or comment block is attached to the key before it, so a
key appended to a mapping lands below the comment meant for the next section.
Profiles are hand-written and reviewed as diffs, so edits splice the text
instead: an existing value is replaced within its own span, and a missing key
becomes new lines right after the last value of its mapping. PyYAML's node marks
give those positions; the result is re-parsed to prove only the targets changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from tempo_gen.errors import EditError
from tempo_gen.profile.source import FieldPath, dotted


def set_scalars(text: str, values: Mapping[FieldPath, str | int]) -> str:
    """`text` with each mapping path set to its value (a string or an integer), creating missing keys."""
    expected = copy.deepcopy(yaml.safe_load(text))
    for path, value in values.items():
        text = _set(text, path, str(value))
        _assign(expected, path, value)
    if yaml.safe_load(text) != expected:
        raise EditError("editing changed more than the values asked for")  # a bug here, never the user's
    return text


def find(text: str, path: FieldPath) -> yaml.Node | None:
    """The node written at `path`, or None when the text does not write it."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for key in path:
        if not isinstance(node, yaml.MappingNode) or (node := _child(node, key)) is None:
            return None
    return node


def _set(text: str, path: FieldPath, value: str) -> str:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for depth, key in enumerate(path):
        if not isinstance(node, yaml.MappingNode):
            raise EditError(f"{dotted(path[:depth])} is not a mapping")
        child = _child(node, key)
        if child is None:
            return _insert(text, node, path[depth:], value, _indent_step(text))
        node = child
    if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
        raise EditError(f"{dotted(path)} is not written as a one-line value")
    start, end = node.start_mark.index, node.end_mark.index
    if start == end:  # `key:` with nothing after it
        return f"{text[:start]} {value}{text[end:]}"
    quote = node.style or ""  # keep the author's quotes; image references need none
    return f"{text[:start]}{quote}{value}{quote}{text[end:]}"


def _insert(text: str, mapping: yaml.MappingNode, path: FieldPath, value: str, step: int) -> str:
    """Add `path` (the keys missing below `mapping`) after the mapping's last entry."""
    if mapping.flow_style:
        entry = _flow(path, value)
        if mapping.value:
            at = mapping.value[-1][1].end_mark.index
            return f"{text[:at]}, {entry}{text[at:]}"
        at = mapping.end_mark.index - 1  # just inside the closing brace
        return f"{text[:at]}{entry}{text[at:]}"
    indent = mapping.value[0][0].start_mark.column
    lines = [f"{' ' * (indent + i * step)}{key}:" for i, key in enumerate(path)]
    lines[-1] += f" {value}"
    block = "\n".join(lines)
    at = _last_content_end(mapping)
    if text[at - 1] == "\n":  # a block scalar ends at the start of the next line
        return f"{text[:at]}{block}\n{text[at:]}"
    # After the rest of that line (an inline comment stays where it was), before
    # any blank lines and comments, which belong to whatever follows.
    line_end = text.find("\n", at)
    at = len(text) if line_end == -1 else line_end
    return f"{text[:at]}\n{block}{text[at:]}"


def _last_content_end(node: yaml.Node) -> int:
    """Where the last value under a block collection ends (its own end mark lies past trailing comments)."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style:
        node = node.value[-1][1] if isinstance(node, yaml.MappingNode) else node.value[-1]
    index: int = node.end_mark.index
    return index


def _indent_step(text: str) -> int:
    """The document's indentation step: the column of its first nested block mapping, or 2."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return 2
    for _, value in root.value:
        if isinstance(value, yaml.MappingNode) and not value.flow_style and value.value:
            column: int = value.value[0][0].start_mark.column
            return column
    return 2


def _flow(path: FieldPath, value: str) -> str:
    return f"{path[0]}: {value}" if len(path) == 1 else f"{path[0]}: {{{_flow(path[1:], value)}}}"


def _child(mapping: yaml.MappingNode, key: str | int) -> yaml.Node | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            child: yaml.Node = value_node
            return child
    return None


def _assign(data: Any, path: FieldPath, value: str | int) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value
