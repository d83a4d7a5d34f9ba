"""`tempo-gen cert issue` and `cert status`: the site's ACME certificate, from nothing to renewed, for the nginx proxy.

issue: a bootstrap pair so nginx can start, the proxy up (container: Compose;
host: the running nginx reloaded), a local check that port 80 serves the
challenge folder, then certbot --webroot with the profile's e-mail, directory,
CA bundle and the rendered deploy hook, which installs the real pair and
reloads nginx. It does nothing while the installed certificate is valid for
more than the renewal window, and turns certbot's failures into what the user
can act on. status: the served certificate (or the pair on disk), its days
left, and whether anything renews it.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tempo_gen.errors import DeploymentError, UnsafeFile, UsageError
from tempo_gen.models.profile import Profile
from tempo_gen.targets import nginx
from tempo_gen.targets.proxy_placement import key_owner

RENEWAL_WINDOW_DAYS = 30
"""certbot renews a certificate with fewer days left than this; `cert issue` leaves a longer one alone."""
OVERDUE_DAYS = 14
"""Fewer days left than this and renewal has failed for two weeks: status and audit say so."""
CERTBOT_TIMEOUT = 600
BOOTSTRAP_DAYS = 7
RELOAD_TIMEOUT = 30
"""Seconds nginx may take after a reload to serve the new pair on new connections."""
HOOK = "proxy/certbot-deploy-hook.sh"
CERTBOT_RENEWAL_UNITS = ("certbot.timer",)
CERTBOT_CRON = ("/etc/cron.d/certbot",)

Log = Callable[[str], None]


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
    return describe(der, f"served at {_join(address, port)}") if der else None


def _join(address: str, port: int) -> str:
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


# --- the site ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NginxSite:
    """Everything `cert issue` touches for one profile: the nginx runtime, the bundle's hook, certbot's folders."""

    profile: Profile
    runtime: nginx.Runtime
    bundle: Path
    certbot_dir: Path | None = None
    """certbot's config, work and logs folders under one folder (tests); None: certbot's own (/etc/letsencrypt)."""
    address: str = ""
    """Where the site is reached from here; empty: local_address(profile)."""
    compose: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = field(default=None, compare=False)
    """Runs `docker compose ARGS` (container placement); None: the installed Compose."""
    start: tuple[str, ...] = ()
    """Starts a host nginx that is not running; empty: `systemctl start nginx` under systemd, else nginx itself."""

    @property
    def domain(self) -> str:
        return self.profile.domain

    @property
    def certificate(self) -> tuple[Path, Path]:
        cert, key = self.profile.proxy.tls.certificate.paths(self.domain)
        return Path(self.runtime.path(cert)), Path(self.runtime.path(key))

    @property
    def webroot(self) -> Path:
        return Path(self.runtime.path(self.profile.proxy.tls.certificate.acme_webroot))

    @property
    def hook(self) -> Path:
        return self.bundle / HOOK

    @property
    def nginx_conf(self) -> str:
        return self.runtime.path(nginx.HOST_CONF)

    @property
    def reach(self) -> str:
        return self.address or local_address(self.profile)

    def certbot_dirs(self) -> list[str]:
        if self.certbot_dir is None:
            return []
        return [
            f"--config-dir={self.certbot_dir / 'config'}",
            f"--work-dir={self.certbot_dir / 'work'}",
            f"--logs-dir={self.certbot_dir / 'logs'}",
        ]

    def lineage(self) -> Path:
        config = self.certbot_dir / "config" if self.certbot_dir else Path("/etc/letsencrypt")
        return config / "live" / self.domain


def nginx_site(profile: Profile, bundle: Path) -> NginxSite:
    """The profile's site as rendered into `bundle`; refuses profiles `cert issue` cannot act on."""
    proxy = profile.proxy
    if proxy.kind == "traefik":
        raise UsageError(
            "Traefik gets and renews its certificate itself (its ACME resolver) once it runs; "
            "`tempo-gen cert status` shows it"
        )
    if proxy.kind != "nginx":
        raise UsageError("proxy.kind is none: TLS terminates elsewhere, so tempo-gen has no certificate to issue")
    if proxy.tls.certificate.source != "acme":
        raise UsageError(
            f"proxy.tls.certificate.source is {proxy.tls.certificate.source}: `cert issue` is for source: acme"
        )
    if proxy.placement == "container" and profile.deploy.mode == "swarm":
        raise UsageError("`cert issue` runs the Compose proxy; in swarm mode run certbot by hand (proxy/README.md)")
    if not (bundle / HOOK).is_file():
        raise UsageError(f"{bundle / HOOK} is missing: run `tempo-gen render` first")
    return NginxSite(profile, nginx.runtime_for(profile), bundle)


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
        from tempo_gen.ops.compose_project import compose_command

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
    from tempo_gen.ops.compose_project import compose_command

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
            f"http://{site.domain}/.well-known/acme-challenge/ on {_join(site.reach, site.profile.proxy.http_port)} "
            f"does not serve {folder} (status {response.status}): is nginx running the rendered configuration?"
        )


def directory_changed(site: NginxSite) -> str:
    """The directory certbot's existing lineage for the site came from, when the profile now names another
    (a staging dry run, then production); '' otherwise."""
    conf = site.lineage().parent.parent / "renewal" / f"{site.domain}.conf"
    server = next((line.split("=", 1)[1].strip() for line in _lines(conf) if line.startswith("server ")), "")
    return server if server and server != site.profile.proxy.tls.certificate.acme_directory else ""


