"""`cert issue` for the nginx proxy container on the real engine, against Debian's pebble on the host.

The bundle's stack comes up through `cert issue` itself (`docker compose up
--build --wait proxy`, on the stand-in images); pebble resolves the test domain
to 127.0.0.1 through pebble-challtestsrv and dials the proxy's published http
port for http-01. From no certificate, the site ends up serving pebble's
certificate (verified against pebble's root); a forced `certbot renew` then
runs the deploy hook, which checks the pair with `nginx -t` in the container and
reloads it with SIGHUP through docker: the serial changes, the key is 0400 and
owned by the proxy's uid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from support.engine import compose
from support.pebble import CERTBOT, Pebble, require_tools, running_pebble
from support.project import run_tempo_gen
from support.proxy import free_ports
from tempo_gen.ops import certificates
from tempo_gen.profile.loader import load_profile

pytestmark = [pytest.mark.e2e, pytest.mark.acme]

DOMAIN = "tempo.test"
PROXY_UID = 101
UP_TIMEOUT = 600


@dataclasses.dataclass
class Project:
    root: Path
    name: str
    http_port: int
    https_port: int
    pebble: Pebble

    @property
    def bundle(self) -> Path:
        return self.root / "out" / self.name

    @property
    def profile_path(self) -> Path:
        return self.root / "profiles" / f"{self.name}.yaml"


def profile_text(
    kind: str, name: str, images: dict[str, str], root: Path, http_port: int, https_port: int, pebble: Pebble
) -> str:
    nginx_only = (
        """\
  nginx_version: "1.22"
  openssl_version: "3.0"
"""
        if kind == "nginx"
        else ""
    )
    pair = (
        f"""\
      cert_file: {root}/tls/fullchain.pem
      key_file: {root}/tls/privkey.pem
      acme_webroot: {root}/acme
"""
        if kind == "nginx"
        else ""
    )
    return f"""\
name: {name}
domain: {DOMAIN}
environment: development
tempo:
  allow_unpinned: true
  images:
    api: {images["api"]}
    frontend: {images["frontend"]}
    postgres: {images["postgres"]}
# The access log stays in the proxy's output: these tests are about certificates, and a bind-mounted
# log folder would need monitoring/install.sh first.
monitoring:
  enabled: false
proxy:
  kind: {kind}
  placement: container
  image: {images[kind]}
{nginx_only}  publish_addresses: [127.0.0.1]
  http_port: {http_port}
  https_port: {https_port}
  tls:
    certificate:
      source: acme
{pair}      acme_email: ops@example.org
      acme_directory: {pebble.directory}
      acme_ca_bundle: {pebble.ca_bundle}
firewall:
  enabled: false
