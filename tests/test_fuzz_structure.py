"""Hostile input never changes what tempo-gen renders: it is refused (exit 2, a message) or the
structure of every output, as its real parser reads it, is the baseline's.

Hypothesis puts hostile strings (newlines of every kind, NUL, quotes, backslash, `$`, `${X}`,
braces, `;`, `#`, `*`, `,`, spaces, long and non-ASCII text, and valid values with one such
character added) into every string field of the profile model, into `.env` values a field
interpolates, and into the profile's file name. Derandomized, so CI runs the same examples.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from dotenv import dotenv_values
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from support.fuzz_structure import (
    HOSTILE_CHARS,
    HOSTILE_FRAGMENTS,
    FieldCase,
    Structure,
    assert_same_structure,
    dotenv_quoted,
    dump,
    field_cases,
    hostile_for,
    load_and_render,
    profile_with,
    string_field_paths,
    structure,
    write_project,
)
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.cli import main
from tempo_gen.profile.loader import LoadedProfile

CASES = field_cases()
CI_EXAMPLES = 10_000
"""Hostile values the issue requires per CI run, all from the main property below."""
PER_FIELD = math.ceil(CI_EXAMPLES / len(CASES))
ENV_PER_FIELD = 25
FILE_NAME_EXAMPLES = 400
CHECKED_BY_TOOL = 50
ENV_VAR = "TEMPO_FUZZ_HOSTILE_VALUE"
Rendered = tuple[LoadedProfile, list[RenderedFile]]

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)

_baselines: dict[str, Structure] = {}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("fuzz-project")
    write_project(root)
    assert ENV_VAR not in os.environ
    yield root


def baseline(case: FieldCase, project: Path) -> Structure:
    """The structure of the case's profile with its valid value, rendered once per session."""
    if case.id not in _baselines:
        path = project / "profiles" / "baseline.yaml"
        path.write_text(dump(profile_with(case, case.valid)))
        loaded, files = load_and_render(path, project)
        _baselines[case.id] = structure(loaded, files)
        path.unlink()
    return _baselines[case.id]


def cli(project: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--project", str(project), *args])


def refused_or_rendered(project: Path, profile: Path, value: str) -> Rendered | None:
    """None when the CLI refuses the profile (exit 2, no traceback); else the in-process render."""
    result = cli(project, "validate", str(profile))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback for {value!r}: {result.exc_info}"
    )
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "problem(s) found" in result.output or "error:" in result.output, result.output
        return None
    assert result.exit_code == 0, f"exit {result.exit_code} for {value!r}: {result.output}"
    return load_and_render(profile, project)


def check_value(case: FieldCase, project: Path, value: str, *, via_env: bool = False) -> list[RenderedFile] | None:
    expected = baseline(case, project)
    profile = project / "profiles" / "fuzz.yaml"
    env = project / ".env"
    if via_env:
        env.write_text(f"{ENV_VAR}={dotenv_quoted(value)}\n")
        assume(dotenv_values(env).get(ENV_VAR) == value)  # python-dotenv expands ${...} even when quoted
        profile.write_text(dump(profile_with(case, "${" + ENV_VAR + "}")))
    else:
        profile.write_text(dump(profile_with(case, value)))
    try:
        rendered = refused_or_rendered(project, profile, value)
        if rendered is None:
            return None
        assert_same_structure(expected, structure(*rendered), value)
        return rendered[1]
    finally:
        profile.unlink()
        env.unlink(missing_ok=True)


def test_every_string_field_has_a_case() -> None:
    """A new string field fails here until it has a valid value to fuzz from (fuzz_structure_support._VALID)."""
    assert {case.path for case in CASES} == set(string_field_paths())
    assert len(string_field_paths()) >= 40
    assert PER_FIELD * len(CASES) >= CI_EXAMPLES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_value_is_refused_or_changes_no_structure(case: FieldCase, project: Path) -> None:
    @settings(FUZZ, max_examples=PER_FIELD)
    @given(value=hostile_for(case.valid))
    def run(value: str) -> None:
        check_value(case, project, value)

    run()


@pytest.mark.parametrize("case", [c for c in CASES if c.path != ("extends",)], ids=lambda c: c.id)
def test_hostile_dotenv_value_is_refused_or_changes_no_structure(case: FieldCase, project: Path) -> None:
    @settings(FUZZ, max_examples=ENV_PER_FIELD)
    @given(value=hostile_for(case.valid))
    def run(value: str) -> None:
        check_value(case, project, value, via_env=True)

    run()


