"""Fixtures of the end-to-end harness: the locally built stand-in images and a
per-test sandbox network (the engine fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from support.engine import PrerequisiteMissing, unavailable
from support.sandbox import Sandbox

from .images.build import build_standins


@pytest.fixture(scope="session")
def standin_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """role -> image reference (tempo-e2e/<role>:<fixed tag>), built once."""
    try:
        return build_standins(docker_client)
    except PrerequisiteMissing as exc:
        unavailable(str(exc))


@pytest.fixture
def sandbox(
    docker_client: docker.DockerClient, standin_images: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[Sandbox]:
    """A private network for one test; its containers and volumes go with it."""
    prefix = "tempo-e2e-" + request.node.name.split("[")[0][-20:].strip("_").replace("_", "-")
    box = Sandbox(docker_client, prefix=prefix.lower())
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="session")
def network_namespaces() -> None:
    """Root and iproute2, for the namespace that stands in for the outside world."""
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("ip") is None:
        unavailable("the e2e network tests need root and iproute2 (`ip netns`)")
