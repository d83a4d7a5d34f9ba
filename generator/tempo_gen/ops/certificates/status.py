"""`tempo-gen cert status` and `audit --live`: the certificate a site serves, its days left, and what renews it."""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tempo_gen.models.profile import Profile

RENEWAL_WINDOW_DAYS = 30
"""certbot renews a certificate with fewer days left than this; `cert issue` leaves a longer one alone."""
OVERDUE_DAYS = 14
"""Fewer days left than this and renewal has failed for two weeks: status and audit say so."""
CERTBOT_RENEWAL_UNITS = ("certbot.timer",)
CERTBOT_CRON = ("/etc/cron.d/certbot",)


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says about itself (never its key)."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    serial: int
    not_after: datetime.datetime
    where: str

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).total_seconds() / 86400

    def covers(self, domain: str) -> bool:
        return domain in self.names


def describe(pem_or_der: bytes, where: str) -> CertificateInfo:
    """The first certificate of a PEM chain (or one DER certificate)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    certificate = (
        x509.load_pem_x509_certificate(pem_or_der)
        if pem_or_der.lstrip().startswith(b"-----")
        else x509.load_der_x509_certificate(pem_or_der)
    )
    try:
        san = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = tuple(san.get_values_for_type(x509.DNSName))  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        names=names,
        serial=certificate.serial_number,
        not_after=certificate.not_valid_after_utc,
        where=where,
    )


def read_certificate(path: Path) -> CertificateInfo | None:
    """The certificate in `path`, or None when there is none (or it is not one)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return describe(data, str(path))
    except ValueError:
        return None


def served_certificate(address: str, port: int, domain: str, timeout: float = 5) -> CertificateInfo | None:
    """The certificate served at address:port for SNI `domain`, unverified (status reports any CA's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return describe(der, f"served at {host_port(address, port)}") if der else None


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def local_address(profile: Profile) -> str:
    """Where this machine reaches its own proxy: the first published address (a wildcard: loopback)."""
    addresses = profile.proxy.publish_addresses
    if not addresses:
        return "127.0.0.1"
    first = addresses[0]
    if first.is_unspecified:
        return "::1" if first.version == 6 else "127.0.0.1"
    return str(first)


# --- status -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    domain: str
    certificate: CertificateInfo | None
    renewal: str
    """Who renews it, in words ('' when nothing does)."""
    problems: tuple[str, ...]

    def lines(self, now: datetime.datetime | None = None) -> list[str]:
        cert = self.certificate
        if cert is None:
            out = [f"{self.domain}: no certificate found"]
        else:
            out = [
                f"{self.domain}: {cert.where}",
                f"  issuer     {cert.issuer}",
                f"  names      {', '.join(cert.names) or '(none)'}",
                f"  serial     {cert.serial:x}",
                f"  expires    {cert.not_after:%Y-%m-%d %H:%M} UTC ({cert.days_left(now):.1f} days left)",
            ]
        out.append(f"  renewal    {self.renewal or 'NOT SCHEDULED'}")
        out += [f"  problem    {problem}" for problem in self.problems]
        return out


def expiry_problems(cert: CertificateInfo | None, domain: str, now: datetime.datetime | None = None) -> list[str]:
    """What is wrong with the certificate a site serves; audit and status both call this."""
    if cert is None:
        return ["no certificate is served"]
    problems = []
    days = cert.days_left(now)
    if days < 0:
        problems.append(f"expired on {cert.not_after:%Y-%m-%d}")
    elif days < OVERDUE_DAYS:
        problems.append(
            f"renewal overdue: {days:.1f} days left (renewal starts at {RENEWAL_WINDOW_DAYS}); check certbot's log"
        )
    if not cert.covers(domain):
        problems.append(f"does not cover {domain} (names: {', '.join(cert.names) or 'none'})")
    if cert.self_signed:
        problems.append("self-signed: browsers will warn (`tempo-gen cert issue` replaces a bootstrap pair)")
    return problems


def certbot_renewal(domain: str, config_dir: Path = Path("/etc/letsencrypt")) -> str:
    """How certbot renews `domain` here, in words; '' when it does not."""
    conf = config_dir / "renewal" / f"{domain}.conf"
    if not conf.is_file():
        return ""
    hook = next((line.split("=", 1)[1].strip() for line in config_lines(conf) if line.startswith("renew_hook")), "")
    scheduler = ""
    systemctl = shutil.which("systemctl")
    for unit in CERTBOT_RENEWAL_UNITS:
        if systemctl:
            enabled = subprocess.run([systemctl, "is-enabled", unit], capture_output=True, text=True, timeout=10)
            if enabled.returncode == 0:
                scheduler = f"{unit} (enabled)"
    if not scheduler:
        scheduler = next((f"cron ({cron})" for cron in CERTBOT_CRON if Path(cron).is_file()), "")
    if not scheduler:
        return ""
    return f"certbot, by {scheduler}; deploy hook {hook or 'MISSING (the new pair would not be installed)'}"


def config_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def status(profile: Profile, *, certbot_config: Path = Path("/etc/letsencrypt"), address: str = "") -> Status:
    """The certificate the site serves (else its pair on disk) and what renews it."""
    domain = profile.domain
    reach = address or local_address(profile)
    cert = served_certificate(reach, profile.proxy.https_port, domain)
    problems: list[str] = []
    certificate = profile.proxy.tls.certificate
    if cert is None:
        problems.append(f"nothing answers TLS at {host_port(reach, profile.proxy.https_port)}")
        if profile.proxy.kind == "nginx":
            cert = read_certificate(Path(certificate.paths(domain)[0]))
    if profile.proxy.kind == "traefik" and certificate.source == "acme":
        renewal = "Traefik's ACME resolver (renews 30 days before expiry while Traefik runs)"
    elif profile.proxy.kind == "nginx" and certificate.source == "acme":
        renewal = certbot_renewal(domain, certbot_config)
    else:
        renewal = f"by you (source: {certificate.source})"
    problems += expiry_problems(cert, domain)
    return Status(domain, cert, renewal, tuple(problems))


def certificate_findings(profile: Profile) -> list[str]:
    """audit --live: one line per problem of the served certificate, an expiry under OVERDUE_DAYS as OVERDUE."""
    found = status(profile)
    lines = [
        f"{'OVERDUE' if problem.startswith(('renewal overdue', 'expired')) else 'live':9} certificate: {problem}"
        for problem in found.problems
    ]
    if not found.renewal:
        lines.append(f"{'live':9} certificate: nothing renews it (no certbot timer or cron, or no renewal config)")
    return lines
