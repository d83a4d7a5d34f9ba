"""Debian's pebble (a test ACME server) and pebble-challtestsrv (its DNS) on 127.0.0.1 high ports.

challtestsrv answers every A query with 127.0.0.1 (and no AAAA), so pebble's
validation authority resolves the test domain to loopback and dials the port
the test chose for http-01 (pebble's httpPort): nothing leaves the machine.
Pebble serves its ACME directory and management API over https with a trustme
certificate; `ca_bundle` is that CA's PEM, which certbot gets as
REQUESTS_CA_BUNDLE, exactly as a private CA's bundle reaches it in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from support.proxy import free_ports, stop, wait_for_port

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
CERTBOT = shutil.which("certbot") or "/usr/bin/certbot"


def missing_tools() -> list[str]:
    return [tool for tool in (PEBBLE, CHALLTESTSRV, CERTBOT) if not Path(tool).exists()]


def require_tools() -> None:
    """Skip without pebble or certbot; under CI=true, fail: .ci/test-all installs them."""
    missing = missing_tools()
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (Debian: apt-get install pebble certbot)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Pebble:
    directory: str
    management: str
    """host:port of pebble's management API."""
    ca_bundle: Path
    """PEM of the CA that signed pebble's own https certificate."""

    def root_pem(self) -> str:
        """The root that pebble's issued chains end in (its management API, /roots/0)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(f"https://{self.management}/roots/0", context=context, timeout=10) as r:
            text: str = r.read().decode()
        return text


@contextlib.contextmanager
def running_pebble(
    folder: Path, http_port: int, address: str = "127.0.0.1", listen: str = "127.0.0.1"
) -> Iterator[Pebble]:
    """challtestsrv and pebble, validating http-01 on `address`:`http_port` (every name resolves to
    `address`), its directory and management API on `listen`; stopped when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*dict.fromkeys([listen, "127.0.0.1", "localhost"]))
    server.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    acme, management, tls_port, dns, dns_management = free_ports(5)  # free on loopback; `listen` is the host's too
    config = {
        "pebble": {
            "listenAddress": f"{listen}:{acme}",
            "managementListenAddress": f"{listen}:{management}",
            "certificate": str(folder / "cert.pem"),
            "privateKey": str(folder / "key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    challtestsrv: subprocess.Popen[bytes] | None = None
    pebble: subprocess.Popen[bytes] | None = None
    try:
        challtestsrv = subprocess.Popen(
            [
                CHALLTESTSRV,
                "-defaultIPv4",
                address,
                "-defaultIPv6",
                "",
                "-dns01",
                f"127.0.0.1:{dns}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{dns_management}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(challtestsrv, dns_management, "pebble-challtestsrv")
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        log = (folder / "pebble.log").open("wb")
        pebble = subprocess.Popen(
            [PEBBLE, "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for_port(pebble, acme, "pebble", lambda: (folder / "pebble.log").read_text(errors="replace"), listen)
        yield Pebble(f"https://{listen}:{acme}/dir", f"{listen}:{management}", folder / "ca.pem")
    finally:
        stop(pebble)
        stop(challtestsrv)
