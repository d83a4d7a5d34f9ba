"""Renders that are killed, run twice at once, or meet a folder that is not theirs, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from support.project import VALID_PROFILE, RunCli, run_tempo_gen, snapshot, tempo_gen_env

# 5. interrupted renders never leave out/<name> missing; the next run recovers

KILLER = """
import os, signal, sys
point, sig = sys.argv[1], getattr(signal, sys.argv[2])
import tempo_gen.bundle.writer as writer

def die():
    os.kill(os.getpid(), sig)
    raise SystemExit("signal was not fatal")

if point == "while-staging":
    real_write = writer.write_new
    def write_new(*args, **kwargs):
        real_write(*args, **kwargs)
        die()
    writer.write_new = write_new
elif point == "after-swap":
    real_exchange = writer._exchange
    def exchange(a, b):
        ok = real_exchange(a, b)
        die()
        return ok
    writer._exchange = exchange
elif point in ("retire-rename", "fallback-retire-rename"):
    if point == "fallback-retire-rename":
        writer._exchange = lambda a, b: False
    real_rename = os.rename
    def rename(a, b, *args, **kwargs):
        real_rename(a, b, *args, **kwargs)
        if str(b).endswith(".old"):
            die()
    os.rename = rename
from tempo_gen.cli import main
main(sys.argv[3:])
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGINT"])
@pytest.mark.parametrize("point", ["while-staging", "retire-rename", "after-swap"])
def test_a_killed_render_never_leaves_the_bundle_missing(demo: Path, point: str, sig: str) -> None:
    assert run_tempo_gen(demo, "render").returncode == 0
    old = snapshot(demo / "out" / "demo")
    (demo / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("tempo.example.com", "other.example.com"))
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, point, sig, "--project", str(demo), "render"],
        env=tempo_gen_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if point != "retire-rename":  # the exchange never retires the old bundle by rename: nothing to kill at
        assert killed.returncode != 0, killed.stdout + killed.stderr
    assert "Traceback" not in killed.stderr
    assert run_tempo_gen(demo, "render", "--out", str(demo / "fresh")).returncode == 0
    new = snapshot(demo / "fresh" / "demo")
    now = snapshot(demo / "out" / "demo")
    assert now in (old, new)  # the whole old bundle or the whole new one, never missing or mixed
    check = run_tempo_gen(demo, "render", "--check")
    left = [p.name for p in (demo / "out").iterdir() if p.name.startswith(".demo.")]
    assert check.returncode == (0 if now == new and not left else 1)
    assert all(f"leftover: {demo / 'out' / name}" in check.stdout for name in left)
    assert "Traceback" not in check.stderr
    again = run_tempo_gen(demo, "render")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (demo / "out").iterdir()) == ["demo"]
    assert run_tempo_gen(demo, "render", "--check").returncode == 0


def test_check_reports_leftovers_and_the_next_render_recovers_a_fallback_kill(demo: Path) -> None:
    """Without renameat2 the swap is two renames: a kill between them is repaired by the next run."""
    assert run_tempo_gen(demo, "render").returncode == 0
    (demo / "profiles" / "demo.yaml").write_text(VALID_PROFILE.replace("tempo.example.com", "other.example.com"))
    subprocess.run(
        [sys.executable, "-c", KILLER, "fallback-retire-rename", "SIGKILL", "--project", str(demo), "render"],
        env=tempo_gen_env(),
        capture_output=True,
        timeout=60,
    )
    check = run_tempo_gen(demo, "render", "--check")
    assert check.returncode == 1
    assert f"leftover: {demo / 'out' / '.demo.old'}" in check.stdout
    assert "Traceback" not in check.stderr
    assert run_tempo_gen(demo, "render").returncode == 0
    assert sorted(p.name for p in (demo / "out").iterdir()) == ["demo"]
    assert run_tempo_gen(demo, "render", "--check").returncode == 0


# 6. two renders at once


# Holds out/'s lock until a line arrives on stdin (or stdin closes).
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def _hold_lock(out: Path) -> subprocess.Popen[str]:
    out.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def test_a_second_render_says_plainly_that_another_holds_the_lock(
    cli: RunCli, demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempo_gen.bundle.outlock.LOCK_TIMEOUT", 0.5)
    holder = _hold_lock(demo / "out")
    try:
        result = cli("render")
        assert result.exit_code == 2
        assert "another tempo-gen render holds the lock" in result.output
        assert not (demo / "out" / "demo").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_second_render_waits_for_the_first(cli: RunCli, demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder lets go only once the render says it is waiting: no sleep decides the order."""
    holder = _hold_lock(demo / "out")
    assert holder.stdin is not None
    echo = click.echo

    def echo_then_release(message: object = None, *args: Any, **kwargs: Any) -> None:
        echo(message, *args, **kwargs)
        if "waiting for another tempo-gen render" in str(message):
            assert holder.stdin is not None
            holder.stdin.write("release\n")
            holder.stdin.flush()

    monkeypatch.setattr(click, "echo", echo_then_release)
    try:
        result = cli("render")
        assert result.exit_code == 0, result.output
        assert "waiting for another tempo-gen render" in result.output
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
        holder.wait()


def test_two_concurrent_renders_both_finish_with_a_clean_bundle(demo: Path) -> None:
    env = tempo_gen_env()
    command = [sys.executable, "-m", "tempo_gen", "--project", str(demo), "render"]
    both = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait(timeout=60) for p in both] == [0, 0]
    assert sorted(p.name for p in (demo / "out").iterdir()) == ["demo"]
    assert run_tempo_gen(demo, "render", "--check").returncode == 0


# 7. a folder that is not one of our bundles is never replaced


def test_a_foreign_folder_at_the_bundle_path_is_never_replaced(cli: RunCli, demo: Path) -> None:
    notes = demo / "out" / "demo" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine\n")
    result = cli("render")
    assert result.exit_code == 2
    assert "is not a tempo-gen bundle" in result.output and "refusing to replace it" in result.output
    assert notes.read_text() == "mine\n"
    (notes.parent / "MANIFEST.json").write_text(json.dumps({"generator": {"name": "other"}, "files": {}}))
    assert cli("render").exit_code == 2 and notes.read_text() == "mine\n"


def test_render_out_dot_never_deletes_a_folder_named_like_the_deployment(cli: RunCli, project: Path) -> None:
    (project / "profiles" / "secrets.yaml").write_text(VALID_PROFILE.replace("name: demo", "name: secrets"))
    (project / "secrets" / "other").mkdir(parents=True)
    (project / "secrets" / "other" / "jwt_key").write_text("k" * 40)
    result = cli("render", "--out", str(project))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (project / "secrets" / "other" / "jwt_key").read_text() == "k" * 40


def test_an_empty_folder_at_the_bundle_path_is_replaced(cli: RunCli, demo: Path) -> None:
    (demo / "out" / "demo").mkdir(parents=True)
    assert cli("render").exit_code == 0
    assert (demo / "out" / "demo" / "MANIFEST.json").is_file()
