"""The `tempo-gen` command: parse arguments, call the pipeline, turn errors into messages and exit codes.

Exit codes: 0 success; 1 drift found by --check (or audit findings with --strict);
2 invalid input (profile, path, arguments).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tempo_gen import __version__
from tempo_gen.audit import checklist, weakenings
from tempo_gen.errors import ProfileError, Problem, TempoGenError, UsageError
from tempo_gen.models.tempo import Tempo
from tempo_gen.pipeline import render_files
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.render import render as render_template
from tempo_gen.schema import json_schema, markdown_reference
from tempo_gen.writer import check_bundle, write_bundle

PROFILE_DIR = "profiles"
OUT_DIR = "out"


def discover_profiles(root: Path) -> list[Path]:
    """Every renderable profile: profiles/*.yaml, except partials named _*.yaml (bases for `extends`)."""
    return sorted(p for p in (root / PROFILE_DIR).glob("*.yaml") if not p.name.startswith("_"))


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
            problems.append(Problem(item.display_path, None, "name", f"{item.profile.name!r} is also the name of {names[item.profile.name]}"))
        names[item.profile.name] = item.display_path
    if problems:
        raise ProfileError(problems)
    return loaded


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TempoGenError as exc:
            click.echo(f"error: {exc}" if not isinstance(exc, ProfileError) else str(exc), err=True)
            if isinstance(exc, ProfileError):
                click.echo(f"{len(exc.problems)} problem(s) found; nothing was written.", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="tempo-gen")
@click.option("--project", "project", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="Project folder holding profiles/, out/ and .env (default: current folder).")
@click.pass_context
def main(ctx: click.Context, project: Path) -> None:
    """Render hardened deployment bundles for Tempo from YAML profiles."""
    ctx.obj = project


@main.command()
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: out/).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 listing every file that differs from a fresh render.")
@click.option("--diff", "show_diff", is_flag=True, help="With --check, print unified diffs.")
@click.pass_obj
def render(root: Path, profiles: tuple[str, ...], out: Path | None, check: bool, show_diff: bool) -> None:
    """Render PROFILES (default: every profiles/*.yaml) into OUT/<name>/."""
    out_root = out or root / OUT_DIR
    loaded = load_all(profiles, root)
    rendered = [(item, out_root / item.profile.name) for item in loaded]
    outputs = [(item, target, render_files(item, root, target)) for item, target in rendered]
    if check or show_diff:
        _report_drift(outputs, out_root, all_profiles=not profiles, show_diff=show_diff)
        return
    for item, target, files in outputs:
        summary = write_bundle(files, target)
        click.echo(
            f"{item.display_path} -> {target}: {len(summary.written)} written, {len(summary.changed)} changed, "
            f"{len(summary.unchanged)} unchanged, {len(summary.removed)} removed"
        )


def _report_drift(outputs, out_root: Path, all_profiles: bool, show_diff: bool) -> None:
    drifted = 0
    for item, target, files in outputs:
        for drift in check_bundle(files, target):
            drifted += 1
            click.echo(f"{drift.kind}: {target / drift.path}")
            if show_diff and drift.diff:
                click.echo(drift.diff, nl=False)
    if all_profiles and out_root.is_dir():
        expected = {target.name for _, target, _ in outputs}
        for stray in sorted(p.name for p in out_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if stray not in expected:
                drifted += 1
                click.echo(f"extra: {out_root / stray}/ (no profile renders it)")
    if drifted:
        click.echo(f"{drifted} file(s) differ from a fresh render; run `tempo-gen render` and commit.", err=True)
        sys.exit(1)
    click.echo(f"out/ is current ({len(outputs)} profile(s)).")


@main.command()
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_obj
def validate(root: Path, profiles: tuple[str, ...]) -> None:
    """Check PROFILES without rendering."""
    for item in load_all(profiles, root):
        click.echo(f"{item.display_path}: valid")


@main.command()
@click.option("--markdown", is_flag=True, help="Print the README's profile reference table instead.")
def schema(markdown: bool) -> None:
    """Print the profile's JSON Schema (a copy is committed as profiles/schema.json)."""
    click.echo(markdown_reference() if markdown else json_schema(), nl=False)


@main.command()
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Exit 1 when a profile weakens any default or misses a checklist item.")
@click.pass_obj
def audit(root: Path, profiles: tuple[str, ...], strict: bool) -> None:
    """Report what PROFILES weaken and the seed guide's checklist."""
    failed = False
    for item in load_all(profiles, root):
        click.echo(f"{item.display_path}:")
        for finding in weakenings(item.profile):
            failed = True
            click.echo(f"  weakened  {finding.field}: {finding.message}")
        for entry in checklist(item.profile):
            failed |= not entry.met
            click.echo(f"  {'ok' if entry.met else 'MISSING':9} {entry.item}: {entry.how}")
    if strict and failed:
        sys.exit(1)


@main.command()
@click.argument("name", required=False)
@click.option("--domain", help="Public host name, e.g. tempo.example.com.")
@click.option("--proxy", "proxy", type=click.Choice(["nginx", "traefik", "none"]), help="Reverse proxy.")
@click.option("--address", help="Host address the proxy publishes 80/443 on.")
@click.pass_obj
def init(root: Path, name: str | None, domain: str | None, proxy: str | None, address: str | None) -> None:
    """Write profiles/NAME.yaml: a commented starter profile with secure defaults."""
    interactive = sys.stdin.isatty()
    name = name or (click.prompt("Deployment name", default="tempo") if interactive else "tempo")
    if domain is None:
        if not interactive:
            raise UsageError("--domain is required when not run on a terminal")
        domain = click.prompt("Public domain (e.g. tempo.example.com)")
    if proxy is None:
        proxy = click.prompt("Reverse proxy", type=click.Choice(["nginx", "traefik", "none"]), default="nginx") if interactive else "nginx"
    if address is None and proxy != "none":
        if not interactive:
            raise UsageError("--address is required when not run on a terminal (the host IP the proxy publishes on)")
        address = click.prompt("Host address the proxy publishes 80/443 on (e.g. 203.0.113.10)")
    path = root / PROFILE_DIR / f"{name}.yaml"
    if path.exists():
        raise UsageError(f"{path} exists; choose another name or edit it")
    text = render_template("init/profile.yaml.j2", name=name, domain=domain, proxy=proxy,
                           address=json.dumps(address), version=Tempo().version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        load_profile(path, root)
    except ProfileError:
        path.unlink()
        raise
    click.echo(f"wrote {path}; next: `tempo-gen secrets init {path}` and `tempo-gen render`")
