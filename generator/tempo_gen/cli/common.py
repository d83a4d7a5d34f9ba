"""What several commands share: loading the profiles they name, and the --out option."""

from __future__ import annotations

from pathlib import Path

import click

from tempo_gen.errors import Problem, ProfileError, UsageError
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.project import PROFILE_DIR, discover_profiles


def load_all(paths: tuple[str, ...], root: Path) -> list[LoadedProfile]:
    """Load every profile, reporting the problems of all of them at once."""
    files = [Path(p) for p in paths] or discover_profiles(root)
    if not files:
        raise UsageError(f"no profiles given and none found in {root / PROFILE_DIR}/ (try `tempo-gen init`)")
    loaded, problems = [], []
    for file in files:
        try:
            loaded.append(load_profile(file, root))
        except ProfileError as exc:
            problems += exc.problems
    names: dict[str, str] = {}
    for item in loaded:
        if item.profile.name in names:
            problems.append(
                Problem(
                    item.display_path,
                    None,
                    "name",
                    f"{item.profile.name!r} is also the name of {names[item.profile.name]}",
                )
            )
        names[item.profile.name] = item.display_path
    if problems:
        raise ProfileError(problems)
    return loaded


OUT_OPTION = click.option(
    "--out", "out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: out/)."
)


def load_one(profile: str | None, root: Path, what: str) -> LoadedProfile:
    """The one profile a command on a running deployment acts on."""
    loaded = load_all((profile,) if profile else (), root)
    if len(loaded) != 1:
        raise UsageError(f"name the profile whose {what}")
    return loaded[0]
