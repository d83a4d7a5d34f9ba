"""The backup commands: take a backup, restore one, and drill the newest (restore into a throwaway stack)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from tempo_gen.cli.common import OUT_OPTION, load_one
from tempo_gen.errors import DeploymentError
from tempo_gen.project import OUT_DIR

IDENTITY_OPTION = click.option(
    "--identity",
    "identity",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="age identity file (private key) of one of backup.recipients; chmod 600, never kept on the host.",
)


class _TakeByDefault(click.Group):
    """`backup PROFILE` takes a backup; `backup drill PROFILE` runs a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["take", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_TakeByDefault)
def backup() -> None:
    """Encrypted backups of the running deployment (age, to backup.recipients).

    \b
    tempo-gen backup PROFILE [--kind scheduled] [--out DIR]   take a backup now
    tempo-gen backup drill PROFILE --identity KEY             restore the newest into a throwaway stack, compare
    tempo-gen restore PROFILE BACKUP --identity KEY           (its own command) restore one
    """


@backup.command("take", hidden=True)
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(["manual", "scheduled"]),
    default="manual",
    show_default=True,
    help="Recorded in the backup's index (the systemd timer passes scheduled).",
)
@OUT_OPTION
@click.pass_obj
def backup_take(root: Path, profile: str | None, kind: str, out: Path | None) -> None:
    """Take a backup of PROFILE's running deployment; one line on success, exit non-zero on failure."""
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.backup.offsite import after_verified_backup
    from tempo_gen.ops.backup.take import locked, open_backup_folder, require_recipients, take_backup
    from tempo_gen.ops.running.tempo_api import running_stack

    item = load_one(profile, root, "deployment to back up")
    require_recipients(item.profile)
    started = time.monotonic()
    with audited(root, item.profile, "backup", {"kind": kind}, warn=_warn), locked(open_backup_folder(item.profile)):
        stack = running_stack(item, (out or root / OUT_DIR) / item.profile.name)
        taken = take_backup(item.profile, stack, "scheduled" if kind == "scheduled" else "manual")
        # Only a verified backup lets retention prune older ones; under the same lock, so no restore runs between.
        after = after_verified_backup(item.profile, taken.name, datetime.now(UTC))
    click.echo(
        f"backup {item.profile.name}: {taken.folder / taken.name} ok ({kind}, {taken.stored_bytes} bytes, "
        f"{time.monotonic() - started:.0f}s); {'; '.join(after)}"
    )


@backup.command("drill")
@click.argument("profile", required=False, type=click.Path(dir_okay=False))
@IDENTITY_OPTION
@OUT_OPTION
@click.pass_obj
def backup_drill(root: Path, profile: str | None, identity: Path, out: Path | None) -> None:
    """Restore PROFILE's newest backup into a throwaway stack (no network, nothing published), compare row
    counts and media checksums with the live deployment, remove it. Exit 1 on any mismatch; a passed drill
    is recorded in drill.json."""
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.backup.crypt import Identity
    from tempo_gen.ops.backup.drill import drill
    from tempo_gen.ops.running.tempo_api import running_stack

    item = load_one(profile, root, "backup to drill")
    key = Identity(identity)
    try:
        with audited(root, item.profile, "backup drill", warn=_warn):
            stack = running_stack(item, (out or root / OUT_DIR) / item.profile.name)
            report = drill(item.profile, stack, key, click.echo)
            for line in report.lines():
                click.echo(line)
            if not report.passed:
                raise DeploymentError(
                    f"the drill of backup {report.backup} found {len(report.mismatches)} mismatch(es)"
                )
    finally:
        key.close()


@click.command("restore")
@click.argument("profile", type=click.Path(dir_okay=False))
@click.argument("name", metavar="BACKUP")
@IDENTITY_OPTION
@click.option("--force", is_flag=True, help="Restore even while a bulk import is in progress (it is interrupted).")
@OUT_OPTION
@click.pass_obj
def restore(root: Path, profile: str, name: str, identity: Path, force: bool, out: Path | None) -> None:
    """Restore backup BACKUP (a folder name in backup.dir, e.g. 20261205T031500Z) onto PROFILE's deployment.

    Verifies every checksum first, refuses a backup of a newer Tempo or a wrong key, takes a safety backup,
    stops the API and frontend, restores database and media, starts them and waits until healthy. On failure
    the safety backup is put back; a killed restore is put back by the next run. Refused while a bulk
    import is in progress, unless --force."""
    from tempo_gen.ops.audit_trail import audited
    from tempo_gen.ops.backup.crypt import Identity
    from tempo_gen.ops.backup.restore import restore as restore_backup
    from tempo_gen.ops.backup.take import require_recipients
    from tempo_gen.ops.running.tempo_api import running_stack

    item = load_one(profile, root, "deployment to restore")
    require_recipients(item.profile)
    key = Identity(identity)
    try:
        with audited(root, item.profile, "restore", {"backup": name}, warn=_warn):
            stack = running_stack(item, (out or root / OUT_DIR) / item.profile.name)
            safety = restore_backup(item.profile, stack, name, key, click.echo, force)
    finally:
        key.close()
    click.echo(f"restore {item.profile.name}: {name} restored and healthy (safety backup before it: {safety})")


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)
