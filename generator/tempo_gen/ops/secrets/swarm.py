"""The deployment's Swarm secrets in the engine: create, check and rotate them with the Docker SDK, never showing a value.

Swarm secrets cannot change, so each is versioned (<name>_<secret>_v<N>, N from
the profile's secrets.versions) and a rotation creates version N+1, moves the
services onto it, removes version N and records N+1 in the profile file, which
is then rendered and committed like any other change. The secrets carry
tempo-gen's own label, not the stack's namespace label: `docker stack rm` would
delete those, and with them the only copy of the database password.

Database rotation keeps the order of compose mode (generator/rotation.py): the
new password is set inside the running Postgres as a SCRAM verifier first
(authenticated with the current one, read from Postgres's own copy), then the
API is moved onto it (`docker service update --secret-rm/--secret-add`, which
waits until the new task is healthy); if the API cannot move, it is rolled back
and the old password is set again. Once the API runs on the new secret the
profile records its version. Postgres is moved last (it reads the file only to
initialise an empty volume) so the old secret is no longer used and can go.
With endpoint_mode dnsrr the proxy is restarted too: nginx resolved the old
API task's address when it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tempo_gen.errors import DeploymentError, EditError, Problem, ProfileError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.compose_project import ComposeProject
from tempo_gen.ops.secrets.files import SECRET_NAMES, new_value, weaknesses
from tempo_gen.ops.secrets.rotation import set_db_password
from tempo_gen.profile.edit import set_scalars
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.targets.swarm_stack import LABEL, secret_name, service_name

UPDATE_TIMEOUT = 300  # seconds `docker service update` may take to converge
HEALTHY_TIMEOUT = 180
_LABEL_SECRET = "org.tempo-gen.secret"
_LABEL_VERSION = "org.tempo-gen.version"


def swarm_client():
    """A Docker SDK client of a Swarm manager."""
    import docker  # the SDK is only needed by commands that talk to the engine

    try:
        client = docker.from_env()
        info = client.info()
    except docker.errors.DockerException as exc:
        raise DeploymentError(f"cannot reach the Docker engine: {exc}") from None
    swarm = info.get("Swarm", {})
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise DeploymentError(
            "this Docker engine is not a Swarm manager (deploy.mode is swarm): run `docker swarm init` "
            "or point DOCKER_HOST at a manager"
        )
    return client


def _find(client, name: str):
    """The secret named exactly `name` (the API filters by prefix), or None."""
    return next((s for s in client.secrets.list(filters={"name": name}) if s.name == name), None)


def _create(client, profile: Profile, secret: str, version: int, value: str):
    labels = {LABEL: profile.name, _LABEL_SECRET: secret, _LABEL_VERSION: str(version)}
    return client.secrets.create(name=secret_name(profile, secret, version), data=value.encode(), labels=labels)


@dataclass(frozen=True)
class Created:
    name: str
    created: bool


def init_secrets(profile: Profile, client) -> list[Created]:
    """Create every missing secret of the profile's versions from fresh random values; never replace one."""
    import docker

    result = []
    for secret in SECRET_NAMES:
        name = secret_name(profile, secret)
        if _find(client, name) is not None:
            result.append(Created(name, False))
            continue
        try:
            _create(client, profile, secret, getattr(profile.secrets.versions, secret), new_value())
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: created meanwhile by someone else; kept
                raise DeploymentError(f"creating Swarm secret {name} failed: {exc.explanation}") from None
            result.append(Created(name, False))
            continue
        result.append(Created(name, True))
    return result


@dataclass(frozen=True)
class SwarmProblem:
    name: str
    problem: str


def check_secrets(profile: Profile, client) -> list[SwarmProblem]:
    """Missing secrets, secrets tempo-gen did not make, and leftovers of an unfinished rotation.

    Swarm never returns a secret's value, so strength is guaranteed by creation
    (`tempo-gen secrets init`), not checked here."""
    problems = []
    for secret in SECRET_NAMES:
        version = getattr(profile.secrets.versions, secret)
        name = secret_name(profile, secret)
        found = _find(client, name)
        if found is None:
            problems.append(SwarmProblem(name, "missing (run `tempo-gen secrets init`)"))
        elif found.attrs["Spec"].get("Labels", {}).get(LABEL) != profile.name:
            problems.append(
                SwarmProblem(
                    name,
                    f"not created by tempo-gen (no {LABEL} label): its strength is "
                    "unknown; remove it and run `tempo-gen secrets init`",
                )
            )
        for other in client.secrets.list(filters={"label": f"{LABEL}={profile.name}"}):
            labels = other.attrs["Spec"].get("Labels", {})
            if labels.get(_LABEL_SECRET) == secret and labels.get(_LABEL_VERSION) != str(version):
                problems.append(
                    SwarmProblem(
                        other.name,
                        f"version {labels.get(_LABEL_VERSION)} of {secret} is still "
                        f"there, the profile uses {version}: an unfinished rotation?",
                    )
                )
    return problems


