"""`tempo-gen lock` against a real registry on loopback, images pushed over its HTTP API."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.project import RunCli
from support.proxy import free_port
from support.registry import REGISTRY_BIN, LocalRegistry, TokenService, sha256
from tempo_gen.errors import RegistryError
from tempo_gen.ops.registry import Registry, locate

needs_registry = pytest.mark.skipif(not REGISTRY_BIN.exists(), reason="Debian's docker-registry is not installed")

COMMON = """\
# What a production profile needs besides its images, shared by every test profile.
domain: tempo.example.com
proxy:
  placement: host
firewall:
  admin_cidrs: [198.51.100.0/24]
"""

SITE = """\
# Site profile: every comment and blank line here must survive `lock`.
extends: _base.yaml   # shared images
name: site
domain: tempo.example.com

tempo:
  version: 2.10.1  # the release
  images:
    # The API image, rebuilt non-root.
    api: "HOST/tempo/api:v2.10.1"   # quoted on purpose
    postgres: HOST/library/postgres:16-alpine@sha256:PINNED
  # frontend comes from the base

# The proxy section.
proxy:
  publish_addresses: [203.0.113.10]   # the public address
# The end.
"""

BASE = """\
# Base profile: images shared by every site.
extends: _common.yaml
tempo:
  images:
    frontend: HOST/tempo/frontend:v2.10.1
proxy:
  placement: container
  image: HOST/nginx-unprivileged:1.28-alpine
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    if not REGISTRY_BIN.exists():
        pytest.skip("Debian's docker-registry is not installed")
    workdir = tmp_path_factory.mktemp("registry")
    (workdir / "storage").mkdir()
    with LocalRegistry(workdir, workdir / "storage") as running:
        yield running


def _write(project: Path, name: str, text: str, host: str) -> Path:
    (project / "profiles" / "_common.yaml").write_text(COMMON)
    path = project / "profiles" / name
    path.write_text(text.replace("HOST", host))
    return path


def _images(name: str, api: str, frontend: str, postgres: str) -> str:
    """A profile whose three images are given (api on line 5, frontend on 6, postgres on 7)."""
    return (
        f"extends: _common.yaml\nname: {name}\ntempo:\n  images:\n"
        f"    api: {api}\n    frontend: {frontend}\n    postgres: {postgres}\n"
    )


@needs_registry
def test_lock_writes_the_registry_digests_and_keeps_everything_else(
    registry: LocalRegistry, cli: RunCli, project: Path
) -> None:
    host = registry.host
    api, api_index = registry.push_index("tempo/api", "v2.10.1", b"api")
    frontend, _ = registry.push_image("tempo/frontend", "v2.10.1", b"frontend")
    proxy, _ = registry.push_image("nginx-unprivileged", "1.28-alpine", b"nginx")
    postgres, _ = registry.push_image("library/postgres", "16-alpine", b"postgres")
    base = _write(project, "_base.yaml", BASE, host)
    site = _write(project, "site.yaml", SITE.replace("PINNED", postgres.removeprefix("sha256:")), host)
    before = site.read_text()
    assert cli("validate", str(site)).exit_code == 2, "production refuses the unpinned images"

    result = cli("lock", "--insecure-registry", host, str(site))

    assert result.exit_code == 0, result.output
    assert api == sha256(api_index), "the digest of the index the tag names, not of a platform image"
    expected = (
        before.replace(
            f'api: "{host}/tempo/api:v2.10.1"',
            f'api: "{host}/tempo/api:v2.10.1@{api}"',
        )
        .replace(
            f"@{postgres}\n",
            f"@{postgres}\n    frontend: {host}/tempo/frontend:v2.10.1@{frontend}\n",
        )
        .replace(
            "# the public address\n",
            f"# the public address\n  image: {host}/nginx-unprivileged:1.28-alpine@{proxy}\n",
        )
    )
    assert site.read_text() == expected
    assert base.read_text() == BASE.replace("HOST", host), "pins go into the file named, not its base"
    assert f"profiles/site.yaml: tempo.images.frontend = {host}/tempo/frontend:v2.10.1@{frontend}" in result.output
    assert "3 pinned, 1 already pinned and kept" in result.output
    assert sorted(p.name for p in site.parent.iterdir()) == ["_base.yaml", "_common.yaml", "schema.json", "site.yaml"]
    assert cli("validate", str(site)).exit_code == 0

    mtime = site.stat().st_mtime_ns
    again = cli("lock", "--insecure-registry", host, str(site))
    assert (
        again.exit_code == 0
        and "profiles/site.yaml: nothing to pin; unchanged, 4 already pinned and kept" in again.output
    )
    assert site.read_text() == expected and site.stat().st_mtime_ns == mtime


