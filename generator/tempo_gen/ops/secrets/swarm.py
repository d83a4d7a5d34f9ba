"""The deployment's Swarm secrets: create, check and rotate them with the Docker SDK, never showing a value.

Swarm secrets cannot change, so each is versioned (<name>_<secret>_v<N>, N from
the profile's secrets.versions) and a rotation creates version N+1, moves the
services onto it, removes version N and records N+1 in the profile file, which
is then rendered and committed like any other change. The secrets carry
tempo-gen's own label, not the stack's namespace label: `docker stack rm` would
delete those, and with them the only copy of the database password.

Database rotation keeps the order of compose mode (rotation.py): the
new password is set inside the running Postgres as a SCRAM verifier first
(authenticated with the current one, read from Postgres's own copy), then the
API is moved onto it (`docker service update --secret-rm/--secret-add`, which
waits until the new task is healthy); if the API cannot move, it is rolled back
and the old password is set again. Once the API runs on the new secret the
profile records its version. Postgres is moved last (it reads the file only to
initialise an empty volume) so the old secret is no longer used and can go.
The proxy is not touched: it re-resolves the API's name (Docker's DNS, a few
seconds' validity), so it follows the new task to its new address.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.errors import DeploymentError, EditError, Problem, ProfileError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.running.swarm import SwarmProject, swarm_client
from tempo_gen.ops.secrets.rotation import set_db_password
from tempo_gen.ops.secrets.store import Created, SecretProblem, secret_to_rotate
from tempo_gen.ops.secrets.values import SECRET_NAMES, new_value, weaknesses
from tempo_gen.profile.edit import set_scalars
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.safe_fs import stage_beside
from tempo_gen.targets.swarm_stack import LABEL, secret_name, service_name

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.secrets import Secret

_LABEL_SECRET = "org.tempo-gen.secret"
_LABEL_VERSION = "org.tempo-gen.version"


def _find(client: DockerClient, name: str) -> Secret | None:
    """The secret named exactly `name` (the API filters by prefix), or None."""
    return next((s for s in client.secrets.list(filters={"name": name}) if s.name == name), None)


def _create(client: DockerClient, profile: Profile, secret: str, version: int, value: str) -> Secret:
    labels = {LABEL: profile.name, _LABEL_SECRET: secret, _LABEL_VERSION: str(version)}
    return client.secrets.create(name=secret_name(profile, secret, version), data=value.encode(), labels=labels)


def init_secrets(profile: Profile, client: DockerClient) -> list[Created]:
    """Create every missing secret of the profile's versions from fresh random values; never replace one."""
    import docker

    result: list[Created] = []
    for secret in SECRET_NAMES:
        name = secret_name(profile, secret)
        where = f"Swarm secret {name}"
        if _find(client, name) is not None:
            result.append(Created(where, False))
            continue
        try:
            _create(client, profile, secret, getattr(profile.secrets.versions, secret), new_value())
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: created meanwhile by someone else; kept
                raise DeploymentError(f"creating Swarm secret {name} failed: {exc.explanation}") from None
            result.append(Created(where, False))
            continue
        result.append(Created(where, True))
    return result


def check_secrets(profile: Profile, client: DockerClient) -> list[SecretProblem]:
    """Missing secrets, secrets tempo-gen did not make, and leftovers of an unfinished rotation.

    Swarm never returns a secret's value, so strength is guaranteed by creation
    (`tempo-gen secrets init`), not checked here."""
    problems: list[SecretProblem] = []
    for secret in SECRET_NAMES:
        version = getattr(profile.secrets.versions, secret)
        name = secret_name(profile, secret)
        found = _find(client, name)
        if found is None:
            problems.append(SecretProblem(f"Swarm secret {name}", "missing (run `tempo-gen secrets init`)"))
        elif found.attrs["Spec"].get("Labels", {}).get(LABEL) != profile.name:
            problems.append(
                SecretProblem(
                    f"Swarm secret {name}",
                    f"not created by tempo-gen (no {LABEL} label): its strength is "
                    "unknown; remove it and run `tempo-gen secrets init`",
                )
            )
        for other in client.secrets.list(filters={"label": f"{LABEL}={profile.name}"}):
            labels = other.attrs["Spec"].get("Labels", {})
            if labels.get(_LABEL_SECRET) == secret and labels.get(_LABEL_VERSION) != str(version):
                problems.append(
                    SecretProblem(
                        f"Swarm secret {other.name}",
                        f"version {labels.get(_LABEL_VERSION)} of {secret} is still "
                        f"there, the profile uses {version}: an unfinished rotation?",
                    )
                )
    return problems


