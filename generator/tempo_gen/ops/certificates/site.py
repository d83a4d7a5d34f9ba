"""The nginx site a certificate is for: where its pair, webroot, certbot folders and proxy are."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tempo_gen.errors import UsageError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.certificates.status import (
    local_address,
)
from tempo_gen.targets import nginx

CERTBOT_TIMEOUT = 600
BOOTSTRAP_DAYS = 7
RELOAD_TIMEOUT = 30
"""Seconds nginx may take after a reload to serve the new pair on new connections."""
HOOK = "proxy/certbot-deploy-hook.sh"

Log = Callable[[str], None]


# --- the site ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NginxSite:
    """Everything `cert issue` touches for one profile: the nginx runtime, the bundle's hook, certbot's folders."""

    profile: Profile
    runtime: nginx.Runtime
    bundle: Path
    certbot_dir: Path | None = None
    """certbot's config, work and logs folders under one folder (tests); None: certbot's own (/etc/letsencrypt)."""
    address: str = ""
    """Where the site is reached from here; empty: local_address(profile)."""
    compose: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = field(default=None, compare=False)
    """Runs `docker compose ARGS` (container placement); None: the installed Compose."""
    start: tuple[str, ...] = ()
    """Starts a host nginx that is not running; empty: `systemctl start nginx` under systemd, else nginx itself."""

    @property
    def domain(self) -> str:
        return self.profile.domain

    @property
    def certificate(self) -> tuple[Path, Path]:
        cert, key = self.profile.proxy.tls.certificate.paths(self.domain)
        return Path(self.runtime.path(cert)), Path(self.runtime.path(key))

    @property
    def webroot(self) -> Path:
        return Path(self.runtime.path(self.profile.proxy.tls.certificate.acme_webroot))

    @property
    def hook(self) -> Path:
        return self.bundle / HOOK

    @property
    def nginx_conf(self) -> str:
        return self.runtime.path(nginx.HOST_CONF)

    @property
    def reach(self) -> str:
        return self.address or local_address(self.profile)

    def certbot_dirs(self) -> list[str]:
        if self.certbot_dir is None:
            return []
        return [
            f"--config-dir={self.certbot_dir / 'config'}",
            f"--work-dir={self.certbot_dir / 'work'}",
            f"--logs-dir={self.certbot_dir / 'logs'}",
        ]

    def lineage(self) -> Path:
        config = self.certbot_dir / "config" if self.certbot_dir else Path("/etc/letsencrypt")
        return config / "live" / self.domain


def nginx_site(profile: Profile, bundle: Path) -> NginxSite:
    """The profile's site as rendered into `bundle`; refuses profiles `cert issue` cannot act on."""
    proxy = profile.proxy
    if proxy.kind == "traefik":
        raise UsageError(
            "Traefik gets and renews its certificate itself (its ACME resolver) once it runs; "
            "`tempo-gen cert status` shows it"
        )
    if proxy.kind != "nginx":
        raise UsageError("proxy.kind is none: TLS terminates elsewhere, so tempo-gen has no certificate to issue")
    if proxy.tls.certificate.source != "acme":
        raise UsageError(
            f"proxy.tls.certificate.source is {proxy.tls.certificate.source}: `cert issue` is for source: acme"
        )
    if proxy.placement == "container" and profile.deploy.mode == "swarm":
        raise UsageError("`cert issue` runs the Compose proxy; in swarm mode run certbot by hand (proxy/README.md)")
    if not (bundle / HOOK).is_file():
        raise UsageError(f"{bundle / HOOK} is missing: run `tempo-gen render` first")
    return NginxSite(profile, nginx.runtime_for(profile), bundle)
