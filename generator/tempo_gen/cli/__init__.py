"""The `tempo-gen` command: parse arguments, call the pipeline, turn errors into messages and exit codes.

Exit codes: 0 success; 1 drift found by --check (or audit findings with --strict);
2 invalid input (profile, path, arguments).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path, PurePosixPath

import click

from tempo_gen import __version__
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.jinja import expand
from tempo_gen.bundle.outlock import render_lock
from tempo_gen.bundle.pipeline import render_bundle
from tempo_gen.bundle.writer import check_replaceable, recover, write_bundles
from tempo_gen.cli.backup import backup, restore
from tempo_gen.cli.common import load_all
from tempo_gen.cli.deploy import deploy, upgrade
from tempo_gen.cli.deployment import admin, cert, secrets, swarm
from tempo_gen.errors import Problem, ProfileError, TempoGenError, UsageError, terminal_safe
from tempo_gen.models.base import control_character
from tempo_gen.models.tempo import Tempo
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.project import OUT_DIR, PROFILE_DIR, discover_profiles, ensure_ignored, misplaced_secrets_dir
from tempo_gen.reports.audit import checklist, weakenings
from tempo_gen.reports.drift import check_bundle
from tempo_gen.reports.schema import (
    json_schema,
    markdown_reference,
    schema_file,
    schema_file_is_current,
    write_schema_file,
)
from tempo_gen.safe_fs import write_new

# One profile's render: the profile, the folder it renders to, and the files.
Rendered = tuple[LoadedProfile, Path, list[RenderedFile]]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TempoGenError as exc:
            click.echo(terminal_safe(f"error: {exc}" if not isinstance(exc, ProfileError) else str(exc)), err=True)
            if isinstance(exc, ProfileError):
                click.echo(f"{len(exc.problems)} problem(s) found; nothing was written.", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # an unusable --out, --project or secrets path: the user's to fix, not a bug
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(
                terminal_safe(f"error:{where}: {exc.strerror or exc}; the previous output is untouched."), err=True
            )
            sys.exit(UsageError.exit_code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="tempo-gen")
@click.option(
    "--project",
    "project",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="Project folder holding profiles/, out/ and .env (default: current folder).",
)
@click.pass_context
def main(ctx: click.Context, project: Path) -> None:
    """Render hardened deployment bundles for Tempo from YAML profiles."""
    ctx.obj = project


@main.command()
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: out/).")
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 listing every file that differs from a fresh render."
)
@click.option("--diff", "show_diff", is_flag=True, help="With --check, print unified diffs.")
@click.pass_obj
def render(root: Path, profiles: tuple[str, ...], out: Path | None, check: bool, show_diff: bool) -> None:
    """Render PROFILES (default: every profiles/*.yaml) into OUT/<name>/."""
    out_root = out or root / OUT_DIR
    if control_character(str(out_root)):
        raise UsageError(f"--out {str(out_root)!a} contains a control character; choose another folder")
    loaded = load_all(profiles, root)
    rendered = [(item, out_root / item.profile.name) for item in loaded]
    _refuse_secrets_in_bundles(rendered, root)
    outputs = [(item, target, render_bundle(item, root, target)) for item, target in rendered]
    if check or show_diff:
        with render_lock(out_root, shared=True) if out_root.is_dir() else nullcontext():
            _report_drift(outputs, out_root, all_profiles=not profiles, show_diff=show_diff, root=root)
        return

    def waiting() -> None:
        click.echo(f"waiting for another tempo-gen render of {out_root} to finish...", err=True)

    with render_lock(out_root, waiting=waiting):
        # Refusals first, then the project files, then every bundle at once (write_bundles): a failure
        # anywhere before the bundles' swaps leaves every out/<name> as it was.
        for _, target, _ in outputs:
            recover(target)
            check_replaceable(target)
        # Default folders (secrets/<name>) share the one rule /secrets/; a chosen secrets.dir gets its own.
        ensure_ignored(
            root,
            [
                PurePosixPath("secrets") if i.profile.secrets.dir is None else i.profile.secrets_dir
                for i, _, _ in outputs
            ],
        )
        schema = schema_file(root)
        refreshed = schema.exists() and write_schema_file(schema)
        summaries = write_bundles([(files, target) for _, target, files in outputs])
        for (item, target, _), summary in zip(outputs, summaries, strict=True):
            click.echo(
                f"{item.display_path} -> {target}: {len(summary.written)} written, {len(summary.changed)} changed, "
                f"{len(summary.unchanged)} unchanged, {len(summary.removed)} removed"
            )
        if refreshed:
            click.echo(f"{schema}: refreshed to this version's profile schema")


def _refuse_secrets_in_bundles(rendered: list[tuple[LoadedProfile, Path]], root: Path) -> None:
    """A secrets folder inside a bundle folder would be replaced (or committed) with it."""
    problems = []
    for item, _ in rendered:
        for _, target in rendered:
            if reason := misplaced_secrets_dir(item.profile.secrets_dir, root, target):
                problems.append(Problem(item.display_path, None, "secrets.dir", f"{item.profile.secrets_dir} {reason}"))
    if problems:
        raise ProfileError(problems)


def _report_drift(outputs: list[Rendered], out_root: Path, all_profiles: bool, show_diff: bool, root: Path) -> None:
    drifted = 0
    for _, target, files in outputs:
        for drift in check_bundle(files, target):
            drifted += 1
            click.echo(terminal_safe(f"{drift.kind}: {os.path.normpath(target / drift.path)}"))
            if show_diff and drift.diff:
                click.echo(terminal_safe(drift.diff), nl=False)
    if all_profiles and out_root.is_dir():
        expected = {target.name for _, target, _ in outputs}
        for stray in sorted(p for p in out_root.iterdir() if not p.name.startswith(".")):
            if stray.is_symlink():
                drifted += 1
                click.echo(terminal_safe(f"symlink: {stray} (never followed)"))
            elif stray.is_dir() and stray.name not in expected:
                drifted += 1
                click.echo(terminal_safe(f"extra: {stray}/ (no profile renders it)"))
    # Like stray folders, only for a whole-project check: building the schema costs ~20 ms of a cold start.
    schema = schema_file(root)
    if all_profiles and schema.exists() and not schema_file_is_current(schema):
        drifted += 1
        click.echo(f"changed: {schema} (not this version's profile schema)")
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
@click.option("--markdown", is_flag=True, help="Print the profile reference table (docs/profile-reference.md) instead.")
def schema(markdown: bool) -> None:
    """Print the profile's JSON Schema (profiles/schema.json, which init writes and render refreshes)."""
    click.echo(markdown_reference() if markdown else json_schema(), nl=False)


@main.command()
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Exit 1 when a profile weakens any default or misses a checklist item.")
@click.option(
    "--live",
    is_flag=True,
    help="Also check the running deployment: certificate, secrets' age, images against pins, release, and the "
    "age of the last backup and of the last successful restore drill.",
)
@click.pass_obj
def audit(root: Path, profiles: tuple[str, ...], strict: bool, live: bool) -> None:
    """Report what PROFILES weaken and the checklist of Tempo's security guide."""
    failed = False
    for item in load_all(profiles, root):
        click.echo(f"{item.display_path}:")
        for finding in weakenings(item.profile):
            failed = True
            click.echo(f"  weakened  {finding.field}: {finding.message}")
        for entry in checklist(item.profile):
            failed |= not entry.met
            click.echo(f"  {'ok' if entry.met else 'MISSING':9} {entry.item}: {entry.how}")
        if live and item.profile.proxy.kind != "none":
            from tempo_gen.ops.certificates import certificate_findings

            for line in certificate_findings(item.profile):
                failed = True
                click.echo(terminal_safe(f"  {line}"))
        if live:
            from tempo_gen.ops.deploy.ongoing import ongoing_checks
            from tempo_gen.reports.backup_status import backup_checks

            bundle = root / OUT_DIR / item.profile.name
            for check in [*backup_checks(item.profile), *ongoing_checks(item.profile, root, bundle)]:
                failed |= not check.ok
                click.echo(terminal_safe(f"  {check.line()}"))
    if strict and failed:
        sys.exit(1)


def _interactive() -> bool:
    return sys.stdin.isatty()


@main.command()
@click.argument("name", required=False)
@click.option("--domain", help="Public host name, e.g. tempo.example.com.")
@click.option("--proxy", "proxy", type=click.Choice(["nginx", "traefik", "none"]), help="Reverse proxy.")
@click.option("--address", help="Host address the proxy publishes 80/443 on.")
@click.option("--admin-cidr", "admin_cidrs", multiple=True, help="Network allowed to reach SSH (repeatable).")
@click.pass_obj
def init(
    root: Path,
    *,
    name: str | None,
    domain: str | None,
    proxy: str | None,
    address: str | None,
    admin_cidrs: tuple[str, ...],
) -> None:
    """Write profiles/NAME.yaml: a commented starter profile with secure defaults."""
    interactive = _interactive()
    name = name or (click.prompt("Deployment name", default="tempo") if interactive else "tempo")
    if domain is None:
        if not interactive:
            raise UsageError("--domain is required when not run on a terminal")
        domain = click.prompt("Public domain (e.g. tempo.example.com)")
    if proxy is None:
        proxy = (
            click.prompt("Reverse proxy", type=click.Choice(["nginx", "traefik", "none"]), default="nginx")
            if interactive
            else "nginx"
        )
    if address is None and proxy != "none":
        if not interactive:
            raise UsageError("--address is required when not run on a terminal (the host IP the proxy publishes on)")
        address = click.prompt("Host address the proxy publishes 80/443 on (e.g. 203.0.113.10)")
    if not admin_cidrs:
        if not interactive:
            raise UsageError("--admin-cidr is required when not run on a terminal (the network SSH is allowed from)")
        admin_cidrs = (click.prompt("Network allowed to reach SSH (e.g. 198.51.100.0/24)"),)
    path = root / PROFILE_DIR / f"{name}.yaml"
    text = expand(
        "init/profile.yaml.j2",
        {
            "name": name,
            "domain": domain,
            "proxy": proxy,
            "address": json.dumps(address),
            "admin_cidrs": ", ".join(map(json.dumps, admin_cidrs)),
            "version": Tempo().version,
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: any existing path, a dangling symlink included, is never written through
        write_new(path, text.encode())
    except FileExistsError:
        raise UsageError(f"{path} exists; choose another name or edit it") from None
    try:
        load_profile(path, root)
    except ProfileError:
        path.unlink()
        raise
    # The profile's first line points editors at ./schema.json: make sure it is there and current.
    schema = schema_file(root)
    if write_schema_file(schema):
        click.echo(f"wrote {schema} (the profile schema editors validate against)")
    click.echo(f"wrote {path}; next: `tempo-gen secrets init {path}` and `tempo-gen render`")


@main.command()
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--update", is_flag=True, help="Also re-resolve images already pinned by digest.")
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST:PORT",
    help="Speak plain http to this registry (local test or private registries). Repeatable.",
)
@click.pass_obj
def lock(root: Path, profiles: tuple[str, ...], update: bool, insecure: tuple[str, ...]) -> None:
    """Pin every image of PROFILES (default: every profiles/*.yaml) to its registry digest.

    Writes name:tag@sha256:... at tempo.images.<service> and proxy.image of each
    profile file given, also for images it inherits from defaults or an `extends:`
    base. Already pinned images are kept unless --update. Nothing is written unless
    every image resolves (exit 2).
    """
    from tempo_gen.ops.lock import lock as lock_images  # the registry client is only needed here
    from tempo_gen.ops.registry import Registry

    files = [Path(p) for p in profiles] or discover_profiles(root)
    for line in lock_images(files, root, Registry(insecure), update=update):
        click.echo(line)


for group in (secrets, swarm, admin, cert, backup, restore, deploy, upgrade):
    main.add_command(group)