def rotate(loaded: LoadedProfile, root: Path, which: str, client: DockerClient) -> str:
    """Rotate the JWT key (`jwt`) or the database password (`db`) of the running stack; return the new secret's name."""
    profile = loaded.profile
    secret = secret_to_rotate(which)
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
    _move(stack, "api", old, new, undo)
    # The API runs on the new secret: from here on the profile must name it, whatever else fails.
    _write_profile(loaded, root, recorded, secret, version + 1)
    try:
        if secret == "db_password":
            # Postgres reads its copy only to initialise an empty volume; moving it frees the old secret.
            stack.swap_secret("postgres", old, new)
            stack.wait_healthy("postgres")
        stack.wait_healthy("api")
        if (previous := _find(client, old)) is not None:
            previous.remove()
    except Exception as exc:
        raise DeploymentError(
            f"the API uses {new} and {loaded.display_path} records it, but finishing failed: {exc}; "
            f"run `tempo-gen render`, deploy the stack file, then `docker secret rm {old}`"
        ) from None
    return new


def _set_in_postgres(stack: SwarmProject, value: str, client: DockerClient, new: str) -> Callable[[], None]:
    """Make `value` the database password inside the running Postgres; return how to undo that."""
    code, current = stack.exec_with_stdin("postgres", ["cat", "/run/secrets/db_password"], "")
    current = current.strip()
    try:
        if code != 0 or weaknesses("db_password", current):
            raise DeploymentError("cannot read Postgres's current password from its secret; nothing was changed")
        set_db_password(stack, authenticate_with=current, verifier_for=value)
    except BaseException:
        _remove(client, new)
        raise
    return lambda: set_db_password(stack, authenticate_with=value, verifier_for=current)


def _move(stack: SwarmProject, service: str, old: str, new: str, undo: Callable[[], None]) -> None:
    """Swap the secret of `service`; on failure roll the service back, undo, and drop the new secret."""
    try:
        stack.swap_secret(service, old, new)
        stack.wait_healthy(service)
    except BaseException as failure:
        problems: list[str] = []
        steps: list[Callable[[], None]] = [
            lambda: stack.roll_back(service),
            undo,
            lambda: stack.wait_healthy(service),
            lambda: _remove(stack.client, new),
        ]
        for step in steps:
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


def _remove(client: DockerClient, name: str) -> None:
    """Remove Swarm secret `name` when it exists."""
    if (found := _find(client, name)) is not None:
        found.remove()


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
    temp: Path | None = None
    try:
        temp = stage_beside(path, "rotate-tmp", text.encode("utf-8"))
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
        if temp is not None:
            temp.unlink(missing_ok=True)


class SwarmStore:
    """The secret store of deploy.mode swarm: versioned Swarm secrets, the profile recording their versions."""

    def __init__(self, loaded: LoadedProfile, root: Path):
        self.loaded = loaded
        self.root = root
        self._client: DockerClient | None = None

    @property
    def client(self) -> DockerClient:
        """The Swarm manager, reached on first use (and checked to be one)."""
        if self._client is None:
            self._client = swarm_client()
        return self._client

    def init(self) -> list[Created]:
        return init_secrets(self.loaded.profile, self.client)

    def init_hints(self) -> list[str]:
        return []  # the engine owns Swarm secrets; each service's copy gets its owner from the stack file

    def check(self) -> list[SecretProblem]:
        return check_secrets(self.loaded.profile, self.client)

    def rotate(self, which: str) -> list[str]:
        jwt = secret_to_rotate(which) == "jwt_key"
        created = rotate(self.loaded, self.root, which, self.client)
        return [
            f"{'JWT key' if jwt else 'Database password'} rotated: the services use Swarm secret "
            f"{created}{'; every session has ended, log in again' if jwt else ''}.",
            f"{self.loaded.display_path} records the new version: run `tempo-gen render` and commit profiles/ "
            "and out/.",
        ]
