"""The Tempo application itself: release, images and the API's configuration."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from tempo_gen.models.base import Domain, ImageRef, Origin, RuleViolations, SafeText, StrictModel
from tempo_gen.policy.releases import NEWEST, Release, Setting, first_with, release, unsupported_reason

UPSTREAM_REGISTRY = "ghcr.io/trevordavies095/tempo"
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_CARTO_KEY = re.compile(r"[A-Za-z0-9._-]{1,256}")


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(f"{value!r} is not a Tempo release: expected MAJOR.MINOR.PATCH, e.g. {NEWEST}")
    if reason := unsupported_reason(value):
        raise ValueError(reason)
    return value


def _carto_key(value: str) -> str:
    if not _CARTO_KEY.fullmatch(value):
        raise ValueError("a CARTO API key is 1 to 256 letters, digits, dots, dashes and underscores")
    return value


Version = Annotated[str, AfterValidator(_version)]
CartoKey = Annotated[str, AfterValidator(_carto_key)]


class Images(StrictModel):
    """Images pinned as name:tag@sha256:digest (run `tempo-gen lock` to fill digests)."""

    api: ImageRef | None = Field(
        None,
        description=("Upstream API image the hardened API image is built from; default: the release's GHCR image."),
    )
    frontend: ImageRef | None = Field(
        None,
        description=(
            "Upstream frontend image the hardened frontend image is built from; default: the release's GHCR image."
        ),
    )
    postgres: ImageRef = Field(
        "postgres:16-alpine",
        description=(
            "PostgreSQL image; the bundle builds FROM it, giving the data folder to containers.users.postgres."
        ),
    )


class Jwt(StrictModel):
    """Token settings; the signing key itself is a Docker secret, never a profile value."""

    issuer: SafeText = Field("Tempo", description="JWT__Issuer.")
    audience: SafeText = Field("Tempo", description="JWT__Audience.")
    expiration_days: int = Field(
        default=7, ge=1, le=90, description=("Token lifetime (JWT__ExpirationDays), 1 to 90 days.")
    )
    remember_me_days: int | None = Field(
        None,
        ge=1,
        le=365,
        description=("Token lifetime after `Remember me` (JWT__RememberMeExpirationDays). Default: Tempo's, 30 days."),
    )


class Tempo(StrictModel):
    """The Tempo release and the API's configuration."""

    version: Version = Field(
        NEWEST,
        description=(
            "Tempo release (MAJOR.MINOR.PATCH), one of the releases in the README's table; the default "
            "images, routes, health checks and settings follow it. Its images are unconfirmed: pin them "
            "with `tempo-gen lock`."
        ),
    )
    images: Images = Images()
    allow_unpinned: bool = Field(
        False,
        description=("Accept images without a sha256 digest (audit reports it). Production refuses them otherwise."),
    )
    update_within_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description=(
            "Deploy the newest release tempo-gen supports within this many days of the last deploy: `audit "
            "--live` reports an older release deployed longer ago as overdue (`tempo-gen upgrade`)."
        ),
    )
    jwt: Jwt = Jwt()
    cors_origins: list[Origin] = Field(
        [], description=("Origins allowed to call the API with credentials. Default: https://<domain> only.")
    )
    media_max_mb: int = Field(
        default=50, ge=1, le=1024, description=("Largest single media upload (photo or video), in MiB.")
    )
    import_max_mb: int = Field(
        default=500, ge=1, le=4096, description=("Largest bulk import (Strava export ZIP), in MiB.")
    )
    import_timeout_minutes: int = Field(
        default=30, ge=1, le=120, description=("How long a bulk import request may take end to end.")
    )
    outbound_internet: bool = Field(
        True,
        description=(
            "Let the API reach the internet (weather lookups, and intervals.icu from 2.10.0). The database "
            "network stays internal either way."
        ),
    )
    cookie_domain: Domain | None = Field(
        None,
        description=(
            "Domain attribute of the authToken cookie (Cookie__Domain): the site's domain or a "
            "parent of it, to share the session with subdomains. Default: host-only, the safest."
        ),
    )
    carto_api_key: CartoKey | None = Field(
        None,
        description=(
            "CARTO basemaps API key (CartoBasemaps__ApiKey, Tempo 2.8.0+). Configuration, not a secret: the "
            "API hands it to every signed-in browser. Use a key restricted to your domain."
        ),
    )
    logging_profile: Literal["standard", "debug"] | None = Field(
        None,
        description=("API logging (Tempo__Logging__Profile, Tempo 2.10.0+). Default: Tempo's, `standard`."),
    )

    @property
    def release(self) -> Release:
        """This version's row of the capability table."""
        return release(self.version)

    def settings(self) -> dict[Setting, object]:
        """Every optional setting the profile gives a value, by name."""
        values: dict[Setting, object] = {
            "remember-me": self.jwt.remember_me_days,
            "cookie-domain": self.cookie_domain,
            "carto-key": self.carto_api_key,
            "logging-profile": self.logging_profile,
        }
        return {name: value for name, value in values.items() if value is not None}

    @model_validator(mode="after")
    def _release_reads_every_setting(self) -> Tempo:
        """A setting the deployed release ignores would silently do nothing: refuse it, naming the release."""
        unread = [name for name in self.settings() if name not in self.release.settings]
        if unread:
            raise RuleViolations(
                [
                    (_SETTING_FIELDS[name], f"needs Tempo {first_with(name)} or later; tempo.version is {self.version}")
                    for name in unread
                ]
            )
        return self

    def image(self, service: str) -> str:
        """The upstream image reference for 'api', 'frontend' or 'postgres'."""
        explicit = getattr(self.images, service)
        return explicit or f"{UPSTREAM_REGISTRY}/{service}:v{self.version}"


_SETTING_FIELDS: dict[Setting, tuple[str, ...]] = {
    "remember-me": ("jwt", "remember_me_days"),
    "cookie-domain": ("cookie_domain",),
    "carto-key": ("carto_api_key",),
    "logging-profile": ("logging_profile",),
}
"""Where each optional setting lives in the `tempo` section."""
