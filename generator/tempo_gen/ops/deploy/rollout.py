"""`tempo-gen deploy`: apply the committed bundle to the running Compose stack, or put the previous one back.

1. Refuse when out/<name> is not what the profile renders, when a secret fails
   its check, when an import is running, or when the last deploy was
   interrupted with a database rollback point still waiting.
2. When Tempo's release changes: the encrypted pre-deploy backup (ops/backup,
   so backup.recipients are needed), then stop the API and Postgres and keep a
   local copy of the database (snapshot.py) that a rollback puts back.
3. `compose up -d --build`: Compose recreates a service whose configuration or
   image changed; a service whose bind-mounted bundle files changed (the
   proxy's configuration) is recreated too, since Compose cannot see those.
4. Every service healthy, then the smoke test through the proxy (smoke.py).
Any failure rolls back: the previous images are tagged again, the database
snapshot put back when the release changed, and the last deployed bundle
(state.py) brought up; then the summary says what happened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.manifest import MANIFEST, recorded_hashes
from tempo_gen.bundle.pipeline import render_bundle
from tempo_gen.errors import DeploymentError, UsageError
from tempo_gen.ops.backup.take import require_recipients, take_backup
from tempo_gen.ops.deploy import snapshot, state
from tempo_gen.ops.deploy.compose import bind_sources, compose, container_ids, running_images, services, wait_healthy
from tempo_gen.ops.deploy.smoke import smoke_test
from tempo_gen.ops.running.compose import ComposeProject
from tempo_gen.ops.running.tempo_api import import_in_progress
from tempo_gen.ops.secrets import secret_store
from tempo_gen.policy.releases import release
from tempo_gen.profile.loader import LoadedProfile
from tempo_gen.reports.drift import check_bundle

if TYPE_CHECKING:
    from docker.models.containers import Container

Say = Callable[[str], object]


def preflight(loaded: LoadedProfile, root: Path, bundle: Path) -> list[RenderedFile]:
    """The refusals that need no engine: Swarm, drift between out/ and the profile, failing secrets."""
    profile = loaded.profile
    if profile.deploy.mode == "swarm":
        raise UsageError(
            f"{loaded.display_path}: deploy.mode is swarm; `tempo-gen deploy` drives Compose only for now "
            "(deploy the stack file with `docker stack deploy`)"
        )
    files = render_bundle(loaded, root, bundle)
    drift = check_bundle(files, bundle)
    if drift:
        listed = ", ".join(f"{d.kind} {d.path}" for d in drift[:8]) + (" ..." if len(drift) > 8 else "")
        raise UsageError(
            f"{bundle} is not what {loaded.display_path} renders ({listed}); run `tempo-gen render`, "
            "review and commit, then deploy"
        )
    problems = secret_store(loaded, root, bundle).check()
    if problems:
        listed = "; ".join(f"{p.where}: {p.problem}" for p in problems)
        raise UsageError(f"the secrets fail `tempo-gen secrets check` ({listed}); fix them, then deploy")
    return files


@dataclass
class Rollout:
    loaded: LoadedProfile
    root: Path
    bundle: Path
    files: list[RenderedFile]
    say: Say
    stack: ComposeProject = field(init=False)
    deployed: state.Deployed | None = field(init=False)

    def __post_init__(self) -> None:
        # Refused before the engine is asked anything.
        self.deployed = state.load(self.bundle)
        pending = snapshot.snapshot_path(self.bundle)
        if pending.exists():
            raise UsageError(
                f"{pending} is the database rollback point of a deploy that was interrupted: the database may "
                "hold a newer release's migrations. Deploy the release that made it again, or put it back by "
                "hand; delete the file to keep the current database"
            )
        self.stack = ComposeProject(self.loaded.profile.name, self.bundle)

    @property
    def name(self) -> str:
        return self.loaded.profile.name

    def refuse_while_busy(self) -> None:
        running = self.deployed.version if self.deployed else self.loaded.profile.tempo.version
        if not release(running).import_port and import_in_progress(self.stack):
            raise DeploymentError(
                "Tempo reports a bulk import in progress and a deploy restarts the API; wait until it finishes"
            )

    def run(self) -> list[str]:
        started = time.monotonic()
        self.refuse_while_busy()
        # What runs now; a service that does not run (stopped by an interrupted deploy) as last deployed.
        previous = {**(self.deployed.images if self.deployed else {}), **running_images(self.stack)}
        before = container_ids(self.stack)
        version = self.loaded.profile.tempo.version
        old_version = self.deployed.version if self.deployed else ("unknown" if previous else "none")
        release_changes = bool(previous) and old_version != version
        if release_changes:
            require_recipients(self.loaded.profile)  # a release change needs its pre-deploy backup: refused first
        taken: Path | None = None
        try:
            if release_changes:
                taken = self._pre_deploy_backup(self.deployed.version if self.deployed else None)
            self._apply(before)
        except BaseException as exc:
            self.say(f"deploy failed: {exc}")
            outcome = self._roll_back(previous, taken)
            raise DeploymentError(f"deploy of {self.name} failed ({exc}); {outcome}") from None
        after = container_ids(self.stack)
        state.save(self.bundle, self.files, version, running_images(self.stack))
        if taken is not None:
            snapshot.discard(taken)
        recreated = sorted(s for s in after if before.get(s) != after[s])
        kept = sorted(s for s in after if before.get(s) == after[s])
        return [
            f"deployed {self.name}: Tempo {old_version} -> {version}" if release_changes else f"deployed {self.name}",
            f"recreated: {', '.join(recreated) or 'nothing'}; unchanged: {', '.join(kept) or 'nothing'}",
            "database rollback point: " + ("taken, and removed after success" if taken else "not needed"),
            f"smoke test passed; took {time.monotonic() - started:.0f}s",
        ]

    def _pre_deploy_backup(self, running_version: str | None) -> Path | None:
        """The rollback points of a release change, taken before anything new runs: the encrypted backup
        (kept, for a restore at any later time) while the stack still serves, then the local database copy
        that a rollback puts back without any private key."""
        postgres = self._postgres()
        if postgres is None:
            self.say("no database container (the stack is down): no backup and no rollback point are taken")
            return None
        self.say("Tempo's release changes: taking the encrypted pre-deploy backup")
        taken = take_backup(self.loaded.profile, self.stack, "pre-deploy", running_version=running_version)
        self.say(f"pre-deploy backup: {taken.folder / taken.name}")
        self.say("Tempo's release changes: stopping the API and Postgres to copy the database (rollback point)")
        compose(self.name, self.bundle, "stop", "frontend", "api", timeout=120)
        path = snapshot.snapshot_path(self.bundle)
        size = snapshot.take(self.stack.client, postgres, path)
        self.say(f"database rollback point: {size // 1024} KiB kept at {path}")
        return path

    def _postgres(self) -> Container | None:
        """Postgres's container, running or stopped; None when there is none."""
        found = self.stack.containers("postgres")
        return found[0] if found else None

    def _changed_mounts(self) -> list[str]:
        """Services whose bind-mounted bundle files differ from the last deploy's (all of them after none)."""
        new = json.loads(next(f.content for f in self.files if str(f.path) == MANIFEST))["files"]
        old = recorded_hashes(self.deployed.bundle) if self.deployed else None
        changed = {p for p in set(new) | set(old or {}) if old is None or old.get(p) != new.get(p)}
        return sorted(
            service
            for service, sources in bind_sources(self.name, self.bundle).items()
            if any(p == s or p.startswith(s + "/") for p in changed for s in sources)
        )

    def _apply(self, before: dict[str, str]) -> None:
        mounts = self._changed_mounts()
        self.say("building images and recreating what changed (docker compose up -d --build)")
        compose(self.name, self.bundle, "up", "-d", "--build")
        now = container_ids(self.stack)
        for service in mounts:
            if service in before and now.get(service) == before[service]:
                self.say(f"{service}: its configuration files changed: recreating it")
                compose(self.name, self.bundle, "up", "-d", "--no-deps", "--no-build", "--force-recreate", service)
        for service in services(self.stack):
            wait_healthy(self.stack, service, self.say)
        smoke_test(self.loaded.profile, self.say)

    def _roll_back(self, previous: dict[str, tuple[str, str]], taken: Path | None) -> str:
        """Put back what ran before; say what the deployment is now."""
        if not previous:
            return "nothing ran before this deploy, so nothing was rolled back; the stack is left for inspection"
        try:
            self.say("rolling back: tagging the previous images again")
            for name, image_id in previous.values():
                repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
                self.stack.client.images.get(image_id).tag(repo, tag)
            source = self.deployed.bundle if self.deployed else self.bundle
            if taken is not None:
                self.say("rolling back: putting the database copy back")
                compose(self.name, self.bundle, "stop", "frontend", "api", timeout=120)
                postgres = self._postgres()
                if postgres is None:
                    raise DeploymentError("postgres has no container to put the database back into")
                snapshot.put_back(self.stack.client, postgres, taken)
            self.say(f"rolling back: bringing up {'the last deployed bundle' if self.deployed else 'the images'}")
            compose(self.name, source, "up", "-d", "--no-build")
            for service in services(self.stack):
                wait_healthy(self.stack, service, self.say)
            smoke_test(self.loaded.profile, self.say, release(self.deployed.version) if self.deployed else None)
        except BaseException as exc:
            kept = f"; the database copy is kept at {taken}" if taken else ""
            return f"THE ROLLBACK FAILED TOO ({exc}){kept}"
        if taken is not None:
            snapshot.discard(taken)
        if self.deployed is None:
            return "rolled back the images (no earlier deploy recorded its configuration); serving again"
        when = f"{self.deployed.deployed_at} (Tempo {self.deployed.version})"
        return f"rolled back to the deploy of {when}; serving again"


def deploy(loaded: LoadedProfile, root: Path, bundle: Path, say: Say) -> list[str]:
    """Deploy `bundle` (out/<name>) of `loaded`; the summary lines, or DeploymentError after a rollback."""
    files = preflight(loaded, root, bundle)
    return Rollout(loaded, root, bundle, files, say).run()
