"""The committed schema and profile reference (docs/profile-reference.md) are exactly what the models generate."""

from __future__ import annotations

import json

from support.project import REPO, RunCli
from tempo_gen.reports.schema import REFERENCE_END, REFERENCE_START, json_schema, markdown_reference

HOW = "run `python -m pytest tests/test_schema.py --update-golden` and commit"


def test_committed_schema_is_current(update_golden: bool) -> None:
    path = REPO / "profiles" / "schema.json"
    if update_golden:
        path.write_text(json_schema())
    assert path.read_text() == json_schema(), HOW


def test_profile_reference_is_current(update_golden: bool) -> None:
    path = REPO / "docs" / "profile-reference.md"
    text = path.read_text()
    start, end = text.index(REFERENCE_START), text.index(REFERENCE_END) + len(REFERENCE_END) + 1
    if update_golden:
        path.write_text(text[:start] + markdown_reference() + text[end:])
        text = path.read_text()
        end = text.index(REFERENCE_END) + len(REFERENCE_END) + 1
    assert text[start:end] == markdown_reference(), HOW


def test_every_field_has_a_description() -> None:
    undescribed = [row.split("|")[1].strip() for row in markdown_reference().splitlines() if row.endswith("|  |")]
    assert not undescribed, f"add description= to these Fields: {undescribed}"


def test_readme_links_the_profile_reference() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/profile-reference.md" in readme
    assert REFERENCE_START not in readme, "the reference lives in docs/profile-reference.md only"


def test_schema_forbids_unknown_keys_and_names_required_fields() -> None:
    schema = json.loads(json_schema())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "domain"}


def test_example_profiles_point_editors_at_the_schema() -> None:
    for profile in sorted((REPO / "profiles").glob("*.yaml")):
        assert profile.read_text().startswith("# yaml-language-server: $schema=./schema.json\n"), profile.name


def test_schema_command_prints_it(cli: RunCli) -> None:
    result = cli("schema")
    assert result.exit_code == 0
    assert result.output == json_schema()
