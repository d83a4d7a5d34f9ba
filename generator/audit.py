"""What a profile weakens, and how its render measures up to the seed guide's pre-deployment checklist.

Secure defaults need no mention; every explicit field that weakens one is a
finding, so a reviewer sees each trade-off the profile makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempo_gen.models.profile import Profile


@dataclass(frozen=True)
class Finding:
    field: str
    message: str


def weakenings(profile: Profile) -> list[Finding]:
    found = []
    unpinned = profile.unpinned_images()
    if unpinned and profile.tempo.allow_unpinned:
        found.append(Finding("tempo.allow_unpinned", f"images not pinned by digest: {', '.join(unpinned)} (run `tempo-gen lock`)"))
    if profile.proxy.kind == "none":
        found.append(Finding("proxy.kind", "no reverse proxy: TLS, redirects, headers and rate limits must be provided elsewhere"))
    for address in profile.proxy.publish_addresses:
        if address.is_unspecified:
            found.append(Finding("proxy.publish_addresses", f"{address} publishes the proxy on every interface of the host"))
    if profile.environment == "development":
        found.append(Finding("environment", "development: plain-http origins and self-signed certificates are accepted"))
    return found


@dataclass(frozen=True)
class ChecklistItem:
    item: str
    met: bool
    how: str


def checklist(profile: Profile) -> list[ChecklistItem]:
    """The seed guide's pre-deployment checklist, item by item, for what tempo-gen renders."""
    proxied = profile.proxy.kind != "none"
    https_origins = all(o.startswith("https://") for o in profile.cors_origins)
    return [
        ChecklistItem("JWT secret key configured and secure", True,
                      "Docker secret jwt_key; the entrypoint refuses a missing, short or placeholder key (`tempo-gen secrets check`)"),
        ChecklistItem("Database password changed", True,
                      "Docker secret db_password (POSTGRES_PASSWORD_FILE), no default password anywhere"),
        ChecklistItem("HTTPS configured", proxied, f"{profile.proxy.kind} terminates TLS" if proxied else "proxy.kind is none"),
        ChecklistItem("CORS origins configured", https_origins, ", ".join(profile.cors_origins)),
        ChecklistItem("Reverse proxy configured", proxied, f"{profile.proxy.kind} ({profile.proxy.placement})" if proxied else "proxy.kind is none"),
    ]
