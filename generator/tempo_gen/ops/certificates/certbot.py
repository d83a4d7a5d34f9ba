"""certbot for one site: the command, its environment, the deploy hook by hand, and its failures in plain words."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tempo_gen.errors import DeploymentError
from tempo_gen.ops.certificates.site import CERTBOT_TIMEOUT, NginxSite
from tempo_gen.ops.certificates.status import config_lines


def directory_changed(site: NginxSite) -> str:
    """The directory certbot's existing lineage for the site came from, when the profile now names another
    (a staging dry run, then production); '' otherwise."""
    conf = site.lineage().parent.parent / "renewal" / f"{site.domain}.conf"
    server = next((line.split("=", 1)[1].strip() for line in config_lines(conf) if line.startswith("server ")), "")
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
