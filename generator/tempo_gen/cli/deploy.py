"""`tempo-gen deploy` and `tempo-gen upgrade`: apply the committed bundle to the running deployment, rolling back."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import click

from tempo_gen.cli.common import OUT_OPTION, load_one
from tempo_gen.errors import terminal_safe
from tempo_gen.project import OUT_DIR


def _progress(started: float) -> Callable[[str], None]:
    def say(line: str) -> None:
        click.echo(terminal_safe(f"[{time.monotonic() - started:5.0f}s] {line}"))

    return say


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, `docker stop` of a runner) interrupts like Ctrl-C: the rollback still runs."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _ignore_state(root: Path, out_root: Path) -> None:
    """The deploy state folder beside out/ stays out of git when it lies in the project."""
    from tempo_gen.ops.deploy.state import STATE_DIR
    from tempo_gen.project import ensure_ignored

    if out_root.parent.resolve() == root.resolve():
        ensure_ignored(root, [PurePosixPath(STATE_DIR)], "Deploy state (tempo-gen deploy)")


@click.command()
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@OUT_OPTION
@click.pass_obj
def deploy(root: Path, profile: str | None, out: Path | None) -> None:
    """Apply out/<name> to PROFILE's running Compose stack, then smoke-test it through the proxy.

    Refuses when out/ is not what the profile renders, a secret fails its check or an import is in
    progress. Recreates only what changed; any failure puts back the previous images and configuration
    (and the database, when the release changed)."""
    from tempo_gen.bundle.outlock import render_lock
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.deploy.rollout import deploy as run_deploy
    from tempo_gen.ops.deploy.state import deploy_lock

    item = load_one(profile, root, "bundle to deploy")
    out_root = out or root / OUT_DIR
    bundle = out_root / item.profile.name
    say = _progress(time.monotonic())
    _ignore_state(root, out_root)
    with (
        _interruptible(),
        deploy_lock(bundle),
        render_lock(out_root, shared=True),
        audited(root, item.profile, "deploy", {"version": item.profile.tempo.version}, warn=_warn),
    ):
        summary = run_deploy(item, root, bundle, say)
    for line in summary:
        click.echo(f"summary: {line}")


@click.command()
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@click.option("--to", "to", required=True, metavar="VERSION", help="The Tempo release to upgrade to.")
@OUT_OPTION
@click.pass_obj
def upgrade(root: Path, profile: str | None, to: str, out: Path | None) -> None:
    """Write Tempo release VERSION into PROFILE, render and deploy it (with `lock --update` for pinned images).

    The profile and out/ keep the new release only when the deploy succeeded."""
    from tempo_gen.bundle.outlock import render_lock
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.deploy.state import deploy_lock
    from tempo_gen.ops.deploy.upgrade import upgrade as run_upgrade

    item = load_one(profile, root, "deployment to upgrade")
    out_root = out or root / OUT_DIR
    bundle = out_root / item.profile.name
    say = _progress(time.monotonic())
    _ignore_state(root, out_root)
    details = {"from": item.profile.tempo.version, "to": to[:40]}
    with (
        _interruptible(),
        deploy_lock(bundle),
        render_lock(out_root),
        audited(root, item.profile, "upgrade", details, warn=_warn),
    ):
        summary = run_upgrade(item, root, bundle, to, say)
    for line in summary:
        click.echo(f"summary: {line}")
