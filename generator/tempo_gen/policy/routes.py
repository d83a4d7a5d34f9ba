"""Tempo's public routes as every proxy target sees them: which paths are API calls with their own limits.

Data first, like tls_policy: the nginx and Traefik targets format the same
patterns and limits, so the two proxies cannot disagree about which requests
are logins, imports or uploads. The API's own routes have no /api prefix: a
proxy strips it before passing the request on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tempo_gen.models.profile import Profile

API_PREFIX = "/api"
MIB = 1024 * 1024

BodyLimit = Literal["default", "media", "import"]
RateLimit = Literal["login", "api"]


@dataclass(frozen=True)
class Route:
    """API paths that need more than the general /api/ treatment."""

    name: str
    pattern: str
    """Anchored regular expression on the path the browser sends (RE2 and PCRE agree on it)."""
    body: BodyLimit
    rate: RateLimit
    """The per-IP limit: login and register have their own, every other API call shares the API's."""


# Most specific first; everything else under /api/ is a plain API call, the rest is the frontend's.
LOGIN = Route("login", r"^/api/auth/(?:login|register)$", "default", "login")
"""Login and register: the strict per-IP limit against password guessing."""
IMPORT = Route("import", r"^/api/workouts/import/(?:bulk|export)$", "import", "api")
"""Bulk imports (Strava export, Tempo export): the largest bodies and the longest requests."""
MEDIA = Route("media", r"^/api/workouts/(?:import|[0-9a-fA-F-]{36}/media)$", "media", "api")
"""Media uploads and single-file imports."""
API_ROUTES = (LOGIN, IMPORT, MEDIA)


def body_max_bytes(profile: Profile, body: BodyLimit) -> int:
    """Largest request body a route accepts; the proxy answers 413 above it."""
    if body == "import":
        return profile.tempo.import_max_mb * MIB
    if body == "media":
        return profile.tempo.media_max_mb * MIB
    return profile.proxy.body_max_kb * 1024
