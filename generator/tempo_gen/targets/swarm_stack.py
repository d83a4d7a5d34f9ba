"""Swarm mode (deploy.mode: swarm): the names of the deployment's Swarm objects, and compose.yaml as a stack file.

The stack file is the rendered Compose file converted key by key, so both modes
share one hardened definition. Every service key has a deliberate treatment
below (kept, converted, or dropped with the reason); a key without one stops
the render, so a template change cannot silently lose a protection in Swarm.
Measured on Docker 20.10.24 (API 1.41) with the Docker CLI 20.10 and 28:

- Honoured as in Compose: user, read_only, cap_drop, init, healthcheck (a task
  counts as running once healthy), logging, stop_grace_period,
  deploy.resources.limits (memory, cpus and pids), long-syntax secrets with
  uid/gid/mode (each service gets its own copy, owned by its own uid, 0400).
- `docker stack deploy` cannot build: each `build:` becomes an `image:` named
  after the build context's content (tempo-gen.invalid/<name>-<service>:<hash>,
  see image_name), built beforehand with the commands in the file's header.
- Refused by the stack schema: top-level `name` (the stack name is given to
  `docker stack deploy`), `pids_limit` (deploy.resources.limits.pids carries
  the limit), `depends_on` with conditions (Swarm has no start order: the API
  exits while Postgres is not ready and the restart policy starts it again).
- Ignored, with a warning: `restart` (becomes deploy.restart_policy) and
  `security_opt` (Swarm services on API 1.41 have no no-new-privileges: dropped,
  and reported by `tempo-gen audit`). Ignored silently: short-syntax `tmpfs`
  (becomes `type: tmpfs` volumes, which keep their size; the CLI drops a tmpfs
  `mode` and Swarm has no owner for it, so a tmpfs is root's with the mode of the
  image's folder).
- Ports: Swarm cannot publish on one address; the proxy publishes in `host`
  mode (no ingress mesh: clients' addresses reach the proxy, its rate limits
  keep working) on every interface, IPv4 and IPv6. Networks are overlay
  networks, `internal` ones kept internal.
- Files reach every node through Swarm itself: the proxy's configuration
  folder becomes one Swarm config per file (named after its content, so a
  change is a new config that `docker stack deploy` rolls out; configs are
  immutable like secrets), and on a multi-node Swarm the certificate and key
  become secrets `docker stack deploy` makes from the files on the manager
  (<name>_tls_{cert,key}_v<secrets.versions.tls>). What stays a bind mount is
  per-node state (the access log fail2ban reads, the certificate folders of a
  single node); Swarm rejects a task whose host path does not exist (Compose
  creates it), so the file's header lists them.
- Placement (deploy.nodes): Postgres is constrained to the node labelled
  <label prefix>.postgres (its volume lives there and nowhere else), the proxy
  runs in global mode on the nodes labelled <label prefix>.edge, so the site's
  address is the edge nodes' and never moves; `tempo-gen swarm prepare` sets
  the labels.
- Secrets are external (created by `tempo-gen secrets init`, never by the
  stack, so `docker stack rm` cannot delete them) and versioned, because a
  Swarm secret cannot change: <name>_<secret>_v<secrets.versions.<secret>>.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from typing import Any

import yaml

from tempo_gen.bundle.files import Bundle, RenderedFile
from tempo_gen.bundle.jinja import expand
from tempo_gen.errors import RenderError
from tempo_gen.models.base import size_bytes
from tempo_gen.models.profile import Profile

STACK_FILE = "compose.yaml"
BUILT_REGISTRY = "tempo-gen.invalid"
LABEL = "org.tempo-gen.deployment"
"""Label on every Swarm secret tempo-gen creates; its value is the deployment name."""
SECRET_MODE = 0o400
CONFIG_MODE = 0o444
# The Compose file format the stack file declares: the newest one the Docker CLI 20.10
# (Debian 12's docker.io) knows; the CLI 28 accepts it too.
STACK_VERSION = "3.9"


def stack_name(profile: Profile) -> str:
    return profile.name


def service_name(profile: Profile, service: str) -> str:
    """The Swarm service `docker stack deploy` creates for a Compose service."""
    return f"{profile.name}_{service}"


def secret_name(profile: Profile, secret: str, version: int | None = None) -> str:
    """The Swarm secret holding `secret` (db_password or jwt_key) at `version` (default: the profile's)."""
    if version is None:
        version = getattr(profile.secrets.versions, secret)
    return f"{profile.name}_{secret}_v{version}"


def node_label(profile: Profile, role: str) -> str:
    """The node label that places a role's service (`postgres`, `edge`) of this deployment."""
    return f"org.tempo-gen.{profile.name}.{role}"


def image_name(profile: Profile, service: str, tag: str) -> str:
    """A locally built image's name. Before starting a task Swarm tries to pull its image's tag: under the
    reserved `.invalid` domain (RFC 2606) that pull can never reach a registry (Docker Hub included), so it
    cannot replace the local build with someone else's image; the failed pull is logged and the local image runs."""
    return f"{BUILT_REGISTRY}/{profile.name}-{service}:{tag}"


# What happens to each key of a Compose service in the stack file.
_KEPT = {
    "image",
    "user",
    "read_only",
    "cap_drop",
    "init",
    "environment",
    "networks",
    "volumes",
    "stop_grace_period",
    "healthcheck",
    "logging",
    "command",
}
_CONVERTED = {"build", "deploy", "restart", "tmpfs", "ports", "secrets"}
_DROPPED = {
    "pids_limit": "refused by the stack schema; deploy.resources.limits.pids sets the same limit",
    "depends_on": "Swarm has no start order; the restart policy retries until the dependency answers",
    "security_opt": "Swarm services on API 1.41 cannot set no-new-privileges (tempo-gen audit reports it)",
}
_RESTART: dict[str, dict[str, object]] = {
    "unless-stopped": {"condition": "any", "delay": "5s"},
    "always": {"condition": "any", "delay": "5s"},
    "on-failure:5": {"condition": "on-failure", "delay": "5s", "max_attempts": 5},
}


class _StackDumper(yaml.SafeDumper):
    """Block style, sequences indented under their key (yamllint's `indentation` rule), no aliases."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: object) -> bool:
        return True


def stack_bundle(bundle: Bundle, profile: Profile, header: str) -> Bundle:
    """`bundle` with compose.yaml replaced by the equivalent Swarm stack file."""
    compose = bundle.get(STACK_FILE)
    document = yaml.safe_load(compose.content)
    builds: list[tuple[str, str, str]] = []  # (image, dockerfile, context)
    services: dict[str, dict[str, Any]] = {}
    for service, spec in document["services"].items():
        services[service] = _service(profile, service, spec, bundle, builds)
    secrets: dict[str, Any] = {
        name: {"external": True, "name": secret_name(profile, name)} for name in document["secrets"]
    }
    configs: dict[str, Any] = {}
    if "proxy" in services:
        _files_through_swarm(profile, services["proxy"], bundle, configs, secrets)
    if profile.deploy.nodes:
        _place(profile, services)
    stack = {
        "version": STACK_VERSION,
        "services": services,
        "networks": {name: _network(spec) for name, spec in document["networks"].items()},
        "volumes": {name: spec or {} for name, spec in document["volumes"].items()},
        "secrets": secrets,
        **({"configs": configs} if configs else {}),
    }
    body = yaml.dump(stack, Dumper=_StackDumper, sort_keys=False, default_flow_style=False, width=1000)
    # Modes are decimal (yamllint forbids octal literals); say which octal mode each is.
    body = re.sub(r"^( +mode: )(\d+)$", lambda m: f"{m[1]}{m[2]}  # {int(m[2]):04o}", body, flags=re.M)
    binds = sorted(
        {
            str(v).split(":")[0]
            for s in services.values()
            for v in s.get("volumes", [])
            if isinstance(v, str) and v.startswith("/")
        }
    )
    text = _header(profile, header, builds, binds) + body
    files = [f for f in bundle if str(f.path) != STACK_FILE]
    return Bundle([*files, RenderedFile(compose.path, text, compose.mode)])


def _service(
    profile: Profile, service: str, spec: dict[str, Any], bundle: Bundle, builds: list[tuple[str, str, str]]
) -> dict[str, Any]:
    unknown = set(spec) - _KEPT - _CONVERTED - set(_DROPPED)
    if unknown:
        raise RenderError(
            f"compose.yaml: service {service} uses {', '.join(sorted(unknown))}, which the Swarm "
            "conversion does not know; decide how Swarm treats it in targets/swarm_stack.py"
        )
    uid, _, gid = str(spec["user"]).partition(":")
    result: dict[str, Any] = {}
    for key, value in spec.items():
        if key in _DROPPED:
            continue
        if key == "build":
            context = PurePosixPath(value["context"])
            image = image_name(profile, service, _context_hash(bundle, context))
            builds.append((image, str(context / value.get("dockerfile", "Dockerfile")), str(context)))
            result["image"] = image
        elif key == "restart":
            result.setdefault("deploy", {})["restart_policy"] = dict(_RESTART[value])
        elif key == "deploy":
            result.setdefault("deploy", {}).update({"endpoint_mode": profile.deploy.endpoint_mode, **value})
        elif key == "tmpfs":
            result.setdefault("volumes", []).extend(_tmpfs(entry) for entry in value)
        elif key == "volumes":
            result.setdefault("volumes", [])[:0] = value
        elif key == "ports":
            result["ports"] = _ports(value)
        elif key == "secrets":
            result["secrets"] = [
                {"source": name, "target": name, "uid": uid, "gid": gid or uid, "mode": SECRET_MODE} for name in value
            ]
        else:
            result[key] = value
    return result


def _files_through_swarm(
    profile: Profile, proxy: dict[str, Any], bundle: Bundle, configs: dict[str, Any], secrets: dict[str, Any]
) -> None:
    """Replace the proxy's bind mounts of rendered files (and, on several nodes, of the certificate) with
    Swarm configs and secrets, so a node needs no files of its own."""
    uid, _, gid = str(proxy["user"]).partition(":")
    owner = {"uid": uid, "gid": gid or uid}
    certificate = profile.proxy.tls.certificate
    tls_mounts = set(certificate.mounts(profile.domain)) if profile.deploy.nodes else set()
    kept: list[Any] = []
    for volume in proxy.get("volumes", []):
        source, _, rest = str(volume).partition(":") if isinstance(volume, str) else ("", "", "")
        if source.startswith("./"):
            folder, target = PurePosixPath(source[2:]), PurePosixPath(rest.split(":")[0])
            for file in bundle:
                if folder in file.path.parents:
                    relative = file.path.relative_to(folder)
                    key = f"{folder.name}_{str(relative).replace('/', '_')}"
                    digest = hashlib.sha256(f"{relative}\0".encode() + file.content.encode()).hexdigest()[:12]
                    configs[key] = {"name": f"{profile.name}_{folder.name}_{digest}", "file": f"./{file.path}"}
                    proxy.setdefault("configs", []).append(
                        {"source": key, "target": str(target / relative), **owner, "mode": CONFIG_MODE}
                    )
        elif source in tls_mounts:
            continue  # replaced by the pair's secrets below
        else:
            kept.append(volume)
    proxy["volumes"] = kept
    if tls_mounts:
        version = profile.secrets.versions.tls
        for part, path in zip(("cert", "key"), certificate.paths(profile.domain), strict=True):
            secrets[f"tls_{part}"] = {"file": path, "name": f"{profile.name}_tls_{part}_v{version}"}
            proxy.setdefault("secrets", []).append(
                {"source": f"tls_{part}", "target": path, **owner, "mode": SECRET_MODE}
            )


def _place(profile: Profile, services: dict[str, dict[str, Any]]) -> None:
    """Pin Postgres to its labelled node (with its volume) and run one proxy on every labelled edge node."""
    services["postgres"]["deploy"]["placement"] = {
        "constraints": [f"node.labels.{node_label(profile, 'postgres')} == true"]
    }
    if "proxy" in services:
        services["proxy"]["deploy"]["mode"] = "global"
        services["proxy"]["deploy"]["placement"] = {
            "constraints": [f"node.labels.{node_label(profile, 'edge')} == true"]
        }


def _context_hash(bundle: Bundle, context: PurePosixPath) -> str:
    """12 hex digits naming the content of a build context: a changed image gets a new tag, so a deploy rolls it out."""
    digest = hashlib.sha256()
    for file in bundle:
        if context in file.path.parents:
            digest.update(f"{file.path.relative_to(context)}\0{file.mode:o}\0".encode())
            digest.update(file.content.encode() + b"\0")
    return digest.hexdigest()[:12]


def _tmpfs(entry: str) -> dict[str, Any]:
    """`/path:size=64m,uid=..,gid=..,mode=..` as a tmpfs volume: Swarm keeps the size, not the owner."""
    target, _, options = entry.partition(":")
    size = dict(option.split("=", 1) for option in options.split(",") if option).get("size")
    mount: dict[str, Any] = {"type": "tmpfs", "target": target}
    if size:
        mount["tmpfs"] = {"size": size_bytes(size)}
    return mount


def _ports(entries: list[str]) -> list[dict[str, Any]]:
    """`address:published:target` as host-mode ports; Swarm binds every address (the profile must say 0.0.0.0)."""
    result: list[dict[str, Any]] = []
    for entry in entries:
        published, target = (int(part) for part in str(entry).rsplit(":", 2)[-2:])
        port = {"target": target, "published": published, "protocol": "tcp", "mode": "host"}
        if port not in result:
            result.append(port)
    return result


def _network(spec: dict[str, Any] | None) -> dict[str, Any]:
    spec = dict(spec or {})
    spec["driver"] = "overlay"
    return spec


def _header(profile: Profile, header: str, builds: list[tuple[str, str, str]], binds: list[str]) -> str:
    commands = [f"docker build -t {image} -f {dockerfile} {context}" for image, dockerfile, context in builds]
    commands.append(f"docker stack deploy --resolve-image never -c {STACK_FILE} {stack_name(profile)}")
    return expand(
        "compose/_stack-header.yaml.j2",
        {
            "bundle_header": header,
            "secrets": [secret_name(profile, s) for s in ("db_password", "jwt_key")],
            "binds": binds,
            "multi_node": bool(profile.deploy.nodes),
            "images": [image for image, _, _ in builds],
            "commands": commands,
        },
    )
