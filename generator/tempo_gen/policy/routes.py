"""Tempo's public routes as every proxy target sees them: which paths go where, with which limits.

Data first, like policy/tls.py: `routes_for` resolves the table for one profile
into RouteViews, and the nginx and Traefik templates only loop over them and
format their fields, so the two proxies cannot disagree about which requests
are logins, imports or uploads, how large their bodies may be or how long
they may take. The API's own routes have no /api prefix: a proxy strips it
before passing the request on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from tempo_gen.models.profile import Profile
from tempo_gen.policy.ports import IMPORT_PORT
from tempo_gen.policy.releases import IMPORT_CHUNK_BYTES, Release

API_PREFIX = "/api"
"""The browser's prefix for API calls; the API's own routes have none."""
KIB = 1024
MIB = 1024 * KIB

BodyLimit = Literal["default", "media", "import", "chunk"]
RateLimit = Literal["login", "api", "chunk"]
Upstream = Literal["api", "frontend"]


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
LOGIN = Route("login", rf"^{API_PREFIX}/auth/(?:login|register)$", "default", "login")
"""Login and register: the strict per-IP limit against password guessing."""
IMPORT = Route("import", rf"^{API_PREFIX}/workouts/import/(?:bulk|export)$", "import", "api")
"""Whole-body bulk imports (Strava export, Tempo export) from API clients: the largest bodies and longest requests."""
CHUNK = Route("chunk", rf"^{API_PREFIX}/workouts/import/jobs/[0-9a-fA-F-]{{36}}/chunks/[0-9]+$", "chunk", "chunk")
"""The browser's bulk import: about a thousand sequential 512 KiB PUTs, with a limit of their own so a
full-speed upload never meets the API's 429s."""
MEDIA = Route("media", rf"^{API_PREFIX}/workouts/(?:import|[0-9a-fA-F-]{{36}}/media)$", "media", "api")
"""Media uploads and single-file imports."""
MEDIA_HEALTHKIT = Route(
    "media", rf"^{API_PREFIX}/workouts/(?:import(?:/healthkit)?|[0-9a-fA-F-]{{36}}/media)$", "media", "api"
)
"""The same, with the iOS client's HealthKit workouts (JSON) from 2.8.0."""
IMPORT_PORT_ROUTE = Route("import-port", r"^/workouts/import/(?:bulk|export)$", "import", "api")
"""The bulk imports of releases whose browser posts them cross-origin to `https://<host>:IMPORT_PORT` with
the API's own paths (no /api prefix): the only route of that listener."""
IMPORT_PORT_METHODS = ("OPTIONS", "POST")
"""The CORS preflight and the multipart upload; the API itself answers both, CORS headers included."""


def api_routes(release: Release) -> tuple[Route, ...]:
    """The API routes with limits of their own, for one release."""
    return (LOGIN, IMPORT, CHUNK, MEDIA_HEALTHKIT if release.healthkit else MEDIA)


@dataclass(frozen=True)
class Size:
    """A body limit in the unit the profile states it in, so every proxy prints the same number."""

    amount: int
    unit: Literal["KiB", "MiB"]

    @property
    def bytes(self) -> int:
        return self.amount * (KIB if self.unit == "KiB" else MIB)

    @property
    def nginx(self) -> str:
        """nginx's size syntax: `1024k`, `500m`."""
        return f"{self.amount}{self.unit[0].lower()}"

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


