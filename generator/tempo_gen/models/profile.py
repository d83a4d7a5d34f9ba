"""The profile root: one Tempo deployment, and the rules that span its sections."""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tempo_gen.models.base import Domain, RuleViolations, Slug, StrictModel, Violation, image_parts
from tempo_gen.models.containers import Containers, Deploy
from tempo_gen.models.host.backup import Backup
from tempo_gen.models.host.firewall import Firewall
from tempo_gen.models.host.monitoring import Monitoring
from tempo_gen.models.proxy import Proxy
from tempo_gen.models.tempo import Tempo
from tempo_gen.policy.ports import IMPORT_PORT

_DIRECTORY = re.compile(r"/?[A-Za-z0-9._@+-]+(?:/[A-Za-z0-9._@+-]+)*/?")


class SecretVersions(StrictModel):
    """Swarm secrets are immutable: each one is named <name>_<secret>_v<version>, and a rotation creates the next."""

    db_password: int = Field(
        default=1,
        ge=1,
        le=9999,
        description=("Version of the database password's Swarm secret (`tempo-gen secrets rotate db` raises it)."),
    )
    jwt_key: int = Field(
        default=1,
        ge=1,
        le=9999,
        description=("Version of the JWT key's Swarm secret (`tempo-gen secrets rotate jwt` raises it)."),
    )
    tls: int = Field(
        default=1,
        ge=1,
        le=9999,
        description=(
            "Version of the Swarm secrets `docker stack deploy` makes from the certificate and key files: "
            "raise it (render, deploy) when the files change, e.g. after a renewal."
        ),
    )


class Secrets(StrictModel):
    """Where the secrets live: files on the deploying host (never inside out/ or git), or Swarm secrets."""

    dir: str | None = Field(
        None,
        description=(
            "Directory holding db_password and jwt_key (compose mode). Default: secrets/<name> beside profiles/."
        ),
    )
    versions: SecretVersions = Field(
        SecretVersions(), description=("Swarm mode only: which version of each secret the stack uses.")
    )
    max_age_days: int = Field(
        default=180,
        ge=1,
        le=3650,
        description=(
            "Rotate each secret at least this often (`secrets rotate`): `audit --live` reports an older one as overdue."
        ),
    )

    @field_validator("dir")
    @classmethod
    def _relative_or_absolute_path(cls, value: str | None) -> str | None:
        if value is None:
            return value
        # Written into compose.yaml and .gitignore: only characters neither can misread.
        if not _DIRECTORY.fullmatch(value):
            raise ValueError(f"{value!r} is not a usable directory path: letters, digits and . _ - @ + between slashes")
        # `..` lets a profile aim init's writes and chmod at any folder beside the project; `/` is every folder.
        if ".." in value.split("/"):
            raise ValueError(f"{value!r} climbs with `..`; name the folder directly (an absolute path if outside)")
        if PurePosixPath(value).is_absolute() and set(value) <= {"/", "."}:
            raise ValueError(f"{value!r} is the file system root; secrets need a folder of their own")
        return value


