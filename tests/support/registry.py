"""A real registry (Debian's docker-registry) on loopback, images pushed to it over
the HTTP API (no Docker daemon needed), and a bearer-token service for it.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import http.client
import io
import json
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.proxy import free_port

REGISTRY_BIN = Path("/usr/bin/docker-registry")
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
START_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class LocalRegistry:
    """docker-registry serving `storage` on 127.0.0.1; `auth` is its config's auth section."""

    def __init__(self, workdir: Path, storage: Path, auth: Mapping[str, object] | None = None) -> None:
        self.workdir, self.storage, self.auth = workdir, storage, auth
        self.host = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalRegistry:
        for _ in range(3):  # the free port may be taken again before the registry binds it
            port = free_port()
            config: dict[str, object] = {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": "test-only"},
            }
            if self.auth:
                config["auth"] = self.auth
            config_path = self.workdir / f"config-{port}.yml"
            config_path.write_text(json.dumps(config))  # JSON is YAML
            log = (self.workdir / f"registry-{port}.log").open("wb")
            self._process = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config_path)], stdout=log, stderr=log)
            log.close()
            self.host = f"127.0.0.1:{port}"
            if self._wait_ready():
                return self
            self._stop()
        raise RuntimeError(f"docker-registry did not start; see {self.workdir}/registry-*.log")

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _wait_ready(self) -> bool:
        process = self._process
        assert process is not None, "called once the registry is started"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                return True
            except urllib.error.HTTPError as exc:
                exc.close()
                return exc.code == 401  # up, and asking for a token
            except OSError:
                time.sleep(0.1)
        return False

    def _stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def push_image(self, repository: str, tag: str, content: bytes) -> tuple[str, bytes]:
        """Push a one-layer image whose file holds `content`; return (manifest digest, manifest bytes)."""
        layer_tar = io.BytesIO()
        with tarfile.open(fileobj=layer_tar, mode="w") as tar:
            info = tarfile.TarInfo("content")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        layer = gzip.compress(layer_tar.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar.getvalue())]},
            }
        ).encode()
        for blob in (config, layer):
            self._push_blob(repository, blob)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": sha256(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": sha256(layer),
                    }
                ],
            },
            indent=3,
        ).encode()
        return self.push_manifest(repository, tag, manifest, DOCKER_MANIFEST), manifest

    def push_index(self, repository: str, tag: str, content: bytes) -> tuple[str, bytes]:
        """Push a multi-platform OCI index (like Tempo's GHCR images) over one image; return (index digest, bytes)."""
        digest, manifest = self.push_image(repository, f"{tag}-amd64", content)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": DOCKER_MANIFEST,
                        "digest": digest,
                        "size": len(manifest),
                        "platform": {"architecture": "amd64", "os": "linux"},
                    }
                ],
            }
        ).encode()
        return self.push_manifest(repository, tag, index, OCI_INDEX), index

    def push_manifest(self, repository: str, tag: str, manifest: bytes, media_type: str) -> str:
        url = f"http://{self.host}/v2/{repository}/manifests/{tag}"
        answer = self._call(
            urllib.request.Request(url, data=manifest, method="PUT", headers={"Content-Type": media_type})
        )
        assert answer.headers["Docker-Content-Digest"] == sha256(manifest), "the registry stores it under its sha256"
        return sha256(manifest)

    def _push_blob(self, repository: str, blob: bytes) -> None:
        start = self._call(
            urllib.request.Request(f"http://{self.host}/v2/{repository}/blobs/uploads/", data=b"", method="POST")
        )
        location = urllib.parse.urljoin(f"http://{self.host}/", start.headers["Location"])
        separator = "&" if "?" in location else "?"
        self._call(
            urllib.request.Request(
                f"{location}{separator}digest={sha256(blob)}",
                data=blob,
                method="PUT",
                headers={"Content-Type": "application/octet-stream"},
            )
        )

    @staticmethod
    def _call(request: urllib.request.Request) -> http.client.HTTPResponse:
        response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT)  # http: URLs
        with response:
            response.read()
            return response


class TokenService:
    """Hands out ES256 pull tokens the registry trusts (x5c chain to its rootcertbundle), to anyone."""

    issuer = "test-issuer"
    service = "test-registry"

    def __init__(self, workdir: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tempo-gen test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.bundle = workdir / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests: list[dict[str, list[str]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                service.requests.append(query)
                body = json.dumps({"token": service.token(query.get("scope", [""])[0]), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_auth(self) -> dict[str, dict[str, str]]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.bundle),
            }
        }

    def token(self, scope: str) -> str:
        """A JWT granting pull (only) on the repository a `repository:NAME:ACTIONS` scope names."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        _, name, _ = scope.split(":") if scope.count(":") == 2 else ("", "", "")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": "repository", "name": name, "actions": ["pull"]}] if name else [],
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def __enter__(self) -> TokenService:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
