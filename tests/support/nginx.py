"""Shared by the nginx tests: build profiles, render the nginx tree into a throwaway root, run Debian's nginx.

Configs are rendered through the target with a Runtime whose `root` prefixes
every absolute path (and, for live tests, loopback upstreams): the same
templates as `tempo-gen render`, never an edited copy of its output.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme

from support.proxy import CUSTOM_HEADERS_AND_LIMITS, dev_profile, target_input_for, write_pair
from tempo_gen.models.base import version_tuple
from tempo_gen.models.profile import Profile
from tempo_gen.profile.loader import deep_merge
from tempo_gen.targets import nginx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONF = "etc/nginx"
"""Where, under the root, the rendered proxy/nginx/ tree is written."""

needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(), reason="Debian's nginx is not installed")


def local_versions() -> tuple[str, str]:
    """(nginx, OpenSSL major.minor) of the nginx binary here, e.g. ("1.22.1", "3.0")."""
    out = subprocess.run([NGINX, "-V"], capture_output=True, text=True, check=True, timeout=120).stderr
    nginx_version = re.search(r"nginx/([0-9.]+)", out)
    openssl = re.search(r"OpenSSL ([0-9]+\.[0-9]+)", out)
    assert nginx_version and openssl, f"nginx -V names no nginx or OpenSSL version: {out}"
    return nginx_version[1], openssl[1]


def make_profile(**overlay: Any) -> Profile:
    """A development nginx profile (no pins or firewall needed) with `overlay` deep-merged in."""
    return dev_profile("nginx", **overlay)


def render_files(profile: Profile, runtime: nginx.Runtime | None = None) -> dict[str, str]:
    """path -> text of the nginx target's files."""
    return {str(f.path): f.content for f in nginx.files_for(target_input_for(profile), runtime)}


def runtime(profile: Profile, root: Path, **overrides: Any) -> nginx.Runtime:
    return dataclasses.replace(nginx.runtime_for(profile), root=str(root), **overrides)


def write_tree(profile: Profile, root: Path, proxy_runtime: nginx.Runtime) -> Path:
    """Write the nginx tree under `root` with the folders it expects (logs, pid, temp, webroot,
    certificate); return nginx.conf's path."""
    certificate = profile.proxy.tls.certificate
    files = [
        Path(proxy_runtime.path(p))
        for p in (
            proxy_runtime.pid,
            proxy_runtime.error_log,
            proxy_runtime.access_log,
            *certificate.paths(profile.domain),
        )
    ]
    folders = [Path(proxy_runtime.path(proxy_runtime.temp_dir)), Path(proxy_runtime.path(certificate.acme_webroot))]
    for folder in folders + [f.parent for f in files if str(f).startswith(str(root))]:
        folder.mkdir(parents=True, exist_ok=True)
    for rel, text in render_files(profile, proxy_runtime).items():
        if rel.startswith(nginx.CONF_DIR + "/"):
            target = root / CONF / rel.removeprefix(nginx.CONF_DIR + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return root / CONF / "nginx.conf"


def prepare_root(
    profile: Profile, root: Path, ca: trustme.CA, key_type: trustme.KeyType = trustme.KeyType.ECDSA, **overrides: Any
) -> Path:
    """write_tree, plus a certificate pair from `ca` where the profile says."""
    proxy_runtime = runtime(profile, root, **overrides)
    conf = write_tree(profile, root, proxy_runtime)
    cert_file, key_file = (Path(proxy_runtime.path(p)) for p in profile.proxy.tls.certificate.paths(profile.domain))
    write_pair(ca, cert_file, key_file, key_type)
    return conf


def nginx_t(root: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NGINX, "-t", "-p", f"{root}/", "-c", str(conf)], capture_output=True, text=True, timeout=30)


def for_local_nginx(profile: Profile) -> Profile:
    """The profile as written, or, if it targets a newer nginx/OpenSSL than the one here,
    the same profile for the local versions (syntax newer than the binary cannot be tested by it)."""
    nginx_version, openssl = local_versions()
    update = {}
    if version_tuple(profile.proxy.nginx_version) > version_tuple(nginx_version):
        update["nginx_version"] = nginx_version
    if version_tuple(profile.proxy.openssl_version) > version_tuple(openssl):
        update["openssl_version"] = openssl
    if not update:
        return profile
    data = profile.model_dump(mode="json")
    data["proxy"].update(update)
    return Profile.model_validate(data)


# Profile overlays that cover every branch of the nginx templates.
VARIANTS: dict[str, dict[str, Any]] = {
    "host-intermediate-acme": {},
    "host-modern-files": {
        "proxy": {
            "tls": {
                "profile": "modern",
                "certificate": {"source": "files", "cert_file": "/srv/tls/chain.pem", "key_file": "/srv/tls/key.pem"},
            }
        }
    },
    "host-self-signed-ocsp-preload": {
        "proxy": {
            "tls": {
                "certificate": {"source": "self-signed"},
                "ocsp_stapling": True,
                "ocsp_resolvers": ["127.0.0.1", "::1"],
            },
            "hsts": {"preload": True},
            "publish_addresses": ["127.0.0.1", "::1"],
        }
    },
    "container-custom-headers-limits": deep_merge(
        CUSTOM_HEADERS_AND_LIMITS, {"proxy": {"placement": "container", "publish_addresses": ["127.0.0.1"]}}
    ),
}
