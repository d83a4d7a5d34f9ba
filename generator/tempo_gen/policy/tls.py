"""TLS policy: Mozilla's server-side TLS guidelines, and what each proxy version can express.

Data first, like mozilla/ssl-config-generator: CONFIGURATIONS mirrors the
`configurations` of guidelines 6.0 (src/static/guidelines/6.0.json, MPL-2.0),
with OpenSSL and IANA cipher names so the nginx target and the Traefik target
(Go names) read the same table. The capability table says what an nginx
version and the OpenSSL it links can do; `for_nginx` and `for_traefik` are the
resolvers (the generator's state.js), so templates only format their result.
"""

from __future__ import annotations

from dataclasses import dataclass

GUIDELINES_VERSION = "6.0"
GUIDELINES_HREF = "https://ssl-config.mozilla.org/guidelines/6.0.json"

# Post-quantum hybrid groups: OpenSSL knows them from 3.5; older builds refuse
# the whole group list, so they are dropped there (as Mozilla's generator does).
PQ_GROUPS = frozenset({"X25519MLKEM768"})
PQ_MIN_OPENSSL = (3, 5)

# Go's crypto/tls names for the OpenSSL group names (Traefik curvePreferences).
GO_GROUP_NAMES = {
    "X25519MLKEM768": "X25519MLKEM768",
    "X25519": "X25519",
    "prime256v1": "CurveP256",
    "secp384r1": "CurveP384",
}

# Mozilla's nginx template sets these; they are not part of the guidelines JSON.
SESSION_TIMEOUT = "1d"
SESSION_CACHE = "shared:MozSSL:10m"


@dataclass(frozen=True)
class TlsConfiguration:
    """One Mozilla configuration, field names as in the guidelines JSON."""

    name: str
    tls_versions: tuple[str, ...]
    ciphers_openssl: tuple[str, ...]
    """TLS 1.2 cipher suites, OpenSSL names (empty: TLS 1.3 only)."""
    ciphers_iana: tuple[str, ...]
    """The same suites, IANA names (what Go and Traefik call them)."""
    ciphersuites: tuple[str, ...]
    """TLS 1.3 suites (OpenSSL's defaults; Go does not let them be chosen)."""
    tls_curves: tuple[str, ...]
    certificate_types: tuple[str, ...]
    hsts_min_age: int
    server_preferred_order: bool

    @property
    def min_version(self) -> str:
        """Lowest protocol, e.g. "1.2" (Traefik's minVersion is VersionTLS12)."""
        return min(self.tls_versions).removeprefix("TLSv")


_TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_CURVES = ("X25519MLKEM768", "X25519", "prime256v1", "secp384r1")

CONFIGURATIONS: dict[str, TlsConfiguration] = {
    "modern": TlsConfiguration(
        name="modern",
        tls_versions=("TLSv1.3",),
        ciphers_openssl=(),
        ciphers_iana=(),
        ciphersuites=_TLS13_SUITES,
        tls_curves=_CURVES,
        certificate_types=("ecdsa",),
        hsts_min_age=63072000,
        server_preferred_order=False,
    ),
    "intermediate": TlsConfiguration(
        name="intermediate",
        tls_versions=("TLSv1.2", "TLSv1.3"),
        ciphers_openssl=(
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
        ciphers_iana=(
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        ciphersuites=_TLS13_SUITES,
        tls_curves=_CURVES,
        certificate_types=("ecdsa", "rsa"),
        hsts_min_age=63072000,
        server_preferred_order=False,
    ),
}


def groups(configuration: TlsConfiguration, openssl: tuple[int, ...]) -> tuple[str, ...]:
    """The configuration's key-exchange groups that this OpenSSL understands, in preference order."""
    if openssl >= PQ_MIN_OPENSSL:
        return configuration.tls_curves
    return tuple(g for g in configuration.tls_curves if g not in PQ_GROUPS)


# nginx capabilities, by the first version that has them.
NGINX_MIN_VERSION = (1, 22)
"""Oldest nginx rendered for: Debian 12's 1.22 (ssl_reject_handshake needs 1.19.4)."""
NGINX_HTTP2_DIRECTIVE = (1, 25, 1)
"""`http2 on;` replaces the `listen ... http2` parameter (deprecated from here)."""
NGINX_TICKET_KEY_ROTATION = (1, 23, 2)
"""nginx rotates session ticket keys itself; Mozilla turns tickets off only before this."""
NGINX_UPSTREAM_RESOLVE = (1, 27, 3)
"""`server name resolve` in an upstream (with a `zone`) follows DNS changes; before, only a variable proxy_pass does."""


@dataclass(frozen=True)
class NginxTls:
    """What the nginx templates print: resolved from a Mozilla configuration and a version pair."""

    protocols: tuple[str, ...]
    ciphers: tuple[str, ...]
    groups: tuple[str, ...]
    prefer_server_ciphers: bool
    session_timeout: str
    session_cache: str
    session_tickets_off: bool
    http2_directive: bool


def for_nginx(configuration: str, nginx: tuple[int, ...], openssl: tuple[int, ...]) -> NginxTls:
    chosen = CONFIGURATIONS[configuration]
    return NginxTls(
        protocols=chosen.tls_versions,
        ciphers=chosen.ciphers_openssl,
        groups=groups(chosen, openssl),
        prefer_server_ciphers=chosen.server_preferred_order,
        session_timeout=SESSION_TIMEOUT,
        session_cache=SESSION_CACHE,
        session_tickets_off=nginx < NGINX_TICKET_KEY_ROTATION,
        http2_directive=nginx >= NGINX_HTTP2_DIRECTIVE,
    )


@dataclass(frozen=True)
class TraefikTls:
    """What Traefik's `tls.options` print: Go's crypto/tls names."""

    min_version: str
    cipher_suites: tuple[str, ...]
    """TLS 1.2 suites; empty for TLS 1.3 only (Go fixes the TLS 1.3 suites itself)."""
    curve_preferences: tuple[str, ...]


def for_traefik(configuration: str) -> TraefikTls:
    """Traefik 3.5+ (Go 1.24+) knows every group of the table, the post-quantum hybrid included."""
    chosen = CONFIGURATIONS[configuration]
    return TraefikTls(
        min_version="VersionTLS" + chosen.min_version.replace(".", ""),
        cipher_suites=chosen.ciphers_iana,
        curve_preferences=tuple(GO_GROUP_NAMES[g] for g in chosen.tls_curves),
    )