@needs_registry
def test_pinned_images_are_kept_unless_update(registry: LocalRegistry, cli: RunCli, project: Path) -> None:
    old, _ = registry.push_image("tempo/moving", "v1", b"first")
    new, _ = registry.push_image("tempo/moving", "v1", b"second")  # the tag moves on
    steady, _ = registry.push_image("tempo/steady", "v1", b"steady")
    moving, fixed = f"HOST/tempo/moving:v1@{old}", f"HOST/tempo/steady:v1@{steady}"
    path = _write(project, "pinned.yaml", _images("pinned", moving, fixed, fixed), registry.host)
    profile = path.read_text()

    kept = cli("lock", "--insecure-registry", registry.host, str(path))
    assert kept.exit_code == 0 and path.read_text() == profile

    updated = cli("lock", "--update", "--insecure-registry", registry.host, str(path))
    assert updated.exit_code == 0, updated.output
    assert path.read_text() == profile.replace(f"@{old}", f"@{new}")
    assert "1 pinned, 2 already pinned and kept" in updated.output


@needs_registry
def test_an_unresolvable_image_writes_nothing_anywhere_and_exits_2(
    registry: LocalRegistry, cli: RunCli, project: Path
) -> None:
    registry.push_image("tempo/api", "v7", b"api7")
    good = _write(project, "good.yaml", _images("good", *["HOST/tempo/api:v7"] * 3), registry.host)
    bad = _write(
        project,
        "bad.yaml",
        _images("bad", "HOST/tempo/api:v7", "HOST/tempo/frontend:v9.9.9", "HOST/tempo/api:v7"),
        registry.host,
    )
    before = {p: p.read_bytes() for p in (good, bad)}

    result = cli("lock", "--insecure-registry", registry.host)  # every profiles/*.yaml

    assert result.exit_code == 2
    assert (
        f"profiles/bad.yaml:6: tempo.images.frontend: cannot resolve {registry.host}/tempo/frontend:v9.9.9: "
        f"{registry.host} answered HTTP 404, no such repository or tag (MANIFEST_UNKNOWN"
    ) in result.output
    assert "1 problem(s) found; nothing was written." in result.output
    assert {p: p.read_bytes() for p in (good, bad)} == before, "not even the profile that resolved"
    assert sorted(p.name for p in good.parent.iterdir()) == ["_common.yaml", "bad.yaml", "good.yaml", "schema.json"]