def body_size(profile: Profile, body: BodyLimit) -> Size:
    """Largest request body a route accepts; the proxy answers 413 above it."""
    if body == "chunk":  # twice a chunk: room for the client's framing, never a whole import
        return Size(2 * IMPORT_CHUNK_BYTES // KIB, "KiB")
    if body == "import":
        return Size(profile.tempo.import_max_mb, "MiB")
    if body == "media":
        return Size(profile.tempo.media_max_mb, "MiB")
    return Size(profile.proxy.body_max_kb, "KiB")


def body_limits(profile: Profile) -> dict[BodyLimit, Size]:
    """Every body limit by name, in BodyLimit's order (Traefik has one middleware each)."""
    return {body: body_size(profile, body) for body in get_args(BodyLimit)}


@dataclass(frozen=True)
class RateLimitView:
    """One per-IP request limit resolved for a profile, in each proxy's spelling."""

    name: RateLimit
    requests: int
    per: Literal["minute", "second"]
    burst: int
    """Requests above the rate served at once (nginx's meaning of burst)."""

    @property
    def nginx_rate(self) -> str:
        """nginx's rate syntax: `10r/m`."""
        return f"{self.requests}r/{self.per[0]}"

    @property
    def traefik_period(self) -> str:
        """Traefik's period for `average`: `1m`."""
        return f"1{self.per[0]}"

    @property
    def traefik_burst(self) -> int:
        """Traefik's burst counts the first request too: 1 + nginx's burst."""
        return self.burst + 1


def rate_limits_for(profile: Profile) -> dict[RateLimit, RateLimitView]:
    """Every per-IP limit by name, in RateLimit's order: logins, every API call, import chunks."""
    limits = profile.proxy.rate_limits
    return {
        "login": RateLimitView("login", limits.login_per_minute, "minute", limits.login_burst),
        "api": RateLimitView("api", limits.api_per_second, "second", limits.api_burst),
        "chunk": RateLimitView("chunk", limits.import_chunks_per_second, "second", import_chunks(profile)),
    }


def import_chunks(profile: Profile) -> int:
    """Chunks in the largest import the profile allows: the chunk limit's burst, so one upload, however
    fast, never exceeds it (the excess over the rate grows by at most one a request)."""
    return -(-body_size(profile, "import").bytes // IMPORT_CHUNK_BYTES)


@dataclass(frozen=True)
class RouteView:
    """One route resolved for a profile: everything a proxy template prints about it."""

    name: str
    summary: str
    """What the requests are, e.g. "Bulk imports"."""
    prefix: str
    """Path prefix the route covers when `regex` is None ("/": every path)."""
    upstream: Upstream
    strip_prefix: str | None
    """Removed from the path before the upstream sees it (the API's routes have no /api)."""
    body: BodyLimit
    body_max: Size
    rate: RateLimitView | None
    """The per-IP limit; None: not limited."""
    priority: int
    """Higher wins (Traefik); nginx's regex locations are listed in this order, most specific first."""
    detail: str = ""
    """Optional words for the config comment, e.g. "Strava export, Tempo export"."""
    examples: tuple[str, ...] = ()
    """Paths the README names for the route."""
    regex: str | None = None
    """Anchored regular expression on the browser's path; None: `prefix` matches."""
    streamed: bool = False
    """The body goes to the upstream as it arrives where the proxy can (nginx); otherwise spooled first."""
    timeout_minutes: int | None = None
    """How long sending and reading may take; None: the proxy's default."""
    methods: tuple[str, ...] = ()
    """The only methods served (anything else: 404); empty: every method."""

    @property
    def description(self) -> str:
        """For the config comments: "Bulk imports (Strava export, Tempo export)"."""
        return f"{self.summary} ({self.detail})" if self.detail else self.summary

    @property
    def readme_label(self) -> str:
        """For the READMEs: the summary and the example paths in backticks."""
        if not self.examples:
            return self.summary
        return f"{self.summary} ({', '.join(f'`{path}`' for path in self.examples)})"

    @property
    def special_body(self) -> bool:
        """True when the body limit differs from the default every other request gets."""
        return self.body != "default"


_ABOUT: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "login": ("Login and register", "", ()),
    "import": (
        "Whole-body bulk imports",
        "Strava export, Tempo export, from API clients",
        (f"{API_PREFIX}/workouts/import/bulk", f"{API_PREFIX}/workouts/import/export"),
    ),
    "chunk": (
        "Bulk import chunks",
        "the browser's Strava or Tempo export, 512 KiB at a time",
        (f"{API_PREFIX}/workouts/import/jobs/<id>/chunks/<n>",),
    ),
    "media": ("Media uploads and single-file imports", "", ()),
}


def routes_for(profile: Profile) -> tuple[RouteView, ...]:
    """Every route for `profile`, highest priority first: the special API routes, every other
    API call, then the frontend."""
    tempo = profile.tempo
    rate_limits = rate_limits_for(profile)
    special = tuple(
        RouteView(
            name=route.name,
            summary=_ABOUT[route.name][0],
            detail=_ABOUT[route.name][1],
            examples=_ABOUT[route.name][2],
            regex=route.pattern,
            prefix=f"{API_PREFIX}/",
            upstream="api",
            strip_prefix=API_PREFIX,
            body=route.body,
            body_max=body_size(profile, route.body),
            streamed=route.body == "import",
            timeout_minutes=tempo.import_timeout_minutes if route.body == "import" else None,
            rate=rate_limits[route.rate],
            priority=30,
        )
        for route in api_routes(profile.tempo.release)
    )
    default = body_size(profile, "default")
    api = RouteView(
        "api", "Every other API call", f"{API_PREFIX}/", "api", API_PREFIX, "default", default, rate_limits["api"], 20
    )
    frontend = RouteView("frontend", "Everything else", "/", "frontend", None, "default", default, None, 10)
    return (*special, api, frontend)


def import_port_route(profile: Profile) -> RouteView | None:
    """The import port's one route, for releases whose browser sends bulk imports there; None otherwise
    (and without a proxy, which is where the listener lives)."""
    if profile.proxy.kind == "none" or not profile.tempo.release.import_port:
        return None
    return RouteView(
        name=IMPORT_PORT_ROUTE.name,
        summary="Bulk imports from the browser",
        detail="Strava export, Tempo export",
        examples=("/workouts/import/bulk", "/workouts/import/export"),
        regex=IMPORT_PORT_ROUTE.pattern,
        prefix="/workouts/import/",
        upstream="api",
        strip_prefix=None,
        body=IMPORT_PORT_ROUTE.body,
        body_max=body_size(profile, IMPORT_PORT_ROUTE.body),
        streamed=True,
        timeout_minutes=profile.tempo.import_timeout_minutes,
        rate=rate_limits_for(profile)[IMPORT_PORT_ROUTE.rate],
        priority=30,
        methods=IMPORT_PORT_METHODS,
    )


def import_origin(profile: Profile) -> str | None:
    """`https://<domain>:IMPORT_PORT`, the origin the browser sends bulk imports to, when the proxy serves it
    (the site's CSP must allow connecting to it); None otherwise."""
    return f"https://{profile.domain}:{IMPORT_PORT}" if import_port_route(profile) else None


def strip_regex(prefix: str) -> str:
    """nginx's rewrite pattern that removes `prefix` (a literal path) and keeps the rest."""
    return f"^{re.escape(prefix)}(/.*)$"
