"""The proxy's access log as every target sees it: where it is written and what fail2ban matches in it.

One JSON object per request. nginx writes the keys of NGINX_FIELDS in that
order; Traefik's JSON formatter writes its own field names, sorted. The
fail2ban filters (targets/host/monitoring.py) are built from the same names, so a
proxy and its filter cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.models.profile import Profile

CONTAINER_LOG_DIR = "/var/log/tempo-gen"
"""Where a proxy container sees the host's log folder (a bind mount)."""
LOG_FILE = "access.json"
LOGIN_PATH = "/api/auth/login"
"""Tempo's login endpoint: a 401 from it is a failed password."""
SCANNER_PATHS = (
    r"(?:[^\"]*\.(?:php[0-9]?|aspx?|jsp|cgi|env|ini|sql|bak)(?=[/\"])"
    r"|/\.(?:env|git|svn|aws|ssh)"
    r"|/(?:wp-|wordpress|phpmyadmin|cgi-bin|boaform|actuator|vendor/phpunit|HNAP1))"
)
"""Paths Tempo never serves (no PHP, ASP, CGI, dot files or WordPress): asking for them is scanning.
A regular expression (Python's, as fail2ban reads it) on the normalised path, anchored at its start."""


@dataclass(frozen=True)
class Fields:
    """The JSON key of each logged value, per proxy."""

    time: str
    client: str
    method: str
    path: str
    status: str


NGINX_FIELDS = Fields(time="time", client="client", method="method", path="path", status="status")
TRAEFIK_FIELDS = Fields(
    time="StartUTC", client="ClientHost", method="RequestMethod", path="RequestPath", status="DownstreamStatus"
)


def host_log_dir(profile: Profile) -> str:
    return profile.monitoring.log_dir(profile.name)


def proxy_log_path(profile: Profile) -> str | None:
    """The access log as the proxy opens it (inside its container, or on the host); None: monitoring is off."""
    if not profile.monitoring.enabled or profile.proxy.kind == "none":
        return None
    folder = CONTAINER_LOG_DIR if profile.proxy.placement == "container" else host_log_dir(profile)
    return f"{folder}/{LOG_FILE}"
