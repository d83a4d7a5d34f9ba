"""Setting values in a profile's text changes those values and not one other byte."""

from __future__ import annotations

import pytest

from tempo_gen.errors import EditError
from tempo_gen.profile.edit import find, set_scalars
from tempo_gen.profile.source import FieldPath

PIN = "r.example/api:v1@sha256:" + "a" * 64
API = ("tempo", "images", "api")


@pytest.mark.parametrize(
    "before, after",
    [
        # Replaced within its own span: quotes, inline comments and the next lines stay.
        (
            "tempo:\n  images:\n    api: 'r.example/api:v1'  # why\n# end\n",
            f"tempo:\n  images:\n    api: '{PIN}'  # why\n# end\n",
        ),
        ("tempo:\n  images:\n    api:\n    postgres: p:1\n", f"tempo:\n  images:\n    api: {PIN}\n    postgres: p:1\n"),
        ("tempo:\n  images:\n    api: ~\n", f"tempo:\n  images:\n    api: {PIN}\n"),
        # Added after the mapping's last line, before the blank lines and comments of what follows.
        (
            "tempo:\n  version: 2.1.0  # release\n\n# Proxy.\nproxy: {}\n",
            f"tempo:\n  version: 2.1.0  # release\n  images:\n    api: {PIN}\n\n# Proxy.\nproxy: {{}}\n",
        ),
        ("name: x\n# trailing\n", f"name: x\ntempo:\n  images:\n    api: {PIN}\n# trailing\n"),
        ("name: x", f"name: x\ntempo:\n  images:\n    api: {PIN}"),
        (
            "proxy:\n    kind: nginx\nname: x\n",
            f"proxy:\n    kind: nginx\nname: x\ntempo:\n    images:\n        api: {PIN}\n",
        ),
        (
            "tempo:\n  images:\n    postgres: p:1\n  cors_origins:\n    - https://a.example\n",
            f"tempo:\n  images:\n    postgres: p:1\n    api: {PIN}\n  cors_origins:\n    - https://a.example\n",
        ),
        (
            "tempo:\n  note: |\n    text\n\nname: x\n",
            f"tempo:\n  note: |\n    text\n\n  images:\n    api: {PIN}\nname: x\n",
        ),
        # Flow mappings stay flow mappings.
        ("tempo: {version: 2.1.0}  # c\n", f"tempo: {{version: 2.1.0, images: {{api: {PIN}}}}}  # c\n"),
        ("tempo: {}\n", f"tempo: {{images: {{api: {PIN}}}}}\n"),
    ],
)
def test_set_scalars_splices_the_text(before: str, after: str) -> None:
    assert set_scalars(before, {API: PIN}) == after


def test_several_values_land_in_order_in_one_new_mapping() -> None:
    text = "# head\ntempo:\n  version: 2.1.0\n\nproxy:\n  kind: nginx\n"
    values: dict[FieldPath, str | int] = {API: "a:1", ("tempo", "images", "frontend"): "f:1", ("proxy", "image"): "n:1"}
    assert set_scalars(text, values) == (
        "# head\ntempo:\n  version: 2.1.0\n  images:\n    api: a:1\n    frontend: f:1\n\n"
        "proxy:\n  kind: nginx\n  image: n:1\n"
    )


def test_a_non_mapping_on_the_path_is_refused() -> None:
    with pytest.raises(EditError, match=r"tempo\.images is not a mapping"):
        set_scalars("tempo:\n  images: [a]\n", {API: PIN})


def test_find_returns_the_written_node_or_none() -> None:
    text = "tempo:\n  images:\n    api: a:1\n"
    node = find(text, API)
    assert node is not None and node.value == "a:1" and node.start_mark.line == 2
    assert find(text, ("proxy", "image")) is None
