"""The Tempo application itself: release, images and the API's configuration."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from tempo_gen.models.base import ImageRef, Origin, SafeText, StrictModel

UPSTREAM_REGISTRY = "ghcr.io/trevordavies095/tempo"
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(f"{value!r} is not a Tempo release: expected MAJOR.MINOR.PATCH, e.g. 2.1.0")
    return value


Version = Annotated[str, AfterValidator(_version)]


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


class Tempo(StrictModel):
    """The Tempo release and the API's configuration."""

    version: Version = Field("2.1.0", description="Tempo release (MAJOR.MINOR.PATCH); the default images follow it.")
    images: Images = Images()
    allow_unpinned: bool = Field(
        False,
        description=("Accept images without a sha256 digest (audit reports it). Production refuses them otherwise."),
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
            "Let the API reach the internet (its weather lookups need it). The database network stays "
            "internal either way."
        ),
    )

    def image(self, service: str) -> str:
        """The upstream image reference for 'api', 'frontend' or 'postgres'."""
        explicit = getattr(self.images, service)
        return explicit or f"{UPSTREAM_REGISTRY}/{service}:v{self.version}"
