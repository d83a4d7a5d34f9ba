"""What a profile weakens, and how its render measures up to the pre-deployment checklist of Tempo's security guide.

Secure defaults need no mention; every explicit field that weakens one is a
finding, so a reviewer sees each trade-off the profile makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tempo_gen.models.profile import Profile
from tempo_gen.policy.ports import IMPORT_PORT
from tempo_gen.policy.releases import FIRST_CHUNKED


@dataclass(frozen=True)
class Finding:
    field: str
    message: str


def weakenings(profile: Profile) -> list[Finding]:
    found = []
    unpinned = profile.unpinned_images()
    if unpinned and profile.tempo.allow_unpinned:
        found.append(
            Finding(
                "tempo.allow_unpinned", f"images not pinned by digest: {', '.join(unpinned)} (run `tempo-gen lock`)"
            )
        )
    if profile.proxy.kind == "none":
        cookie = (
            " (Tempo's session cookie is Secure in Production: plain http cannot hold a session)"
            if profile.tempo.release.cookie_secure_in_production
            else ""
        )
        found.append(
            Finding(
                "proxy.kind",
                f"no reverse proxy: TLS, redirects, headers and rate limits must be provided elsewhere{cookie}",
            )
        )
    for address in profile.proxy.publish_addresses:
        if address.is_unspecified:
            found.append(
                Finding("proxy.publish_addresses", f"{address} publishes the proxy on every interface of the host")
            )
    if profile.environment == "development":
        found.append(
            Finding("environment", "development: plain-http origins and self-signed certificates are accepted")
        )
    found += _firewall(profile) + _proxy(profile) + _tempo(profile) + _raised_limits(profile) + _swarm(profile)
    found += _monitoring(profile)
    return found


def _tempo(profile: Profile) -> list[Finding]:
    """Tempo settings that widen what a browser, a log or a subdomain sees."""
    tempo, found = profile.tempo, []
    if tempo.logging_profile == "debug":
        found.append(
            Finding("tempo.logging_profile", "debug: the API logs request details; use it while diagnosing only")
        )
    if tempo.cookie_domain:
        found.append(
            Finding(
                "tempo.cookie_domain", f"the session cookie is sent to {tempo.cookie_domain} and all its subdomains"
            )
        )
    if tempo.carto_api_key:
        found.append(
            Finding(
                "tempo.carto_api_key",
                "handed to every signed-in browser: restrict the key to this site at CARTO",
            )
        )
    if tempo.release.import_port:
        where = (
            "nothing serves it here (proxy.kind: none): serve it with TLS yourself, or imports fail"
            if profile.proxy.kind == "none"
            else "the proxy publishes it (TLS, the two import routes only) and the firewall opens it"
        )
        found.append(
            Finding(
                "tempo.version",
                f"Tempo {tempo.version}'s browser sends bulk imports to port {IMPORT_PORT}, a second public port: "
                f"{where}; from Tempo {FIRST_CHUNKED} imports go through /api",
            )
        )
    return found


def _monitoring(profile: Profile) -> list[Finding]:
    """What the monitoring of Tempo's security guide ("Monitoring and Auditing") lacks."""
    monitoring = profile.monitoring
    if profile.proxy.kind == "none":
        return [Finding("proxy.kind", "no proxy: no access log, so no bans of failed logins or scanners")]
    if not monitoring.enabled:
        return [
            Finding(
                "monitoring.enabled",
                "the access log stays in the proxy's own output: fail2ban cannot read it, nothing is banned",
            )
        ]
    if not monitoring.bans.enabled:
        return [Finding("monitoring.bans.enabled", "no fail2ban jails: failed logins and scanners are not banned")]
    return []


