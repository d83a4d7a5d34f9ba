"""`tempo-gen cert issue` and `cert status` on profiles they cannot act on, and status's findings: no engine,
no ACME server (test_cert_acme.py runs them against pebble)."""

from __future__ import annotations

import datetime
from pathlib import Path

import trustme

from support.project import VALID_PROFILE, RunCli
from support.proxy import free_ports
from tempo_gen.ops.certificates import OVERDUE_DAYS, CertificateInfo, describe, expiry_problems

NOW = datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC)


def info(days: float, names: tuple[str, ...] = ("tempo.example.com",), issuer: str = "CN=CA") -> CertificateInfo:
    return CertificateInfo("CN=site", issuer, names, 1, NOW + datetime.timedelta(days=days), "test")


def test_issue_needs_a_rendered_bundle(cli: RunCli, demo: Path) -> None:
    project = demo
    result = cli("cert", "issue", str(project / "profiles" / "demo.yaml"))
    assert result.exit_code == 2
    assert "proxy/certbot-deploy-hook.sh is missing: run `tempo-gen render` first" in result.output


def test_issue_refuses_traefik_and_other_sources(cli: RunCli, project: Path) -> None:
    traefik = VALID_PROFILE.replace("proxy:\n", "proxy:\n  kind: traefik\n")
    (project / "profiles" / "demo.yaml").write_text(traefik)
    result = cli("cert", "issue", str(project / "profiles" / "demo.yaml"))
    assert result.exit_code == 2 and "Traefik gets and renews its certificate itself" in result.output
    files = VALID_PROFILE.replace(
        "proxy:\n",
        "proxy:\n  tls:\n    certificate: {source: files, cert_file: /c.pem, key_file: /k.pem}\n",
    )
    (project / "profiles" / "demo.yaml").write_text(files)
    result = cli("cert", "issue", str(project / "profiles" / "demo.yaml"))
    assert result.exit_code == 2 and "`cert issue` is for source: acme" in result.output


def test_status_of_a_site_that_serves_nothing_exits_1(cli: RunCli, project: Path) -> None:
    (port,) = free_ports(1)
    text = (
        "name: demo\ndomain: tempo.example.com\nenvironment: development\n"
        f"proxy:\n  placement: host\n  publish_addresses: [127.0.0.1]\n  https_port: {port}\n"
    )
    (project / "profiles" / "demo.yaml").write_text(text)
    result = cli("cert", "status", str(project / "profiles" / "demo.yaml"))
    assert result.exit_code == 1
    assert f"nothing answers TLS at 127.0.0.1:{port}" in result.output
    assert "renewal    NOT SCHEDULED" in result.output


def test_expiry_findings() -> None:
    assert expiry_problems(info(60), "tempo.example.com", NOW) == []
    assert expiry_problems(info(20), "tempo.example.com", NOW) == []  # in the window, certbot is on it
    overdue = expiry_problems(info(OVERDUE_DAYS - 1), "tempo.example.com", NOW)
    assert len(overdue) == 1 and overdue[0].startswith("renewal overdue: 13.0 days left")
    assert expiry_problems(info(-1), "tempo.example.com", NOW) == ["expired on 2026-12-04"]
    assert "does not cover tempo.example.com" in expiry_problems(info(60, ("other.org",)), "tempo.example.com", NOW)[0]
    assert "self-signed" in expiry_problems(info(60, issuer="CN=site"), "tempo.example.com", NOW)[0]
    assert expiry_problems(None, "tempo.example.com", NOW) == ["no certificate is served"]


def test_describe_reads_names_issuer_and_expiry() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("tempo.example.com", "www.example.com")
    found = describe(leaf.cert_chain_pems[0].bytes(), "pem")
    assert found.names == ("tempo.example.com", "www.example.com") and not found.self_signed
    assert "trustme" in found.issuer and found.days_left() > 30


def test_audit_live_reports_a_site_that_serves_nothing(cli: RunCli, project: Path) -> None:
    (port,) = free_ports(1)
    text = (
        "name: demo\ndomain: tempo.example.com\nenvironment: development\n"
        f"proxy:\n  placement: host\n  publish_addresses: [127.0.0.1]\n  https_port: {port}\n"
    )
    (project / "profiles" / "demo.yaml").write_text(text)
    result = cli("audit", "--live", "--strict", str(project / "profiles" / "demo.yaml"))
    assert result.exit_code == 1
    assert f"certificate: nothing answers TLS at 127.0.0.1:{port}" in result.output
    assert "certificate: nothing renews it" in result.output
    assert "certificate:" not in cli("audit", str(project / "profiles" / "demo.yaml")).output


def test_a_lineage_from_another_directory_is_replaced(tmp_path: Path) -> None:
    """A staging dry run, then the profile names production: `cert issue` must not keep the staging certificate."""
    from support.nginx import make_profile
    from tempo_gen.models.tls import LETS_ENCRYPT, LETS_ENCRYPT_STAGING
    from tempo_gen.ops.certificates import NginxSite, certbot_command, directory_changed
    from tempo_gen.targets import nginx

    profile = make_profile()
    site = NginxSite(profile, nginx.runtime_for(profile), tmp_path / "bundle", certbot_dir=tmp_path / "certbot")
    assert directory_changed(site) == ""
    renewal = tmp_path / "certbot" / "config" / "renewal"
    renewal.mkdir(parents=True)
    (renewal / "tempo.test.conf").write_text(f"[renewalparams]\nserver = {LETS_ENCRYPT_STAGING}\n")
    assert directory_changed(site) == LETS_ENCRYPT_STAGING
    (renewal / "tempo.test.conf").write_text(f"[renewalparams]\nserver = {LETS_ENCRYPT}\n")
    assert directory_changed(site) == ""
    command = certbot_command(site, force=True)
    assert "--force-renewal" in command and "--keep-until-expiring" not in command
    assert command[command.index("--server") + 1] == LETS_ENCRYPT
