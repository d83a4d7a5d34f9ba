"""Measured, not assumed: Compose does not apply uid/gid/mode to file secrets on this engine.

This is why `tempo-gen secrets init` gives each secret file the owner and mode
its consumers need. If an engine ever starts honouring them, this test says so.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import docker

from support.engine import compose

COMPOSE = """\
services:
  reader:
    image: tempo-e2e/tools:latest
    command: ["stat", "-c", "%u %g %a", "/run/secrets/probe"]
    secrets:
      - source: probe
        target: probe
        uid: "4242"
        gid: "4242"
        mode: 0444
secrets:
  probe:
    file: ./probe
"""


def test_compose_file_secrets_keep_the_host_owner_and_mode(
    docker_client: docker.DockerClient, standin_images: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "probe").write_text("not a real secret\n")
    os.chown(tmp_path / "probe", 0, 0)
    os.chmod(tmp_path / "probe", 0o600)
    project = f"e2e-delivery-{uuid.uuid4().hex[:8]}"
    try:
        result = compose(tmp_path, "run", "--rm", "reader", project_name=project, timeout=120)
        assert result.stdout.split() == ["0", "0", "600"], "Compose now applies uid/gid/mode to file secrets"
    finally:
        compose(tmp_path, "down", "-v", project_name=project, check=False, timeout=120)