def certbot_command(site: NginxSite, *, force: bool = False) -> list[str]:
    certificate = site.profile.proxy.tls.certificate
    email = ["--email", certificate.acme_email] if certificate.acme_email else ["--register-unsafely-without-email"]
    return [
        "certbot",
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--webroot",
        "--webroot-path",
        str(site.webroot),
        "--domain",
        site.domain,
        "--cert-name",
        site.domain,
        *email,
        "--server",
        certificate.acme_directory,
        "--deploy-hook",
        str(site.hook.resolve()),
        "--force-renewal" if force else "--keep-until-expiring",
        *site.certbot_dirs(),
    ]


def certbot_environment(site: NginxSite) -> dict[str, str]:
    bundle = site.profile.proxy.tls.certificate.acme_ca_bundle
    env = dict(os.environ)
    if bundle:
        env["REQUESTS_CA_BUNDLE"] = bundle
    return env


def run_certbot(site: NginxSite, *, force: bool = False) -> None:
    try:
        done = subprocess.run(
            certbot_command(site, force=force),
            capture_output=True,
            text=True,
            timeout=CERTBOT_TIMEOUT,
            env=certbot_environment(site),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeploymentError(f"certbot did not finish within {CERTBOT_TIMEOUT}s; the site is as it was") from None
    if done.returncode != 0:
        raise DeploymentError(explain_certbot(done.stdout + done.stderr, site))


def run_hook(site: NginxSite, lineage: Path) -> None:
    env = {**os.environ, "RENEWED_LINEAGE": str(lineage), "RENEWED_DOMAINS": site.domain}
    done = subprocess.run([str(site.hook)], env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise DeploymentError(f"the deploy hook failed: {done.stderr.strip()[-800:]}")


# certbot's (and the ACME server's) wording -> what the user can do about it. First match wins.
_CERTBOT_FAILURES: tuple[tuple[str, str], ...] = (
    (
        r"urn:ietf:params:acme:error:rateLimited|too many (certificates|failed authorizations|registrations)",
        "the CA's rate limit was hit: wait (Let's Encrypt: up to a week for a domain) or try "
        "acme_directory: the staging directory first",
    ),
    (
        r"invalidContact|invalidEmail|unsupportedContact|contact.*(invalid|forbidden|not supported)",
        "the CA refused the account e-mail {email}: set proxy.tls.certificate.acme_email to an address "
        "at a real domain",
    ),
    (
        r"CERTIFICATE_VERIFY_FAILED|SSLError|certificate verify failed",
        "the ACME directory {directory} is reachable but its certificate is not trusted: set "
        "proxy.tls.certificate.acme_ca_bundle to its CA (a private CA), or check the host's CA store",
    ),
    (
        r"Requesting \S+: |Unable to reach|Failed to establish a new connection|Max retries exceeded"
        r"|Name or service not known|Temporary failure in name resolution|Connection aborted",
        "the ACME directory {directory} cannot be reached from this host: check the URL "
        "(proxy.tls.certificate.acme_directory) and the host's outbound network",
    ),
    (
        r"Type:\s*dns|NXDOMAIN|no valid (A|AAAA) records|DNS problem|SERVFAIL",
        "DNS: {domain} does not resolve (or not to this server) for the CA; point its A/AAAA records at this "
        "host's public address and wait for them to propagate",
    ),
    (
        r"Type:\s*connection|Connection refused|Timeout during connect|connection reset|i/o timeout|no route",
        "port {http_port} of {domain} is not reachable from the CA: open it in the firewall (firewall/apply.sh opens "
        "80/443) and check that nothing in front of this host blocks it",
    ),
    (
        r"Type:\s*unauthorized|Invalid response from",
        "the CA reached {domain} but got the wrong answer: its DNS points at another server, or something "
        "in front of this host answers port 80",
    ),
)


def explain_certbot(output: str, site: NginxSite) -> str:
    certificate = site.profile.proxy.tls.certificate
    values = {
        "domain": site.domain,
        "email": certificate.acme_email or "(none)",
        "directory": certificate.acme_directory,
        "http_port": str(site.profile.proxy.http_port),
    }
    reason = next(
        (message.format(**values) for pattern, message in _CERTBOT_FAILURES if re.search(pattern, output, re.I)),
        None,
    )
    detail = _certbot_detail(output)
    where = site.certbot_dir / "logs" if site.certbot_dir else Path("/var/log/letsencrypt")
    if reason is None:
        reason = "certbot failed"
    return (
        f"no certificate for {site.domain}: {reason}. The site is as it was (nginx serves the previous pair).\n"
        f"certbot said: {detail}\n(full log: {where}/letsencrypt.log)"
    )


def _certbot_detail(output: str) -> str:
    """certbot's most telling lines, without its advice boilerplate."""
    keep = [
        line.strip()
        for line in output.splitlines()
        if re.search(r"Detail:|Type:|Error|error|Domain:|failed|refused|Could not", line)
        and "Ask for help" not in line
        and "--debug" not in line
    ]
    if keep:
        text = " | ".join(dict.fromkeys(keep))
    elif output.strip():
        text = output.strip().splitlines()[-1]
    else:
        text = "(nothing)"
    return text[:1200]


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
    hook = next((line.split("=", 1)[1].strip() for line in _lines(conf) if line.startswith("renew_hook")), "")
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


def _lines(path: Path) -> list[str]:
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
        problems.append(f"nothing answers TLS at {_join(reach, profile.proxy.https_port)}")
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
