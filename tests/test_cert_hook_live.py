"""The rendered certbot deploy hook, run as certbot runs it (as root, RENEWED_LINEAGE and RENEWED_DOMAINS set),
against a live Debian nginx in a temporary root: it installs only this site's pair, key 0400, refuses symlinks,
and when nginx refuses the new pair the old one stays served."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from support.live import running_proxy
from support.nginx import needs_nginx, runtime
from support.proxy import DOMAIN, LiveProxy, target_input_for, write_pair
from tempo_gen.policy.placement import key_owner
from tempo_gen.targets import nginx

pytestmark = [needs_nginx, pytest.mark.acme]


@pytest.fixture
def proxy() -> Iterator[LiveProxy]:
    if os.geteuid() != 0:  # certbot runs the hook as root; under CI=true, .ci/test-all runs as root
        message = "the deploy hook runs as root (chown)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with running_proxy("nginx") as running:
        yield running


def hook_path(proxy: LiveProxy) -> Path:
    files = nginx.files_for(target_input_for(proxy.profile), runtime(proxy.profile, proxy.root))
    (hook,) = (f for f in files if str(f.path) == "proxy/certbot-deploy-hook.sh")
    path = proxy.root / "certbot-deploy-hook.sh"
    path.write_text(hook.content)
    path.chmod(0o755)
    return path


def pair_paths(proxy: LiveProxy) -> tuple[Path, Path]:
    cert, key = proxy.profile.proxy.tls.certificate.paths(DOMAIN)
    return proxy.root / cert.lstrip("/"), proxy.root / key.lstrip("/")


def lineage(folder: Path, ca: trustme.CA) -> Path:
    write_pair(ca, folder / "fullchain.pem", folder / "privkey.pem")
    return folder


def run_hook(hook: Path, lineage: Path, domains: str = DOMAIN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RENEWED_LINEAGE": str(lineage), "RENEWED_DOMAINS": domains}
    return subprocess.run([str(hook)], env=env, capture_output=True, text=True, timeout=60)


def served(proxy: LiveProxy) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def wait_served(proxy: LiveProxy, serial: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if served(proxy).serial_number == serial:
            return True
        time.sleep(0.1)
    return False


def test_the_hook_installs_the_new_pair_and_nginx_serves_it(proxy: LiveProxy, tmp_path: Path) -> None:
    hook, (cert, key) = hook_path(proxy), pair_paths(proxy)
    new = lineage(tmp_path / "live", trustme.CA())
    done = run_hook(hook, new)
    assert done.returncode == 0, done.stderr
    assert cert.read_bytes() == (new / "fullchain.pem").read_bytes()
    assert key.read_bytes() == (new / "privkey.pem").read_bytes()
    assert (key.stat().st_mode & 0o777, key.stat().st_uid) == (0o400, key_owner(proxy.profile))
    assert cert.stat().st_mode & 0o777 == 0o644
    assert not list(cert.parent.glob("*.previous")) and not list(cert.parent.glob(".tempo-gen.*"))
    wanted = x509.load_pem_x509_certificate((new / "fullchain.pem").read_bytes()).serial_number
    assert wait_served(proxy, wanted)


def test_another_sites_certificate_is_not_installed(proxy: LiveProxy, tmp_path: Path) -> None:
    hook, (cert, _) = hook_path(proxy), pair_paths(proxy)
    before = cert.read_bytes()
    done = run_hook(hook, lineage(tmp_path / "live", trustme.CA()), "other.test www.other.test")
    assert done.returncode == 0 and "not this site's" in done.stdout
    assert cert.read_bytes() == before


def test_a_symlinked_target_is_refused(proxy: LiveProxy, tmp_path: Path) -> None:
    hook, (cert, _) = hook_path(proxy), pair_paths(proxy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cert.rename(elsewhere / "fullchain.pem")
    cert.symlink_to(elsewhere / "fullchain.pem")
    before = (elsewhere / "fullchain.pem").read_bytes()
    done = run_hook(hook, lineage(tmp_path / "live", trustme.CA()))
    assert done.returncode == 1 and "is a symlink" in done.stderr
    assert cert.is_symlink() and (elsewhere / "fullchain.pem").read_bytes() == before


def test_a_pair_nginx_refuses_leaves_the_old_pair_served(proxy: LiveProxy, tmp_path: Path) -> None:
    hook, (cert, key) = hook_path(proxy), pair_paths(proxy)
    before = (cert.read_bytes(), key.read_bytes())
    serial = served(proxy).serial_number
    bad = lineage(tmp_path / "live", trustme.CA())
    write_pair(trustme.CA(), tmp_path / "other" / "fullchain.pem", bad / "privkey.pem")  # a key of another cert
    done = run_hook(hook, bad)
    assert done.returncode == 1 and "previous pair is back" in done.stderr
    assert (cert.read_bytes(), key.read_bytes()) == before
    assert served(proxy).serial_number == serial