_name_chars = st.one_of(
    st.sampled_from([c for c in HOSTILE_CHARS if c not in "/\x00"]),
    st.characters(codec="utf-8", exclude_characters="/\x00"),
)
hostile_file_names = st.one_of(
    st.text(alphabet=_name_chars, min_size=1, max_size=60),
    st.lists(
        st.one_of(
            st.sampled_from([f for f in HOSTILE_FRAGMENTS if "/" not in f and "\x00" not in f]),
            st.text(alphabet=_name_chars, max_size=4),
        ),
        min_size=1,
        max_size=6,
    ).map("".join),
).flatmap(lambda stem: st.sampled_from([f"{stem}.yaml", stem, f"example{stem}.yaml"]))


def test_hostile_profile_file_name_is_refused_or_changes_no_structure(project: Path) -> None:
    case = next(c for c in CASES if c.base == "example" and c.path == ("name",))
    expected = baseline(case, project)

    @settings(FUZZ, max_examples=FILE_NAME_EXAMPLES)
    @given(name=hostile_file_names)
    def run(name: str) -> None:
        assume(name not in {".", "..", "base.yaml"} and len(name.encode()) <= 240)
        profile = project / "profiles" / name
        try:
            profile.write_text(dump(profile_with(case, case.valid)))
        except OSError:
            assume(False)
        try:
            rendered = refused_or_rendered(project, profile, name)
            if rendered is not None:
                assert_same_structure(expected, structure(*rendered), name)
        finally:
            profile.unlink()

    run()


# The real tools, on a bounded number of examples (they cost a process each).

_FIREWALL_CASES = [c for c in CASES if c.base == "example" and (c.path[0] == "firewall" or c.path == ("domain",))]


def _write(files: list[RenderedFile], where: Path, suffix: str) -> list[Path]:
    written = []
    for file in files:
        if file.path.name.endswith(suffix):
            target = where / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            written.append(target)
    return written


def _nft_check(path: Path) -> None:
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _bash_check(path: Path) -> None:
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{path}: {result.stderr}"


def _valid_or_hostile(cases: list[FieldCase]) -> st.SearchStrategy[tuple[FieldCase, str]]:
    """A case and a value: its valid one or a hostile one (valid ones make sure the tool runs)."""
    return st.sampled_from(cases).flatmap(
        lambda case: st.tuples(st.just(case), st.one_of(st.just(case.valid), hostile_for(case.valid)))
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="nft -c needs root")
def test_nft_accepts_every_rendered_ruleset(project: Path, tmp_path: Path) -> None:
    @settings(FUZZ, max_examples=CHECKED_BY_TOOL)
    @given(pair=_valid_or_hostile(_FIREWALL_CASES))
    def run(pair: tuple[FieldCase, str]) -> None:
        case, value = pair
        files = check_value(case, project, value)
        if files is not None:
            for path in _write(files, tmp_path, "nftables.conf"):
                _nft_check(path)

    run()


def test_bash_parses_every_rendered_script(project: Path, tmp_path: Path) -> None:
    @settings(FUZZ, max_examples=CHECKED_BY_TOOL)
    @given(pair=_valid_or_hostile(CASES))
    def run(pair: tuple[FieldCase, str]) -> None:
        case, value = pair
        files = check_value(case, project, value)
        if files is not None:
            for path in _write(files, tmp_path, ".sh"):
                _bash_check(path)

    run()


def test_structure_sees_an_injected_line(project: Path) -> None:
    """The comparison itself catches what it is for: one more nginx directive, YAML key, nft rule or command."""
    case = next(c for c in CASES if c.base == "example" and c.path == ("domain",))
    expected = baseline(case, project)
    profile = project / "profiles" / "fuzz.yaml"
    profile.write_text(dump(profile_with(case, case.valid)))
    try:
        loaded, files = load_and_render(profile, project)
    finally:
        profile.unlink()
    injections: dict[str, tuple[str, str]] = {
        "proxy/nginx/tempo-gen/security.conf": ("nosniff", 'nosniff" always;\nreturn 200 "x'),
        "compose.yaml": ("services:\n", "services:\n  evil:\n    image: x\n"),
        "firewall/nftables.conf": ('\t\tiif "lo" accept\n', '\t\tiif "lo" accept\n\t\taccept\n'),
        "firewall/apply.sh": ("set -", "id; set -"),
    }
    for target, (old, new) in injections.items():
        changed = [
            RenderedFile(f.path, f.content.replace(old, new, 1), f.mode) if f.path.as_posix() == target else f
            for f in files
        ]
        assert any(f.content != g.content for f, g in zip(files, changed, strict=True)), target
        with pytest.raises(AssertionError):
            assert_same_structure(expected, structure(loaded, changed), target)