def _swarm(profile: Profile) -> list[Finding]:
    """What Swarm (Docker 20.10, API 1.41) cannot apply that compose mode does."""
    if profile.deploy.mode != "swarm":
        return []
    return [
        Finding(
            "deploy.mode",
            "swarm: no-new-privileges is not set on the services (Swarm ignores security_opt); "
            'set "no-new-privileges": true in /etc/docker/daemon.json',
        ),
        Finding(
            "deploy.mode",
            "swarm: tmpfs mounts are owned by root with the image folder's mode, not by the service's uid",
        ),
        *(
            Finding(
                f"deploy.nodes[{i}].insecure_plain_tcp",
                f"{node.hostname}: its Docker API ({node.docker_host}) is reached without TLS: "
                "anyone on that network is root on the node and sees the secrets sent to it",
            )
            for i, node in enumerate(profile.deploy.nodes)
            if node.insecure_plain_tcp and (node.docker_host or "").startswith("tcp://")
        ),
    ]


def _firewall(profile: Profile) -> list[Finding]:
    firewall = profile.firewall
    if not firewall.enabled:
        return [
            Finding(
                "firewall.enabled",
                "no host firewall is rendered: SSH and Docker's published ports are not restricted by tempo-gen",
            )
        ]
    found = []
    if firewall.allow_world_admin:
        found.append(Finding("firewall.allow_world_admin", "SSH is accepted from anywhere (rate-limited only)"))
    elif not firewall.admin_cidrs and firewall.vpn is None:
        found.append(Finding("firewall.admin_cidrs", "none given: SSH is accepted from anywhere (development only)"))
    return found


def _proxy(profile: Profile) -> list[Finding]:
    if profile.proxy.kind == "none":
        return []
    proxy, found = profile.proxy, []
    if proxy.headers.x_xss_protection != "0":
        found.append(
            Finding(
                "proxy.headers.x_xss_protection",
                f"{proxy.headers.x_xss_protection!r}: OWASP advises 0 (the legacy XSS auditor leaked data)",
            )
        )
    if not proxy.hsts.include_subdomains:
        found.append(Finding("proxy.hsts.include_subdomains", "HSTS does not cover subdomains"))
    if proxy.headers.csp.override:
        found.append(Finding("proxy.headers.csp.override", "the Content-Security-Policy is written by hand; review it"))
    timeout, default_timeout = (
        profile.tempo.import_timeout_minutes,
        _defaults().tempo.import_timeout_minutes,
    )
    if proxy.kind == "traefik" and timeout > default_timeout:
        # nginx scopes the timeout to the import routes; Traefik's readTimeout is per entry point.
        found.append(
            Finding(
                "tempo.import_timeout_minutes",
                f"raised to {timeout} (default {default_timeout}): with Traefik "
                "every HTTPS request may take that long to arrive, so slow clients hold connections longer",
            )
        )
    return found


# Limits whose raise above the default widens what a client may do.
_LIMITS: tuple[tuple[str, Callable[[Profile], int]], ...] = (
    ("tempo.media_max_mb", lambda p: p.tempo.media_max_mb),
    ("tempo.import_max_mb", lambda p: p.tempo.import_max_mb),
    ("proxy.body_max_kb", lambda p: p.proxy.body_max_kb),
    ("proxy.rate_limits.login_per_minute", lambda p: p.proxy.rate_limits.login_per_minute),
    ("proxy.rate_limits.login_burst", lambda p: p.proxy.rate_limits.login_burst),
    ("proxy.rate_limits.api_per_second", lambda p: p.proxy.rate_limits.api_per_second),
    ("proxy.rate_limits.api_burst", lambda p: p.proxy.rate_limits.api_burst),
    ("proxy.rate_limits.import_chunks_per_second", lambda p: p.proxy.rate_limits.import_chunks_per_second),
)


def _defaults() -> Profile:
    """Every default, without validation: name and domain are required and stay placeholders."""
    return Profile.model_construct(name="defaults", domain="defaults.invalid")


def _raised_limits(profile: Profile) -> list[Finding]:
    defaults = _defaults()
    found = []
    for field, value in _LIMITS:
        default = value(defaults)
        if value(profile) > default:
            found.append(Finding(field, f"raised to {value(profile)} (default {default})"))
    return found


