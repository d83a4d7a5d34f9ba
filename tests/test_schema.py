"""The committed schema and README reference are exactly what the models generate."""

from __future__ import annotations

import json

from support.project import REPO
from tempo_gen.reports.schema import REFERENCE_END, REFERENCE_START, json_schema, markdown_reference

HOW = "run `python -m pytest tests/test_schema.py --update-golden` and commit"


def test_committed_schema_is_current(update_golden):
    path = REPO / "profiles" / "schema.json"
    if update_golden:
        path.write_text(json_schema())
    assert path.read_text() == json_schema(), HOW


def test_readme_profile_reference_is_current(update_golden):
    path = REPO / "README.md"
    text = path.read_text()
    start, end = text.index(REFERENCE_START), text.index(REFERENCE_END) + len(REFERENCE_END) + 1
    if update_golden:
        text = text[:start] + markdown_reference() + text[end:]
        path.write_text(text)
    assert text[start:end] == markdown_reference(), HOW


def test_schema_forbids_unknown_keys_and_names_required_fields():
    schema = json.loads(json_schema())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "domain"}


def test_example_profiles_point_editors_at_the_schema():
    for profile in sorted((REPO / "profiles").glob("*.yaml")):
        assert profile.read_text().startswith("# yaml-language-server: $schema=./schema.json\n"), profile.name


def test_schema_command_prints_it(cli):
    result = cli("schema")
    assert result.exit_code == 0
    assert result.output == json_schema()
