"""tempo/: the Tempo images rebuilt from the pinned release, non-root, with the secrets entrypoint,
and the pinned PostgreSQL image with its data folder owned by the configured uid."""

from __future__ import annotations

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.errors import RenderError
from tempo_gen.policy.ports import API_PORT, API_TEMP, MEDIA_ROOT
from tempo_gen.policy.releases import Release
from tempo_gen.targets.base import TargetInput

# Tempo documents a 32-character minimum for the JWT key; the database password gets the same floor.
MIN_SECRET_LENGTH = 32


def api_health_path(release: Release) -> str:
    """What the API's health check asks: readiness where the release has it, else liveness."""
    return "/ready" if release.api_ready else "/health"


def files_for(target_input: TargetInput) -> list[RenderedFile]:
    users = target_input.profile.containers.users
    release = target_input.profile.tempo.release
    if "curl" not in release.api_tools:
        raise RenderError(
            f"the API image of Tempo {target_input.profile.tempo.version} has no curl for its health check"
        )
    return [
        target_input.file(
            "tempo/api.Dockerfile",
            "tempo/api.Dockerfile.j2",
            {"uid": users.api, "media_root": MEDIA_ROOT, "api_temp": API_TEMP},
        ),
        target_input.file("tempo/frontend.Dockerfile", "tempo/frontend.Dockerfile.j2", {"uid": users.frontend}),
        target_input.file("tempo/postgres.Dockerfile", "tempo/postgres.Dockerfile.j2", {"uid": users.postgres}),
        target_input.file(
            "tempo/api-entrypoint.sh",
            "tempo/api-entrypoint.sh.j2",
            {"min_secret_length": MIN_SECRET_LENGTH},
            mode=0o755,
        ),
        target_input.file(
            "tempo/api-healthcheck.sh",
            "tempo/api-healthcheck.sh.j2",
            {"api_port": API_PORT, "release": release, "path": api_health_path(release)},
            mode=0o755,
        ),
    ]