@dataclass(frozen=True)
class ChecklistItem:
    item: str
    met: bool
    how: str


def checklist(profile: Profile) -> list[ChecklistItem]:
    """The pre-deployment checklist of Tempo's security guide, item by item, for what tempo-gen renders."""
    proxied = profile.proxy.kind != "none"
    https_origins = all(o.startswith("https://") for o in profile.cors_origins)
    return [
        ChecklistItem(
            "JWT secret key configured and secure",
            True,
            "Docker secret jwt_key; the entrypoint refuses a missing, short or placeholder key "
            "(`tempo-gen secrets check`)",
        ),
        ChecklistItem(
            "Database password changed",
            True,
            "Docker secret db_password (POSTGRES_PASSWORD_FILE), no default password anywhere",
        ),
        ChecklistItem(
            "HTTPS configured", proxied, f"{profile.proxy.kind} terminates TLS" if proxied else "proxy.kind is none"
        ),
        ChecklistItem("CORS origins configured", https_origins, ", ".join(profile.cors_origins)),
        ChecklistItem(
            "Firewall rules set",
            profile.firewall.enabled,
            "firewall/ (nftables, DOCKER-USER, ufw variant)"
            if profile.firewall.enabled
            else "firewall.enabled is false",
        ),
        ChecklistItem(
            "Reverse proxy configured",
            proxied,
            f"{profile.proxy.kind} ({profile.proxy.placement})" if proxied else "proxy.kind is none",
        ),
        _monitoring_item(profile),
        _backup_item(profile),
        ChecklistItem(
            "Security headers added",
            proxied,
            "HSTS, CSP, X-Frame-Options, nosniff, Referrer-Policy, Permissions-Policy on every response"
            if proxied
            else "proxy.kind is none",
        ),
    ]


def _monitoring_item(profile: Profile) -> ChecklistItem:
    monitoring = profile.monitoring
    configured = profile.proxy.kind != "none" and monitoring.enabled and monitoring.bans.enabled
    if not configured:
        missing = "; ".join(f"{f.field}: {f.message}" for f in _monitoring(profile))
        return ChecklistItem("Monitoring and auditing", False, missing)
    bans = monitoring.bans
    # No alerting is the default, not a weakening: said here, not as a finding.
    alerts = f"alerts to {monitoring.alert}" if monitoring.alert else "no alerting configured"
    return ChecklistItem(
        "Monitoring and auditing",
        True,
        f"JSON access log in {monitoring.log_dir(profile.name)} (rotated, {monitoring.access_log.max_age_days} days); "
        f"fail2ban bans at the firewall after {bans.login_failures} failed logins, {bans.rate_limited} 429s or "
        f"{bans.scanner_hits} scanner requests in {bans.find_time} s, for {bans.ban_time} s; "
        f"audit trail audit/{profile.name}.jsonl; {alerts}",
    )


def _backup_item(profile: Profile) -> ChecklistItem:
    """The guide's "encrypt backup files, store them securely, limit access, test restore procedures"."""
    backup = profile.backup
    item = "Backups encrypted, stored securely and restore-tested"
    if not backup.recipients:
        return ChecklistItem(
            item, False, "backup.recipients is empty: backups cannot run (they are encrypted to these age keys)"
        )
    retention = backup.retention
    offsite = f"copied to restic at {backup.restic.repository}" if backup.restic else "no off-host copy (backup.restic)"
    return ChecklistItem(
        item,
        True,
        f"age to {len(backup.recipients)} recipient(s) into {backup.folder(profile.name)} (0700, root) at "
        f"{backup.schedule!r}, keeping {retention.daily} daily, {retention.weekly} weekly, {retention.monthly} "
        f"monthly; {offsite}; restore drill at {backup.drill_schedule!r} (backup/ timers)",
    )
