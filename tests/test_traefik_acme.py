"""Traefik's own ACME resolver, rendered from the profile, against Debian's pebble on loopback.

The real traefik binary runs the rendered traefik.yml in a temporary root;
its resolver gets caServer from acme_directory and trusts pebble's https
certificate through LEGO_CA_CERTIFICATES (acme_ca_bundle), answers pebble's
http-01 challenge on its web entry point, stores acme.json 0600 and serves the
certificate, which verifies against pebble's root. `cert status` reads it.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme

from support.pebble import require_tools, running_pebble
from support.proxy import DOMAIN, free_ports, stub
from support.traefik import make_profile, needs_traefik, prepare_root, running_traefik, with_ping
from tempo_gen.ops import certificates
from tempo_gen.targets import traefik

pytestmark = [pytest.mark.acme, needs_traefik]


def test_traefik_gets_its_certificate_from_pebble(tmp_path: Path) -> None:
    require_tools()
    http_port, https_port = free_ports(2)
    with running_pebble(tmp_path / "pebble", http_port) as pebble, stub("frontend", []) as frontend:
        profile = make_profile(
            proxy={
                "publish_addresses": ["127.0.0.1"],
                "http_port": http_port,
                "https_port": https_port,
                "tls": {
                    "certificate": {
                        "source": "acme",
                        "acme_email": "ops@example.org",
                        "acme_directory": pebble.directory,
                        "acme_ca_bundle": str(pebble.ca_bundle),
                    }
                },
            }
        )
        proxy_runtime, conf = prepare_root(
            profile, tmp_path / "root", trustme.CA(), **with_ping(frontend=frontend, api=frontend)
        )
        env = {"LEGO_CA_CERTIFICATES": str(profile.proxy.tls.certificate.acme_ca_bundle)}
        started = time.monotonic()
        with running_traefik(conf, proxy_runtime, trustme.CA(), ready_path=None, env=env) as running:
            root_pem = pebble.root_pem()
            served = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                served = certificates.served_certificate("127.0.0.1", https_port, DOMAIN)
                if served is not None and "Pebble" in served.issuer:
                    break
                time.sleep(0.5)
            assert served is not None and "Pebble" in served.issuer, running.log()
            seconds = time.monotonic() - started
            context = ssl.create_default_context(cadata=root_pem)
            with (
                socket.create_connection(("127.0.0.1", https_port), timeout=5) as sock,
                context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
            ):
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
            storage = Path(proxy_runtime.path(traefik.STATE_DIR)) / "acme.json"
            assert storage.stat().st_mode & 0o777 == 0o600
            assert os.path.getsize(storage) > 0
            found = certificates.status(profile)
            assert found.certificate is not None and found.certificate.serial == served.serial
            assert found.renewal.startswith("Traefik's ACME resolver") and found.problems == ()
            print(f"traefik: certificate from pebble served {seconds:.1f}s after start")