"""


@contextlib.contextmanager
def rendered_project(
    kind: str, images: dict[str, str], root: Path, pebble_listen: str = "127.0.0.1"
) -> Iterator[Project]:
    """A rendered project for proxy `kind` with pebble running; its Compose stack is taken down after."""
    require_tools()
    if os.geteuid() != 0:
        pytest.skip("cert issue runs as root")
    name = f"e2e-cert-{uuid.uuid4().hex[:8]}"
    http_port, https_port = free_ports(2)
    with running_pebble(root / "pebble", http_port, listen=pebble_listen) as pebble:
        (root / "profiles").mkdir()
        (root / "profiles" / f"{name}.yaml").write_text(
            profile_text(kind, name, images, root, http_port, https_port, pebble)
        )
        for command in (("secrets", "init"), ("render",)):
            result = run_tempo_gen(root, *command, timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
        running = Project(root, name, http_port, https_port, pebble)
        try:
            yield running
        finally:
            logs = compose(running.bundle, "-f", "compose.yaml", "logs", "--no-color", project_name=name, check=False)
            (root / "compose.log").write_text(logs.stdout + logs.stderr)
            compose(
                running.bundle,
                "-f",
                "compose.yaml",
                "down",
                "-v",
                "--rmi",
                "local",
                "--remove-orphans",
                project_name=name,
                check=False,
                timeout=300,
            )


@pytest.fixture
def project(docker_client: docker.DockerClient, standin_images: dict[str, str], tmp_path: Path) -> Iterator[Project]:
    with rendered_project("nginx", standin_images, tmp_path) as running:
        yield running


def verified_serial(port: int, root_pem: str) -> int:
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return certificates.describe(der, "test").serial


def test_cert_issue_brings_the_proxy_container_up_with_pebbles_certificate_and_renewal_reloads_it(
    project: Project,
) -> None:
    profile = load_profile(project.profile_path, project.root).profile
    site = dataclasses.replace(certificates.nginx_site(profile, project.bundle), certbot_dir=project.root / "certbot")
    cert_file, key_file = site.certificate
    assert not cert_file.exists()
    log: list[str] = []
    result = certificates.issue(site, log.append)
    assert result.changed, result.message
    assert "the proxy container is up" in log
    root_pem = project.pebble.root_pem()
    first = verified_serial(project.https_port, root_pem)
    assert first == result.certificate.serial
    assert (key_file.stat().st_mode & 0o777, key_file.stat().st_uid) == (0o400, PROXY_UID)

    renewed = subprocess.run(
        [CERTBOT, "renew", "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive"] + site.certbot_dirs(),
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(project.pebble.ca_bundle)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = renewed.stdout + renewed.stderr
    assert renewed.returncode == 0, output
    assert "deploy hook for tempo.test: installed" in output, output
    renewal = certificates.read_certificate(site.lineage() / "fullchain.pem")
    assert renewal is not None and renewal.serial != first
    served = certificates.wait_served(site, renewal.serial)  # SIGHUP: new workers take a moment
    assert served is not None and served.serial == renewal.serial
    assert verified_serial(project.https_port, root_pem) == renewal.serial
    assert (key_file.stat().st_mode & 0o777, key_file.stat().st_uid) == (0o400, PROXY_UID)


def test_traefiks_resolver_in_its_container_gets_pebbles_certificate(
    docker_client: docker.DockerClient, standin_images: dict[str, str], tmp_path: Path
) -> None:
    """Pebble listens on the default bridge's gateway (the host, as containers see it; never outside the
    machine); Traefik's resolver reaches it there, trusting it through LEGO_CA_CERTIFICATES."""
    ipam = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
    with rendered_project("traefik", standin_images, tmp_path, pebble_listen=gateway) as project:
        started = time.monotonic()
        compose(
            project.bundle,
            "-f",
            "compose.yaml",
            "up",
            "-d",
            "--build",
            "--wait",
            "proxy",
            project_name=project.name,
            timeout=UP_TIMEOUT,
        )
        profile = load_profile(project.profile_path, project.root).profile
        served = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            served = certificates.served_certificate("127.0.0.1", project.https_port, DOMAIN)
            if served is not None and "Pebble" in served.issuer:
                break
            time.sleep(1)
        assert served is not None and "Pebble" in served.issuer, served
        seconds = time.monotonic() - started
        assert verified_serial(project.https_port, project.pebble.root_pem()) == served.serial
        proxy = docker_client.containers.list(
            filters={"label": [f"com.docker.compose.project={project.name}", "com.docker.compose.service=proxy"]}
        )[0]
        code, mode = proxy.exec_run(["stat", "-c", "%a %u", "/var/lib/traefik/acme.json"])
        assert isinstance(mode, bytes) and code == 0 and mode.decode().split() == ["600", str(PROXY_UID)], mode
        found = certificates.status(profile)
        assert found.certificate is not None and found.certificate.serial == served.serial
        assert found.renewal.startswith("Traefik's ACME resolver") and found.problems == ()
        print(f"traefik container: pebble's certificate served {seconds:.0f}s after compose up")
