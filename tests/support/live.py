"""The rendered proxy, running on 127.0.0.1 high ports in front of two Python stubs, with a trustme CA.

`running_proxy(kind)` starts Debian's nginx or the real traefik binary on the
profile's config and stops it (and removes its folder) afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trustme

from support import nginx, traefik
from support.proxy import LiveProxy, free_port, free_ports, stop, stub, wait_for_port
from tempo_gen.targets import nginx as nginx_target
from tempo_gen.targets import traefik as traefik_target

KINDS = ("nginx", "traefik")
# The one `Server` header each proxy may send (no version, never the upstream's).
SERVER: dict[str, str | None] = {"nginx": "nginx", "traefik": None}
# TLS certificate settings each live proxy reads: nginx also serves the ACME webroot on port 80.
CERTIFICATE: dict[str, dict[str, str]] = {
    "nginx": {
        "source": "acme",
        "acme_webroot": "/acme",
        "cert_file": "/tls/fullchain.pem",
        "key_file": "/tls/privkey.pem",
    },
    "traefik": {"source": "files", "cert_file": "/tls/fullchain.pem", "key_file": "/tls/privkey.pem"},
}


def _proxy_settings(kind: str, tls_profile: str, overlay: dict[str, Any]) -> dict[str, Any]:
    http_port, https_port = free_ports(2)
    return {
        "placement": "host",
        "publish_addresses": ["127.0.0.1"],
        "http_port": http_port,
        "https_port": https_port,
        "tls": {"profile": tls_profile, "certificate": CERTIFICATE[kind]},
        **overlay,
    }


@contextlib.contextmanager
def running_proxy(
    kind: str,
    tls_profile: str = "intermediate",
    runtime: dict[str, Any] | None = None,
    tempo: dict[str, Any] | None = None,
    **overlay: Any,
) -> Iterator[LiveProxy]:
    """Proxy `kind` with the profile's config (proxy settings `overlay`, tempo settings `tempo`) on 127.0.0.1;
    stopped and cleaned up after. `runtime` replaces Runtime fields of nginx's render (e.g. a resolver, for a
    container's upstreams). A release with an import listener gets it on a free loopback port
    (LiveProxy.import_port)."""
    settings = _proxy_settings(kind, tls_profile, overlay)
    runner = (
        _running_nginx(settings, tempo or {}, runtime or {})
        if kind == "nginx"
        else _running_traefik(settings, tempo or {})
    )
    with runner as running:
        yield running


@contextlib.contextmanager
def _running_nginx(proxy: dict[str, Any], tempo: dict[str, Any], runtime: dict[str, Any]) -> Iterator[LiveProxy]:
    profile = nginx.for_local_nginx(nginx.make_profile(proxy=proxy, tempo=tempo))
    import_port = free_port() if nginx_target.runtime_for(profile).import_listen else None
    if import_port:
        runtime = {"import_listen": (f"127.0.0.1:{import_port}",), **runtime}
    ca = trustme.CA()
    # Not pytest's tmp_path: its parents are private to root, and nginx workers run as www-data.
    root = Path(tempfile.mkdtemp(prefix="tempo-nginx-"))
    root.chmod(0o755)
    process: subprocess.Popen[bytes] | None = None
    try:
        arrivals: list[str] = []
        with stub("frontend", []) as frontend, stub("api", arrivals) as api:
            # An RSA certificate: a refused RSA-key-exchange cipher is then refused by policy, not by key type.
            conf = nginx.prepare_root(profile, root, ca, trustme.KeyType.RSA, frontend=frontend, api=api, **runtime)
            for folder in root.rglob("*"):
                if folder.is_dir():
                    folder.chmod(0o755)
            process = subprocess.Popen(
                [nginx.NGINX, "-p", f"{root}/", "-c", str(conf), "-g", "daemon off;"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            started = process

            def stderr_once_exited() -> str:
                # Read only once nginx has exited (reading a live pipe would block).
                if started.poll() is None or started.stderr is None:
                    return ""
                return started.stderr.read().decode()

            wait_for_port(process, profile.proxy.https_port, "nginx", stderr_once_exited)
            yield LiveProxy(profile, ca, root, arrivals, import_port)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _running_traefik(proxy: dict[str, Any], tempo: dict[str, Any]) -> Iterator[LiveProxy]:
    profile = traefik.make_profile(proxy=proxy, tempo=tempo)
    import_port = free_port() if traefik_target.runtime_for(profile).imports else None
    imports = {"imports": f"127.0.0.1:{import_port}"} if import_port else {}
    ca = trustme.CA()
    root = Path(tempfile.mkdtemp(prefix="tempo-traefik-"))
    try:
        arrivals: list[str] = []
        with stub("frontend", []) as frontend, stub("api", arrivals) as api:
            # An RSA certificate: a refused RSA-key-exchange cipher is then refused by policy, not by key type.
            proxy_runtime, conf = traefik.prepare_root(
                profile, root, ca, trustme.KeyType.RSA, **traefik.with_ping(frontend=frontend, api=api, **imports)
            )
            with traefik.running_traefik(conf, proxy_runtime, ca) as running:
                yield LiveProxy(profile, ca, root, arrivals, import_port)
                # Traefik logs each 413 as an error; nothing else may have gone wrong.
                unexpected = [line for line in running.errors() if "request body over limit" not in line]
                assert unexpected == [], running.log()
    finally:
        shutil.rmtree(root, ignore_errors=True)
