"""TLS at the proxy: where the certificate comes from (ACME, files, self-signed), the Mozilla configuration, HSTS."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, model_validator

from tempo_gen.models.base import AbsPath, Email, HostAddress, StrictModel, Url

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
TLS_DIR = "/var/lib/tempo-tls"
"""Default home of the pair the proxy reads (<TLS_DIR>/<domain>/): outside /etc, so a container mounts only it."""


class Certificate(StrictModel):
    """Where the certificate and its key come from (paths on the host; a proxy container mounts them read-only)."""

    source: Literal["acme", "files", "self-signed"] = Field(
        "acme",
        description=(
            "`acme`: Let's Encrypt over http-01: for nginx certbot --webroot, installed by "
            "proxy/certbot-deploy-hook.sh; for traefik its own ACME client, storing account and "
            "certificates in the proxy_acme volume (host: /var/lib/traefik). `files`: a pair you "
            "provide; `self-signed`: a pair made by proxy/self-signed-cert.sh (environment: "
            "development only)."
        ),
    )
    cert_file: AbsPath | None = Field(
        None,
        description=(
            "Certificate chain the proxy reads (not used by traefik with acme). Default (acme, "
            "self-signed): /var/lib/tempo-tls/<domain>/fullchain.pem."
        ),
    )
    key_file: AbsPath | None = Field(
        None,
        description=(
            "Private key the proxy reads (not used by traefik with acme). Default (acme, "
            "self-signed): /var/lib/tempo-tls/<domain>/privkey.pem."
        ),
    )
    acme_webroot: AbsPath = Field(
        "/var/www/_letsencrypt",
        description=(
            "nginx: folder certbot --webroot writes challenge tokens to; port 80 serves "
            "/.well-known/acme-challenge/ from it."
        ),
    )
    acme_email: Email | None = Field(
        None, description=("ACME account e-mail (`tempo-gen cert issue` for nginx, or Traefik's resolver).")
    )
    acme_directory: Url = Field(
        LETS_ENCRYPT,
        description=(
            "ACME directory URL: Let's Encrypt production by default; its staging directory "
            f"({LETS_ENCRYPT_STAGING}) for a first dry run, or a private CA. https only in production. "
            "certbot's --server, Traefik's caServer."
        ),
    )
    acme_ca_bundle: AbsPath | None = Field(
        None,
        description=(
            "PEM file on the host with the CA certificates to trust for acme_directory (a private CA); "
            "default: the system's. certbot gets it as REQUESTS_CA_BUNDLE, Traefik as "
            "LEGO_CA_CERTIFICATES (mounted read-only into a container)."
        ),
    )

    @model_validator(mode="after")
    def _files_need_paths(self) -> Certificate:
        if self.source == "files" and not (self.cert_file and self.key_file):
            raise ValueError("source: files needs cert_file and key_file (absolute paths on the host)")
        return self

    def paths(self, domain: str) -> tuple[str, str]:
        """(certificate chain, private key) as the proxy reads them."""
        folder = f"{TLS_DIR}/{domain}"
        return self.cert_file or f"{folder}/fullchain.pem", self.key_file or f"{folder}/privkey.pem"

    def mounts(self, domain: str) -> list[str]:
        """Host paths a proxy container mounts read-only at the same place: the pair's folder when
        tempo-gen's scripts write it (renewals replace files, which a file mount would not see), else the files."""
        pair = self.paths(domain)
        if self.source == "files":
            return list(pair)
        folders = [str(PurePosixPath(path).parent) for path in pair]
        webroot = [self.acme_webroot] if self.source == "acme" else []
        return list(dict.fromkeys(webroot + folders))


class Tls(StrictModel):
    profile: Literal["modern", "intermediate"] = Field(
        "intermediate",
        description=(
            "Mozilla guidelines 6.0 configuration: `modern` is TLS 1.3 only; `intermediate` adds TLS "
            "1.2 with AEAD ciphers."
        ),
    )
    certificate: Certificate = Certificate()
    ocsp_stapling: bool = Field(
        False,
        description=(
            "Opt-in: Let's Encrypt no longer runs OCSP responders; enable only for a CA that still publishes OCSP."
        ),
    )
    ocsp_resolvers: list[HostAddress] = Field(
        [],
        description=(
            "DNS resolvers nginx uses to reach the OCSP responder. Default in a container: Docker's "
            "127.0.0.11. Traefik uses the system resolver and ignores this."
        ),
    )


class Hsts(StrictModel):
    """Strict-Transport-Security; max-age is the TLS profile's (two years)."""

    include_subdomains: bool = Field(
        True, description="Add includeSubDomains: every subdomain of the domain is HTTPS-only too."
    )
    preload: bool = Field(False, description="Opt-in only: preload lists are hard to leave (hstspreload.org).")

    @model_validator(mode="after")
    def _preload_needs_subdomains(self) -> Hsts:
        if self.preload and not self.include_subdomains:
            raise ValueError("preload requires include_subdomains (the preload list refuses the site otherwise)")
        return self