class Profile(StrictModel):
    """One Tempo deployment."""

    extends: str | None = Field(
        None, description=("Path of a base profile (relative to this file) deep-merged under this one; lists replace.")
    )
    name: Slug = Field(
        description=("Deployment name: out/<name>/, the Compose project (or Swarm stack) name and the secrets folder.")
    )
    domain: Domain = Field(description="Public host name Tempo is served on.")
    environment: Literal["production", "development"] = Field(
        "production",
        description=("`development` accepts plain-http origins, loopback publishing and self-signed certificates."),
    )
    deploy: Deploy = Deploy()
    tempo: Tempo = Tempo()
    containers: Containers = Containers()
    proxy: Proxy = Proxy()
    secrets: Secrets = Secrets()
    firewall: Firewall = Firewall()
    monitoring: Monitoring = Monitoring()
    backup: Backup = Backup()

    @property
    def origin(self) -> str:
        return f"https://{self.domain}"

    @property
    def cors_origins(self) -> list[str]:
        return self.tempo.cors_origins or [self.origin]

    @property
    def secrets_dir(self) -> PurePosixPath:
        return PurePosixPath(self.secrets.dir or f"secrets/{self.name}")

    def images(self) -> dict[str, str]:
        """Every image the deployment runs or builds from, by service."""
        refs = {service: self.tempo.image(service) for service in ("api", "frontend", "postgres")}
        if proxy := self.proxy.image_ref():
            refs["proxy"] = proxy
        return refs

    def unpinned_images(self) -> list[str]:
        return [service for service, ref in self.images().items() if image_parts(ref)[2] is None]

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Profile:
        """What Tempo's security guide forbids, unless an explicit field allows it."""
        violations: list[Violation] = []
        production = self.environment == "production"
        for i, origin in enumerate(self.tempo.cors_origins):
            if production and origin.startswith("http://"):
                violations.append(
                    (("tempo", "cors_origins", i), f"{origin!r} is plain http; production origins must be https")
                )
        cookie_domain = self.tempo.cookie_domain
        if cookie_domain and not (self.domain == cookie_domain or self.domain.endswith(f".{cookie_domain}")):
            violations.append(
                (
                    ("tempo", "cookie_domain"),
                    f"{cookie_domain} is neither {self.domain} nor a parent of it: browsers would drop the cookie",
                )
            )
        unpinned = self.unpinned_images()
        if production and unpinned and not self.tempo.allow_unpinned:
            violations.append(
                (
                    ("tempo", "images"),
                    f"{', '.join(unpinned)} not pinned by sha256 digest; run `tempo-gen lock` "
                    "or set tempo.allow_unpinned: true (audit reports it)",
                )
            )
        if self.proxy.kind != "none" and self.proxy.placement == "container":
            if production and not self.proxy.publish_addresses:
                violations.append(
                    (
                        ("proxy", "publish_addresses"),
                        "required for a production proxy container: the host address(es) to publish "
                        "80/443 on, e.g. [203.0.113.10] (0.0.0.0 is allowed but audit reports it)",
                    )
                )
            for i, address in enumerate(self.proxy.publish_addresses):
                if production and address.is_loopback:
                    violations.append(
                        (
                            ("proxy", "publish_addresses", i),
                            f"{address} is loopback: a production site would be unreachable",
                        )
                    )
        if production and self.proxy.kind != "none" and self.proxy.tls.certificate.source == "self-signed":
            violations.append(
                (
                    ("proxy", "tls", "certificate", "source"),
                    "self-signed certificates are for environment: development only; use acme or files in production",
                )
            )
        if self.proxy.kind != "none" and self.tempo.release.import_port:
            for port in ("http_port", "https_port"):
                if getattr(self.proxy, port) == IMPORT_PORT:
                    violations.append(
                        (
                            ("proxy", port),
                            f"{IMPORT_PORT} is where Tempo {self.tempo.version}'s browser sends bulk imports: "
                            "the proxy serves that port itself",
                        )
                    )
        directory = self.proxy.tls.certificate.acme_directory
        if production and self.proxy.tls.certificate.source == "acme" and not directory.startswith("https://"):
            violations.append(
                (
                    ("proxy", "tls", "certificate", "acme_directory"),
                    f"{directory!r} is plain http; a production ACME directory must be https",
                )
            )
        violations += self._swarm_rules()
        firewall = self.firewall
        if firewall.enabled:
            if production and not firewall.admin_cidrs and firewall.vpn is None:
                violations.append(
                    (
                        ("firewall", "admin_cidrs"),
                        "required in production (or set firewall.vpn): without it SSH would be open to the world; "
                        "e.g. [198.51.100.0/24, 2001:db8:100::/48]",
                    )
                )
            if production and not firewall.allow_world_admin:
                violations.extend(_world_admin_rules(firewall.admin_cidrs))
            if self.proxy.kind != "none" and firewall.ssh_port in (self.proxy.http_port, self.proxy.https_port):
                violations.append((("firewall", "ssh_port"), f"{firewall.ssh_port} is also the proxy's HTTP(S) port"))
            if self.proxy.kind != "none" and self.tempo.release.import_port and firewall.ssh_port == IMPORT_PORT:
                violations.append(
                    (
                        ("firewall", "ssh_port"),
                        f"{IMPORT_PORT} is the proxy's import port on Tempo {self.tempo.version}",
                    )
                )
        if violations:
            raise RuleViolations(violations)
        return self

    def _swarm_rules(self) -> list[Violation]:
        """Swarm publishes on every interface and keeps secrets in the swarm: say so, or refuse."""
        if self.deploy.mode != "swarm":
            return [(("deploy", "nodes"), "nodes are a Swarm's: deploy.nodes needs deploy.mode: swarm")] * bool(
                self.deploy.nodes
            )
        violations: list[Violation] = []
        if self.proxy.kind == "none" or self.proxy.placement != "container":
            violations.append(
                (
                    ("deploy", "mode"),
                    "swarm needs the proxy container (proxy.placement: container): Swarm "
                    "cannot publish on 127.0.0.1, so the frontend and API would be published on every interface",
                )
            )
        for i, address in enumerate(self.proxy.publish_addresses):
            if not address.is_unspecified:
                violations.append(
                    (
                        ("proxy", "publish_addresses", i),
                        f"{address}: Swarm cannot publish on one address, "
                        "it listens on every interface (IPv4 and IPv6); write 0.0.0.0 (audit reports it) "
                        "and restrict access with the firewall",
                    )
                )
        if self.secrets.dir is not None:
            violations.append(
                (
                    ("secrets", "dir"),
                    "swarm mode keeps the secrets in the swarm (`tempo-gen secrets init`); "
                    "secrets.dir is for compose mode",
                )
            )
        if self.deploy.nodes:
            violations += self._node_rules()
        return violations

    def _node_rules(self) -> list[Violation]:
        """A multi-node Swarm: Postgres pinned with its volume, the proxy on edge nodes, each node once."""
        nodes = self.deploy.nodes
        violations: list[Violation] = []
        for field in ("hostname", "address"):
            seen: set[object] = set()
            for i, node in enumerate(nodes):
                if getattr(node, field) in seen:
                    violations.append(((("deploy", "nodes", i, field)), f"{getattr(node, field)} is listed twice"))
                seen.add(getattr(node, field))
        postgres = [node.hostname for node in nodes if "postgres" in node.roles]
        if len(postgres) != 1:
            violations.append(
                (
                    ("deploy", "nodes"),
                    "exactly one node needs roles: [postgres] (its volume stays on that node; unpinned, "
                    f"Postgres would restart elsewhere on an empty volume); found {len(postgres)}",
                )
            )
        if not any("edge" in node.roles for node in nodes):
            violations.append(
                (("deploy", "nodes"), "no node has roles: [edge]: nothing would say where the site's address is")
            )
        if self.proxy.tls.certificate.source == "acme":
            violations.append(
                (
                    ("proxy", "tls", "certificate", "source"),
                    "a multi-node Swarm takes the certificate from files (source: files) that `docker stack "
                    "deploy` turns into Swarm secrets; ACME on a cluster is not supported",
                )
            )
        return violations


def _world_admin_rules(cidrs: list[str]) -> list[Violation]:
    """SSH from the whole internet, written as /0 or as networks that add up to it (0.0.0.0/1 + 128.0.0.0/1)."""
    fix = "list your admin networks, use firewall.vpn, or set firewall.allow_world_admin: true"
    found: list[Violation] = [
        (("firewall", "admin_cidrs", i), f"{cidr} lets the whole internet reach SSH; {fix}")
        for i, cidr in enumerate(cidrs)
        if cidr.endswith("/0")
    ]
    networks = [ipaddress.ip_network(cidr) for cidr in cidrs]
    for family in (ipaddress.IPv4Network, ipaddress.IPv6Network):
        same = [n for n in networks if isinstance(n, family)]
        whole = [n for n in ipaddress.collapse_addresses(same) if n.prefixlen == 0]  # type: ignore[type-var]
        if whole and not found:
            found.append(
                (
                    ("firewall", "admin_cidrs"),
                    f"together these networks are {whole[0]}: the whole internet could reach SSH; {fix}",
                )
            )
    return found