class SwarmProject(ComposeProject):
    """The running stack: its services' current tasks take the place of Compose containers."""

    def __init__(self, profile: Profile, client):
        self.project = profile.name
        self.profile = profile
        self.bundle = None
        self.client = client

    def service(self, service: str):
        import docker

        try:
            return self.client.services.get(service_name(self.profile, service))
        except docker.errors.NotFound:
            raise DeploymentError(
                f"service {service_name(self.profile, service)} is not deployed (docker stack deploy first)"
            ) from None

    def container(self, service: str):
        import docker

        for task in self.service(service).tasks(filters={"desired-state": "running"}):
            container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if task["Status"]["State"] == "running" and container_id:
                try:
                    return self.client.containers.get(container_id)
                except docker.errors.NotFound:
                    continue
        raise DeploymentError(f"service {service_name(self.profile, service)} has no running task")

    def wait_healthy(self, service: str, timeout: float = HEALTHY_TIMEOUT) -> None:
        deadline, status = time.monotonic() + timeout, "no running task"
        while time.monotonic() < deadline:
            try:
                container = self.container(service)
                status = container.attrs["State"].get("Health", {}).get("Status", container.status)
            except DeploymentError:
                status = "no running task"
            if status == "healthy":
                return
            time.sleep(2)
        raise DeploymentError(f"{service} did not become healthy within {timeout:.0f}s (last status: {status})")

    def uses(self, service: str) -> list[dict]:
        """The secret references of a service's spec."""
        return self.service(service).attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []

    def swap_secret(self, service: str, old: str, new: str) -> None:
        """Move `service` from secret `old` to `new`, same file, owner and mode; wait until it converged."""
        reference = next((r for r in self.uses(service) if r["SecretName"] == old), None)
        if reference is None:
            raise DeploymentError(
                f"{service_name(self.profile, service)} does not use {old}: deploy the rendered stack "
                "file first, or the profile's secrets.versions do not match what runs"
            )
        file = reference["File"]
        add = f"source={new},target={file['Name']},uid={file['UID']},gid={file['GID']},mode={file['Mode']:#o}"
        _docker(
            "service",
            "update",
            "--detach=false",
            "--quiet",
            "--secret-rm",
            old,
            "--secret-add",
            add,
            service_name(self.profile, service),
        )

    def restart(self, service: str) -> None:
        """Replace the service's task (same spec) and wait until it converged."""
        _docker("service", "update", "--detach=false", "--quiet", "--force", service_name(self.profile, service))

    def roll_back(self, service: str) -> None:
        _docker(
            "service",
            "update",
            "--detach=false",
            "--quiet",
            "--rollback",
            service_name(self.profile, service),
            check=False,
        )


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    docker = shutil.which("docker")
    if docker is None:
        raise DeploymentError("the docker command is not installed (Swarm mode needs it for `docker service update`)")
    result = subprocess.run([docker, *args], capture_output=True, text=True, timeout=UPDATE_TIMEOUT)
    if check and result.returncode != 0:
        raise DeploymentError(f"docker {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result


def rotate(loaded: LoadedProfile, root: Path, which: str, client) -> str:
    """Rotate the JWT key (`jwt`) or the database password (`db`) of the running stack; return the new secret's name."""
    profile = loaded.profile
    secret = "jwt_key" if which == "jwt" else "db_password"
    version = getattr(profile.secrets.versions, secret)
    old, new = secret_name(profile, secret), secret_name(profile, secret, version + 1)
    if _find(client, old) is None:
        raise DeploymentError(f"Swarm secret {old} does not exist (run `tempo-gen secrets init`)")
    if _find(client, new) is not None:
        raise DeploymentError(
            f"Swarm secret {new} exists: a previous rotation did not finish; check which secret "
            f"the services use (docker service inspect), remove the unused one and record its "
            f"version in secrets.versions.{secret}"
        )
    recorded = _with_version(loaded, secret, version + 1)  # before anything changes: the profile can take it
    stack = SwarmProject(profile, client)
    consumers = ["api"] if secret == "jwt_key" else ["api", "postgres"]
    for service in consumers:
        if not any(r["SecretName"] == old for r in stack.uses(service)):
            raise DeploymentError(
                f"{service_name(profile, service)} does not use {old}: deploy the rendered stack file first"
            )
    value = new_value()
    _create(client, profile, secret, version + 1, value)
    undo = _set_in_postgres(stack, value, client, new) if secret == "db_password" else (lambda: None)
    _move(stack, "api", old, new, client, undo)
    # The API runs on the new secret: from here on the profile must name it, whatever else fails.
    _write_profile(loaded, root, recorded, secret, version + 1)
    try:
        if secret == "db_password":
            # Postgres reads its copy only to initialise an empty volume; moving it frees the old secret.
            stack.swap_secret("postgres", old, new)
            stack.wait_healthy("postgres")
        if profile.deploy.endpoint_mode == "dnsrr":
            # nginx resolved the old API task's address when it started; the new task has another one.
            stack.restart("proxy")
        stack.wait_healthy("api")
        _find(client, old).remove()
    except Exception as exc:
        raise DeploymentError(
            f"the API uses {new} and {loaded.display_path} records it, but finishing failed: {exc}; "
            f"run `tempo-gen render`, deploy the stack file, then `docker secret rm {old}`"
        ) from None
    return new


def _set_in_postgres(stack: SwarmProject, value: str, client, new: str):
    """Make `value` the database password inside the running Postgres; return how to undo that."""
    code, current = stack.exec_with_stdin("postgres", ["cat", "/run/secrets/db_password"], "")
    current = current.strip()
    try:
        if code != 0 or weaknesses("db_password", current):
            raise DeploymentError("cannot read Postgres's current password from its secret; nothing was changed")
        set_db_password(stack, authenticate_with=current, verifier_for=value)
    except BaseException:
        _find(client, new).remove()
        raise
    return lambda: set_db_password(stack, authenticate_with=value, verifier_for=current)


def _move(stack: SwarmProject, service: str, old: str, new: str, client, undo) -> None:
    """Swap the secret of `service`; on failure roll the service back, undo, and drop the new secret."""
    try:
        stack.swap_secret(service, old, new)
        stack.wait_healthy(service)
    except BaseException as failure:
        problems = []
        for step in (
            lambda: stack.roll_back(service),
            undo,
            lambda: stack.wait_healthy(service),
            lambda: _find(client, new) and _find(client, new).remove(),
        ):
            try:
                step()
            except Exception as exc:  # keep undoing; report everything
                problems.append(str(exc))
        if problems:
            raise DeploymentError(
                f"{failure}; undoing it failed too: {'; '.join(problems)} (check `docker service ps "
                f"{service_name(stack.profile, service)}` and which secret Postgres accepts)"
            ) from None
        raise


def _with_version(loaded: LoadedProfile, secret: str, version: int) -> str:
    """The profile file's text with secrets.versions.<secret>: <version>, every other byte kept."""
    try:
        return set_scalars(loaded.path.read_text(encoding="utf-8"), {("secrets", "versions", secret): version})
    except (OSError, EditError) as exc:
        raise DeploymentError(
            f"{loaded.display_path} cannot record the new secret version, so nothing was rotated: {exc}"
        ) from None


def _write_profile(loaded: LoadedProfile, root: Path, text: str, secret: str, version: int) -> None:
    """Replace the profile file with `text` once it loads with the new version."""
    path = loaded.path
    temp = path.with_name(f".{path.name}.rotate-tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        shutil.copymode(path, temp)
        if getattr(load_profile(temp, root).profile.secrets.versions, secret) != version:
            raise ProfileError(
                [Problem(loaded.display_path, None, f"secrets.versions.{secret}", "did not take the new version")]
            )
        os.replace(temp, path)
    except (OSError, ProfileError) as exc:
        raise DeploymentError(
            f"the stack now uses version {version}; set secrets.versions.{secret}: {version} in "
            f"{loaded.display_path} by hand, then render ({exc})"
        ) from None
    finally:
        temp.unlink(missing_ok=True)