def test_an_unreachable_registry_is_a_message_not_a_traceback(cli: RunCli, project: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    path = _write(project, "offline.yaml", _images("offline", "HOST/a:1", "HOST/f:1", "HOST/p:1"), closed)
    before = path.read_bytes()
    result = cli("lock", "--insecure-registry", closed, str(path))
    assert result.exit_code == 2
    assert (
        f"profiles/offline.yaml:5: tempo.images.api: cannot resolve {closed}/a:1: cannot reach {closed} ("
        in result.output
    )
    assert "lock needs network access to the registry" in result.output
    assert "3 problem(s) found" in result.output and path.read_bytes() == before


@needs_registry
def test_https_to_a_plain_http_registry_suggests_insecure_registry(
    registry: LocalRegistry, cli: RunCli, project: Path
) -> None:
    path = _write(project, "tls.yaml", _images("tls", *["HOST/p:1"] * 3), registry.host)
    result = cli("lock", str(path))
    assert result.exit_code == 2
    assert f"if it serves plain http, pass --insecure-registry {registry.host}" in result.output


@needs_registry
def test_anonymous_bearer_token_auth(registry: LocalRegistry, cli: RunCli, project: Path, tmp_path: Path) -> None:
    """Like Docker Hub and GHCR: a 401 names a token realm that hands out anonymous pull tokens."""
    digest, _ = registry.push_index("tempo/api", "v3.0.0", b"api3")
    with TokenService(tmp_path) as tokens, LocalRegistry(tmp_path, registry.storage, tokens.registry_auth()) as secured:
        path = _write(project, "auth.yaml", _images("auth", *["HOST/tempo/api:v3.0.0"] * 3), secured.host)
        result = cli("lock", "--insecure-registry", secured.host, str(path))
        assert result.exit_code == 0, result.output
        assert path.read_text().count(f"{secured.host}/tempo/api:v3.0.0@{digest}\n") == 3
        assert tokens.requests == [{"scope": ["repository:tempo/api:pull"], "service": [tokens.service]}]


@needs_registry
def test_a_value_from_a_variable_is_left_for_its_definition(
    registry: LocalRegistry, cli: RunCli, project: Path
) -> None:
    digest, _ = registry.push_image("tempo/var", "v1", b"var")
    path = _write(
        project, "var.yaml", _images("var", "${API_IMAGE}", "HOST/tempo/var:v1", "HOST/tempo/var:v1"), registry.host
    )
    before = path.read_text()
    result = cli(
        "lock", "--insecure-registry", registry.host, str(path), env={"API_IMAGE": f"{registry.host}/tempo/var:v1"}
    )
    assert result.exit_code == 0, result.output
    assert "tempo.images.api is set from a variable" in result.output
    assert path.read_text() == before.replace("var:v1\n", f"var:v1@{digest}\n")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("postgres", ("registry-1.docker.io", "library/postgres")),
        ("nginxinc/nginx-unprivileged", ("registry-1.docker.io", "nginxinc/nginx-unprivileged")),
        ("docker.io/library/traefik", ("registry-1.docker.io", "library/traefik")),
        ("docker.io/traefik", ("registry-1.docker.io", "library/traefik")),
        ("ghcr.io/trevordavies095/tempo/api", ("ghcr.io", "trevordavies095/tempo/api")),
        ("localhost/tempo", ("localhost", "tempo")),
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b")),
    ],
)
def test_image_names_map_to_registry_and_repository_like_docker(name: str, expected: tuple[str, str]) -> None:
    assert locate(name) == expected


@pytest.mark.parametrize("claimed", [None, "sha256:" + "f" * 64])
def test_without_a_digest_header_the_manifest_body_is_hashed(claimed: str | None) -> None:
    """Some registries omit Docker-Content-Digest: hash what was sent, and refuse a header that disagrees."""
    manifest = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}'

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            if claimed:
                self.send_header("Docker-Content-Digest", "not-a-digest")  # unusable: GET decides
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Content-Length", str(len(manifest)))
            if claimed:
                self.send_header("Docker-Content-Digest", claimed)
            self.end_headers()
            self.wfile.write(manifest)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        if claimed:
            with pytest.raises(
                RegistryError, match=f"claims {claimed} but the manifest it sent hashes to {sha256(manifest)}"
            ):
                Registry([host], timeout=5).digest(f"{host}/a", "1")
        else:
            assert Registry([host], timeout=5).digest(f"{host}/a", "1") == sha256(manifest)
    finally:
        server.shutdown()
        server.server_close()
