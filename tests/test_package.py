"""A plain (non-editable) `pip install .` ships the templates and renders what the repository commits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.project import REPO, snapshot


def test_wheel_install_renders_the_examples_identically(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    source = tmp_path / "src"
    shutil.copytree(
        REPO, source, ignore=shutil.ignore_patterns(".git", "out", "*.egg-info", "build", "__pycache__", "secrets")
    )
    subprocess.run([*pip, str(source)], check=True, capture_output=True, timeout=600)
    shutil.rmtree(source)  # the installed copy must not need the source tree

    project = tmp_path / "project"
    shutil.copytree(REPO / "profiles", project / "profiles")
    result = subprocess.run(
        [str(venv / "bin" / "tempo-gen"), "render"], cwd=project, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    rendered, committed = snapshot(project / "out"), snapshot(REPO / "out")
    assert set(rendered) == set(committed)
    for name, data in rendered.items():
        if not name.endswith("MANIFEST.json"):  # the manifest carries the installed version
            assert data == committed[name], name
