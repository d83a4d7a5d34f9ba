"""What each supported Tempo release needs from a deployment: one capability table.

Data first, like policy/tls.py: every difference between releases that a
target, a model rule or an operation depends on is a field of `Release`, and
they read it here instead of comparing version strings. Releases with no
deployment-relevant change share a row. Sources: shared/reference/
tempo-releases.md (release groups, settings, health, cookie, host commands,
where the API writes); no release's images were confirmed against the
registry, so production profiles pin them with `tempo-gen lock`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

BrowserImports = Literal["import-port", "chunked-jobs"]
"""How the release's browser uploads a bulk import: cross-origin to the API's own port 5001
(`<host>:5001/workouts/import/{bulk,export}`, whole multipart bodies), or through /api in
512 KiB chunks to import jobs."""
Setting = Literal["remember-me", "cookie-domain", "carto-key", "logging-profile", "image-version"]
"""Optional API settings a profile can set, each read only by the releases that list it."""
HostCommand = Literal["reset-password"]

SETTING_VARIABLES: dict[Setting, str] = {
    "remember-me": "JWT__RememberMeExpirationDays",
    "cookie-domain": "Cookie__Domain",
    "carto-key": "CartoBasemaps__ApiKey",
    "logging-profile": "Tempo__Logging__Profile",
}
"""The API's environment variable behind each setting a profile gives a value."""
IMAGE_VARIABLES = {"api": "TEMPO_API_IMAGE", "frontend": "TEMPO_FRONTEND_IMAGE"}
"""Where releases with the `image-version` setting read the image references /version shows."""

IMPORT_CHUNK_BYTES = 524_288
"""One chunk PUT of a chunked import job (the last may be shorter)."""
IMPORT_STAGING = "imports"
"""Chunked import jobs stage under `<media root>/imports/<job id>/` until they complete, fail or are cancelled."""
IMPORT_IDLE_MINUTES = 15
"""A `receiving` job idle this long is abandoned (replaced when the next job starts)."""


@dataclass(frozen=True)
class Release:
    """One group of Tempo releases that a deployment treats alike."""

    versions: tuple[str, ...]
    api_base: str
    """The upstream API image's base: what its shell tools are (Debian 12, or Ubuntu 24.04 from .NET 10)."""
    browser_imports: BrowserImports
    settings: frozenset[Setting] = frozenset()
    api_tools: frozenset[str] = frozenset({"sh", "curl", "find"})
    """Tools the upstream API image has (curl comes with its own health check)."""
    api_ready: bool = False
    """`GET /ready`: 200 only when Postgres answers (else only `/health`, which never touches it)."""
    frontend_health: bool = False
    """The frontend's own `GET /health` (before it, only its pages)."""
    cookie_secure_in_production: bool = False
    """authToken is `Secure` whenever ASPNETCORE_ENVIRONMENT is Production (before: only when the
    request is https, i.e. when the proxy's X-Forwarded-Proto is trusted)."""
    password_length: tuple[int, int | None] = (6, None)
    """Shortest and longest account password the API accepts (None: no upper bound)."""
    session_version: bool = False
    """Each request reloads the user, so a password reset ends every existing session."""
    host_commands: frozenset[HostCommand] = frozenset()
    healthkit: bool = False
    """`POST /workouts/import/healthkit` (iOS client JSON)."""
    jwt_key_encrypts_integrations: bool = False
    """The JWT key also derives the key that encrypts the stored intervals.icu API key."""
    notes: tuple[str, ...] = ()
    """What changed in this group, in words: the table's own changelog (the README's table follows it)."""

    @property
    def first(self) -> str:
        return self.versions[0]

    @property
    def import_port(self) -> bool:
        """The browser sends bulk imports cross-origin to `https://<host>:IMPORT_PORT` (policy/ports.py): every
        proxy then serves a TLS listener there with only the two import routes (policy/routes.py)."""
        return self.browser_imports == "import-port"


_R2_1 = Release(
    versions=("2.1.0", "2.1.1"),
    api_base="aspnet:9.0 (Debian 12)",
    browser_imports="import-port",
    notes=("bulk imports go cross-origin to port 5001: the proxy serves them there (TLS, the two import routes only)",),
)
_R2_2 = replace(
    _R2_1,
    versions=("2.2.0", "2.3.0", "2.3.1", "2.3.2"),
    settings=frozenset({"remember-me"}),
    notes=("JWT__RememberMeExpirationDays",),
)
_R2_4 = replace(
    _R2_2,
    versions=("2.4.0",),
    api_base="aspnet:10.0 (Ubuntu 24.04)",
    settings=_R2_2.settings | {"cookie-domain"},
    # Seen in the API-key revision with the pre-2.5 password rule; the exact release is not known.
    cookie_secure_in_production=True,
    notes=("API keys", "authToken always Secure in Production", "Cookie__Domain"),
)
_R2_5 = replace(
    _R2_4,
    versions=("2.5.0", "2.6.0"),
    password_length=(16, 64),
    session_version=True,
    notes=("passwords of 16 to 64 characters; a password change ends every session",),
)
_R2_7 = replace(
    _R2_5,
    versions=("2.7.0",),
    browser_imports="chunked-jobs",
    notes=("chunked import jobs through /api, staged under the media root",),
)
_R2_8 = replace(
    _R2_7,
    versions=("2.8.0", "2.8.1", "2.9.0"),
    settings=_R2_7.settings | {"carto-key"},
    healthkit=True,
    notes=("CartoBasemaps__ApiKey", "HealthKit import route", "backfill workers"),
)
_R2_10 = replace(
    _R2_8,
    versions=("2.10.0", "2.10.1"),
    settings=_R2_8.settings | {"logging-profile", "image-version"},
    api_ready=True,
    frontend_health=True,
    host_commands=frozenset({"reset-password"}),
    jwt_key_encrypts_integrations=True,
    notes=(
        "/ready and the frontend's /health",
        "Tempo__Logging__Profile",
        "host command reset-password",
        "intervals.icu (its stored key is encrypted with a key derived from the JWT key)",
        "/version shows the image references",
    ),
)

RELEASES: tuple[Release, ...] = (_R2_1, _R2_2, _R2_4, _R2_5, _R2_7, _R2_8, _R2_10)
SUPPORTED: tuple[str, ...] = tuple(v for row in RELEASES for v in row.versions)
"""Every release a bundle serves, oldest first."""
NEWEST = SUPPORTED[-1]
FIRST_CHUNKED = next(row.first for row in RELEASES if not row.import_port)
"""The first release whose browser uploads bulk imports through /api (no import port)."""


def release(version: str) -> Release:
    """The row of a supported release; KeyError for one the table does not know."""
    for row in RELEASES:
        if version in row.versions:
            return row
    raise KeyError(version)


def unsupported_reason(version: str) -> str | None:
    """Why `version` cannot be deployed (tempo-gen does not know it), naming what can; None when supported."""
    if version in SUPPORTED:
        return None
    return f"Tempo {version} is not a release tempo-gen knows; supported: {', '.join(SUPPORTED)}"


def first_with(feature: Setting | HostCommand) -> str:
    """The oldest supported release that reads a setting or has a host command."""
    return next(row.first for row in RELEASES if feature in row.settings or feature in row.host_commands)
