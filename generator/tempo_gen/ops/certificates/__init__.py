"""The site's certificate: `cert issue` gets it through ACME (issue.py), `cert status` and `audit --live`
say what is served and what renews it (status.py)."""

from tempo_gen.ops.certificates.certbot import certbot_command, directory_changed
from tempo_gen.ops.certificates.issue import issue, wait_served
from tempo_gen.ops.certificates.site import NginxSite, nginx_site
from tempo_gen.ops.certificates.status import (
    OVERDUE_DAYS,
    CertificateInfo,
    certificate_findings,
    describe,
    expiry_problems,
    read_certificate,
    served_certificate,
    status,
)

__all__ = [
    "OVERDUE_DAYS",
    "CertificateInfo",
    "NginxSite",
    "certbot_command",
    "certificate_findings",
    "describe",
    "directory_changed",
    "expiry_problems",
    "issue",
    "nginx_site",
    "read_certificate",
    "served_certificate",
    "status",
    "wait_served",
]
