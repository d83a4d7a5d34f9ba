"""`tempo-gen cert issue`: the site's ACME certificate, from nothing to renewed, for the nginx proxy.

issue: a bootstrap pair so nginx can start, the proxy up (container: Compose;
host: the running nginx reloaded), a local check that port 80 serves the
challenge folder, then certbot --webroot with the profile's e-mail, directory,
CA bundle and the rendered deploy hook, which installs the real pair and
reloads nginx. It does nothing while the installed certificate is valid for
more than the renewal window, and turns certbot's failures into what the user
can act on (certbot.py).
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tempo_gen.errors import DeploymentError, UnsafeFile
from tempo_gen.ops.certificates.certbot import directory_changed, run_certbot, run_hook
from tempo_gen.ops.certificates.site import BOOTSTRAP_DAYS, RELOAD_TIMEOUT, Log, NginxSite
from tempo_gen.ops.certificates.status import (
    RENEWAL_WINDOW_DAYS,
    CertificateInfo,
    host_port,
    read_certificate,
    served_certificate,
)
from tempo_gen.policy.placement import key_owner

# --- issue ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueResult:
    changed: bool
    certificate: CertificateInfo
    message: str


def issue(site: NginxSite, log: Log, *, now: datetime.datetime | None = None) -> IssueResult:
    """From nothing (or a bootstrap pair) to a trusted certificate served; nothing when one is valid long enough."""
    cert_file, key_file = site.certificate
    for path in (cert_file, key_file):
        _refuse_symlinks(path)  # before asking the CA anything: the deploy hook would refuse it too
    installed = read_certificate(cert_file)
    moved = directory_changed(site)
    if installed and _good(installed, site.domain, now) and not moved:
        days = installed.days_left(now)
        return IssueResult(
            False,
            installed,
            f"{cert_file} is valid for {site.domain} for {days:.0f} more days (issuer {installed.issuer}); "
            f"nothing to do (certbot renews it within {RENEWAL_WINDOW_DAYS} days of expiry)",
        )
    if shutil.which("certbot") is None:
        raise DeploymentError("certbot is not installed (Debian: apt-get install certbot)")
    bundle = site.profile.proxy.tls.certificate.acme_ca_bundle
    if bundle and not Path(bundle).is_file():
        raise DeploymentError(
            f"proxy.tls.certificate.acme_ca_bundle {bundle} is not a readable file: put the PEM of the CA "
            "that signs the ACME directory's https certificate there"
        )
    if installed is None:
        bootstrap_pair(site)
        log(f"wrote a temporary self-signed pair to {cert_file} so nginx can start")
    start_proxy(site, log)
    check_webroot(site)
    log(f"asking {site.profile.proxy.tls.certificate.acme_directory} for a certificate for {site.domain}")
    if moved:
        log(f"certbot's certificate for {site.domain} came from {moved}; replacing it")
    run_certbot(site, force=bool(moved))
    lineage = site.lineage()
    issued = read_certificate(lineage / "fullchain.pem")
    if issued is None:
        raise DeploymentError(f"certbot succeeded but {lineage}/fullchain.pem holds no certificate")
    current = read_certificate(cert_file)
    if current is None or current.serial != issued.serial:
        # certbot kept an existing, still valid lineage (no hook ran): install it now.
        run_hook(site, lineage)
    served = wait_served(site, issued.serial)
    if served is None or served.serial != issued.serial:
        raise DeploymentError(
            f"the new certificate is in {lineage}, but {site.reach}:{site.profile.proxy.https_port} "
            "does not serve it: check that nginx runs the rendered configuration"
        )
    return IssueResult(
        True,
        served,
        f"{site.domain} now serves a certificate from {served.issuer}, valid until "
        f"{served.not_after:%Y-%m-%d} ({served.days_left(now):.0f} days)",
    )


def wait_served(site: NginxSite, serial: int, timeout: float = RELOAD_TIMEOUT) -> CertificateInfo | None:
    """The served certificate once it has `serial` (a reload hands connections to new workers in a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        served = served_certificate(site.reach, site.profile.proxy.https_port, site.domain)
        if (served and served.serial == serial) or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


def _good(info: CertificateInfo, domain: str, now: datetime.datetime | None) -> bool:
    return not info.self_signed and info.covers(domain) and info.days_left(now) > RENEWAL_WINDOW_DAYS


def _refuse_symlinks(path: Path) -> None:
    for part in [path, *path.parents]:
        if part.is_symlink():
            raise UnsafeFile(part, f"is a symlink; refusing to write {path} through it")


def _write_atomic(path: Path, data: bytes, mode: int, owner: int) -> None:
    _refuse_symlinks(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tempo-gen.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            os.fchown(out.fileno(), owner, owner)
            os.fchmod(out.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def bootstrap_pair(site: NginxSite) -> None:
    """A short-lived self-signed ECDSA pair where nginx reads it, so nginx can start and answer http-01."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_file, key_file = site.certificate
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site.domain)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=BOOTSTRAP_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(site.domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_file, key_pem, 0o400, key_owner(site.profile))
    _write_atomic(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644, 0)


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise DeploymentError("nginx is not installed on this host (proxy.placement: host)")
    return found


def start_proxy(site: NginxSite, log: Log) -> None:
    """Container: `docker compose up -d proxy` (and what it depends on). Host: nginx checked and reloaded."""
    if site.profile.proxy.placement == "container":
        from tempo_gen.ops.running.compose import compose_command

        compose_file = site.bundle / "compose.yaml"
        command = ["-p", site.profile.name, "-f", str(compose_file), "up", "-d", "--build", "--wait", "proxy"]
        runner = site.compose or _compose
        done = runner(command)
        if done.returncode != 0:
            raise DeploymentError(f"`{' '.join(compose_command())} up proxy` failed: {done.stderr.strip()[-800:]}")
        log("the proxy container is up")
        return
    if not Path(site.nginx_conf).is_file():
        raise DeploymentError(
            f"{site.nginx_conf} is missing: copy the bundle's proxy/nginx/ to {Path(site.nginx_conf).parent}/ first"
        )
    checked = subprocess.run(
        [_nginx(), "-t", "-q", "-c", site.nginx_conf], capture_output=True, text=True, timeout=60, check=False
    )
    if checked.returncode != 0:
        raise DeploymentError(f"nginx refuses its configuration: {checked.stderr.strip()[-800:]}")
    pid_file = Path(site.runtime.path(site.runtime.pid))
    if _running(pid_file):
        command, done_message = [_nginx(), "-s", "reload", "-c", site.nginx_conf], "nginx reloaded"
    else:
        command, done_message = list(site.start or _start_command(site)), "nginx started"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise DeploymentError(f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-800:]}")
    log(f"{done_message} with the rendered configuration")


def _start_command(site: NginxSite) -> list[str]:
    systemctl = shutil.which("systemctl")
    if systemctl and Path("/run/systemd/system").is_dir():
        return [systemctl, "start", "nginx"]
    return [_nginx(), "-c", site.nginx_conf]


def _compose(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    from tempo_gen.ops.running.compose import compose_command

    return subprocess.run([*compose_command(), *arguments], capture_output=True, text=True, timeout=900, check=False)


def _running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def check_webroot(site: NginxSite) -> None:
    """A token in the challenge folder must come back from port 80 here, as the CA will ask for it."""
    folder = site.webroot / ".well-known" / "acme-challenge"
    _refuse_symlinks(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    token = f"tempo-gen-check-{secrets.token_hex(8)}"
    probe = folder / token
    probe.write_text(token)
    probe.chmod(0o644)
    try:
        connection = http.client.HTTPConnection(site.reach, site.profile.proxy.http_port, timeout=10)
        try:
            connection.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": site.domain})
            response = connection.getresponse()
            body = response.read(4096).decode(errors="replace")
        finally:
            connection.close()
    except OSError as exc:
        raise DeploymentError(
            f"port {site.profile.proxy.http_port} on {site.reach} does not answer ({exc.strerror or exc}): "
            "nginx must serve plain HTTP there for the CA's http-01 challenge"
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    if response.status != 200 or body != token:
        raise DeploymentError(
            f"http://{site.domain}/.well-known/acme-challenge/ on "
            f"{host_port(site.reach, site.profile.proxy.http_port)} "
            f"does not serve {folder} (status {response.status}): is nginx running the rendered configuration?"
        )
