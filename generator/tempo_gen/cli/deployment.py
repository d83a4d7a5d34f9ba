"""The commands that act on a running deployment: its secrets, its Swarm's nodes, Tempo's host commands, its
certificate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tempo_gen.cli.common import OUT_OPTION, load_all, load_one
from tempo_gen.errors import DeploymentError, terminal_safe
from tempo_gen.project import OUT_DIR


@click.group()
def secrets() -> None:
    """Create, check and rotate the deployment's Docker secrets (values are never printed)."""


@secrets.command("init")
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_obj
def secrets_init(root: Path, profiles: tuple[str, ...]) -> None:
    """Create the missing secrets of PROFILES (files, or Swarm secrets in swarm mode); existing ones are never
    replaced."""
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.secrets import secret_store

    for item in load_all(profiles, root):
        store = secret_store(item, root, root / OUT_DIR / item.profile.name)
        with audited(root, item.profile, "secrets init", warn=_warn):
            for entry in store.init():
                fixed = f" ({entry.fixed})" if entry.fixed else ""
                click.echo(f"{'created' if entry.created else 'kept   '} {entry.where}{fixed}")
        for line in store.init_hints():
            click.echo(line)


@secrets.command("check")
@click.argument("profiles", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_obj
def secrets_check(root: Path, profiles: tuple[str, ...]) -> None:
    """Report missing, weak, wrongly-owned or world-readable secret files (missing or stray Swarm secrets); exit 1
    if any."""
    from tempo_gen.ops.secrets import secret_store

    found = [
        (item, problem)
        for item in load_all(profiles, root)
        for problem in secret_store(item, root, root / OUT_DIR / item.profile.name).check()
    ]
    for item, problem in found:
        click.echo(f"{item.profile.name}: {problem.where}: {problem.problem}")
    if found:
        sys.exit(1)
    click.echo("secrets: ok")


@secrets.command("rotate")
@click.argument("which", type=click.Choice(["jwt", "db"]))
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@OUT_OPTION
@click.option("--force", is_flag=True, help="Rotate even while a bulk import is in progress (it is interrupted).")
@click.pass_obj
def secrets_rotate(root: Path, which: str, profile: str | None, out: Path | None, force: bool) -> None:
    """Rotate the JWT key or the database password of PROFILE's running stack (Compose or Swarm).

    Says first what the deployed release loses; refuses while an import is in progress unless --force."""
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.running.tempo_api import import_in_progress, restart_effects, running_stack
    from tempo_gen.ops.secrets import secret_store

    item = load_one(profile, root, "secret to rotate")
    bundle = (out or root / OUT_DIR) / item.profile.name
    for effect in restart_effects(item.profile.tempo.release, which):
        click.echo(f"note: {effect}")
    with audited(root, item.profile, f"secrets rotate {which}", warn=_warn):
        if import_in_progress(running_stack(item, bundle)):
            if not force:
                raise DeploymentError(
                    "a bulk import is in progress and restarting the API would interrupt it; "
                    "wait until it finishes, or pass --force"
                )
            click.echo("note: --force: the import in progress is interrupted")
        for line in secret_store(item, root, bundle).rotate(which):
            click.echo(line)


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


@click.group()
def swarm() -> None:
    """The Swarm a multi-node deployment runs on (deploy.nodes)."""


@swarm.command("prepare")
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@click.pass_obj
def swarm_prepare(root: Path, profile: str | None) -> None:
    """Label PROFILE's nodes with their roles (postgres, edge), on the Swarm manager DOCKER_HOST names.

    Takes the deployment's labels off nodes deploy.nodes does not list, and checks that every listed node is in
    the Swarm and that its docker_host reaches that node's own engine. Run it before the first deploy and after
    changing deploy.nodes."""
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.running.swarm import prepare, swarm_client

    item = load_one(profile, root, "Swarm to prepare")
    if item.profile.deploy.mode != "swarm":
        raise DeploymentError(f"{item.display_path}: deploy.mode is not swarm")
    with audited(root, item.profile, "swarm prepare", warn=_warn):
        for line in prepare(item.profile, swarm_client()):
            click.echo(terminal_safe(line))


@click.group()
def admin() -> None:
    """Tempo's own host commands, run in the deployment's API container with its secrets."""


@admin.command("reset-password")
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@click.option("--username", help="The account (optional when Tempo has exactly one).")
@OUT_OPTION
@click.pass_obj
def admin_reset_password(root: Path, profile: str | None, username: str | None, out: Path | None) -> None:
    """Set a new password for a Tempo account; every session of it ends.

    The password is read from standard input (asked twice on a terminal), never from arguments."""
    from tempo_gen.ops.running.tempo_api import reset_password, reset_password_command, running_stack

    item = load_one(profile, root, "account to reset")
    if sys.stdin.isatty():
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline(4096).removesuffix("\n")
    release = item.profile.tempo.release
    command = reset_password_command(release, password, username)
    stack = running_stack(item, (out or root / OUT_DIR) / item.profile.name)
    click.echo(reset_password(stack, command, password) or "password reset")
    if release.session_version:
        click.echo("every session of that account has ended: sign in again with the new password")


@click.group()
def cert() -> None:
    """The site's TLS certificate: issue it through ACME (nginx), show what is served."""


@cert.command("issue")
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@OUT_OPTION
@click.pass_obj
def cert_issue(root: Path, profile: str | None, out: Path | None) -> None:
    """Get PROFILE's first ACME certificate, or a new one when it is within the renewal window (run as root).

    nginx, host or container, source acme: a bootstrap pair if none, the proxy up,
    certbot --webroot with the profile's e-mail, directory and CA bundle, and the
    bundle's deploy hook (certbot keeps it for every renewal). Does nothing while the
    installed certificate has more than 30 days left."""
    from tempo_gen.ops.certificates import issue, nginx_site

    item = load_one(profile, root, "certificate to issue")
    site = nginx_site(item.profile, (out or root / OUT_DIR) / item.profile.name)
    if os.geteuid() != 0:
        raise DeploymentError("run `tempo-gen cert issue` as root: certbot and the deploy hook write root-owned files")
    result = issue(site, click.echo)
    click.echo(result.message)


@cert.command("status")
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@click.pass_obj
def cert_status(root: Path, profile: str | None) -> None:
    """Show the certificate PROFILE's site serves: issuer, names, expiry, days left, and what renews it.

    Exit 1 when nothing is served, it expires within 14 days, or nothing renews it."""
    from tempo_gen.ops.certificates import status

    item = load_one(profile, root, "certificate to show")
    found = status(item.profile)
    for line in found.lines():
        click.echo(terminal_safe(line))
    if found.problems or not found.renewal:
        sys.exit(1)
