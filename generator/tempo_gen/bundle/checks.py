"""Checks on rendered text before it is written: every output must parse as what it claims to be."""

from __future__ import annotations

import json

import yaml

from tempo_gen.bundle.files import Bundle
from tempo_gen.errors import RenderError

# libyaml's loader when PyYAML was built with it: parsing every output must stay cheap.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check_outputs(bundle: Bundle) -> None:
    for file in bundle:
        name = str(file.path)
        if "{{" in file.content or "{%" in file.content:
            raise RenderError(f"{name}: unrendered template syntax left in the output")
        if not file.content.endswith("\n") or "\r" in file.content:
            raise RenderError(f"{name}: output must use LF line endings and end with a newline")
        try:
            if file.path.suffix in (".yaml", ".yml"):
                yaml.compose(file.content, Loader=_YamlLoader)  # parsing proves it; building objects is not needed
            elif file.path.suffix == ".json":
                json.loads(file.content)
        except (yaml.YAMLError, ValueError) as exc:
            raise RenderError(f"{name}: rendered file does not parse: {exc}") from None
