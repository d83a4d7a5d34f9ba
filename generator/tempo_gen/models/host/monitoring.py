"""Monitoring: the proxy's JSON access log on the host, and fail2ban banning abusers at the firewall."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from tempo_gen.models.base import AbsPath, Size, StrictModel

_WEBHOOK = re.compile(r"^https://[a-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%+/-]*)?$")
_COMMAND = re.compile(r"^(/[A-Za-z0-9._@+-]+)+$")


def _alert(value: str) -> str:
    if _WEBHOOK.fullmatch(value):
        return value
    if _COMMAND.fullmatch(value) and "/../" not in f"{value}/" and "/./" not in f"{value}/":
        return value
    raise ValueError(
        f"{value!r} is neither an https webhook URL (https://host[:port]/path, no query string or quotes) "
        "nor an absolute command path (letters, digits and . _ - @ + between slashes)"
    )


Alert = Annotated[str, AfterValidator(_alert)]

# install.sh gives the log folder to the proxy's uid: never a folder the system or other programs own.
_SYSTEM_TREES = ("/etc", "/usr", "/boot", "/dev", "/proc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_SHARED_FOLDERS = {
    "/var",
    "/var/log",
    "/var/lib",
    "/var/cache",
    "/srv",
    "/opt",
    "/home",
    "/root",
    "/tmp",
    "/run",
    "/mnt",
}


def _log_dir(value: str) -> str:
    if (
        value in _SHARED_FOLDERS
        or value.count("/") < 2
        or any(value == t or value.startswith(t + "/") for t in _SYSTEM_TREES)
    ):
        raise ValueError(
            f"{value!r} is a system or shared folder; install.sh gives the log folder to the proxy's uid, "
            "so it needs one of its own, e.g. /var/log/tempo-gen/<name>"
        )
    return value


class AccessLog(StrictModel):
    """Where the proxy's access log lives on the host, and how long it is kept."""

    dir: Annotated[AbsPath, AfterValidator(_log_dir)] | None = Field(
        None,
        description=(
            "Host folder of the proxy's JSON access log (access.json), read by fail2ban; a proxy container "
            "bind-mounts it. Default: /var/log/tempo-gen/<name>. monitoring/install.sh creates it."
        ),
    )
    max_size: Size = Field("100m", description="logrotate rotates access.json once it is larger than this.")
    max_age_days: int = Field(
        default=30, ge=1, le=3650, description="Rotated access logs older than this many days are deleted."
    )


class Bans(StrictModel):
    """fail2ban jails on the access log; a ban drops every packet from the address, on input and forwarded."""

    enabled: bool = Field(True, description="Render the fail2ban jails, filters and the ban action.")
    login_failures: int = Field(
        default=5, ge=1, le=1000, description="Failed logins (401 from /api/auth/login) within find_time that ban."
    )
    rate_limited: int = Field(
        default=30, ge=1, le=100000, description="Requests refused with 429 within find_time that ban."
    )
    scanner_hits: int = Field(
        default=3,
        ge=1,
        le=1000,
        description=(
            "Requests for paths Tempo never serves (.php, .env, .git, wp-admin, ...) within find_time that ban."
        ),
    )
    find_time: int = Field(default=600, ge=1, le=604800, description="Window the counts above are taken in, seconds.")
    ban_time: int = Field(
        default=3600, ge=1, le=31536000, description="How long a ban lasts, seconds (the nftables set entry expires)."
    )


class Monitoring(StrictModel):
    """Structured access logs readable on the host, and bans at the firewall (fail2ban + nftables)."""

    enabled: bool = Field(
        True,
        description=(
            "Write the access log to access_log.dir and render monitoring/ (fail2ban, logrotate). Off: the proxy "
            "logs to stdout (container) or /var/log/nginx (host), still as JSON without query strings."
        ),
    )
    access_log: AccessLog = AccessLog()
    bans: Bans = Bans()
    alert: Alert | None = Field(
        None,
        description=(
            "Where alerts go: an https webhook URL (the message is POSTed as text/plain) or the absolute path of a "
            "command (the message is its one argument). Called by fail2ban on every ban and by tempo-gen when an "
            "operation on the deployment fails. Unset: nothing is sent (audit reports it)."
        ),
    )

    def log_dir(self, name: str) -> str:
        return self.access_log.dir or f"/var/log/tempo-gen/{name}"
