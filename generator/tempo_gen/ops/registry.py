"""Resolve an image tag to its manifest digest through the registry HTTP API v2.

Plain urllib, no Docker daemon: `tempo-gen lock` runs on workstations and in CI.
The digest is that of what the tag points at, the multi-platform index when there
is one, which is what `docker pull name:tag@sha256:...` and Renovate expect.
Only anonymous pulls: public registries hand out a bearer token on request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable

from tempo_gen.errors import RegistryError, RegistryUnreachable

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the limit Docker itself applies
MAX_TOKEN_BYTES = 64 * 1024
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def locate(name: str) -> tuple[str, str]:
    """(registry host, repository) of an image name, as the Docker CLI reads it."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = "docker.io", name
    if host in ("docker.io", "index.docker.io"):
        host = "registry-1.docker.io"
        if "/" not in repository:
            repository = f"library/{repository}"
    return host, repository


class Registry:
    """A client for any number of registries, caching pull tokens per repository."""

    def __init__(self, insecure: Iterable[str] = (), timeout: float = 20.0):
        self.insecure = set(insecure)
        """HOST:PORT registries spoken to over plain http."""
        self.timeout = timeout
        self._tokens: dict[tuple[str, str], str] = {}
        self._unreachable: dict[str, RegistryUnreachable] = {}  # fail fast offline instead of one timeout per image

    def digest(self, name: str, tag: str) -> str:
        """The sha256 digest `name:tag` points at, or RegistryError."""
        host, repository = locate(name)
        if host in self._unreachable:
            raise self._unreachable[host]
        scheme = "http" if host in self.insecure else "https"
        url = f"{scheme}://{host}/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        # HEAD first: Docker Hub does not count it against the pull rate limit.
        try:
            headers, _ = self._fetch("HEAD", url, host, repository)
            digest = headers.get("Docker-Content-Digest", "")
            if _DIGEST.fullmatch(digest):
                _check_type(headers)
                return digest
        except RegistryUnreachable as exc:
            self._unreachable[host] = exc
            raise
        except RegistryError:
            pass  # GET says why, with the registry's error body
        headers, body = self._fetch("GET", url, host, repository)
        _check_type(headers)
        actual = f"sha256:{hashlib.sha256(body).hexdigest()}"
        claimed = headers.get("Docker-Content-Digest", "")
        if claimed.startswith("sha256:") and claimed != actual:
            raise RegistryError(f"the registry claims {claimed} but the manifest it sent hashes to {actual}")
        return actual

    def _fetch(self, method: str, url: str, host: str, repository: str) -> tuple[http.client.HTTPMessage, bytes]:
        """Headers and body of a manifest request, fetching a pull token on the first 401."""
        for attempt in range(2):
            request = urllib.request.Request(url, method=method, headers={"Accept": ", ".join(MANIFEST_TYPES)})
            if token := self._tokens.get((host, repository)):
                # Unredirected: a redirect to a storage host must not carry the token.
                request.add_unredirected_header("Authorization", f"Bearer {token}")
            try:
                return _request(request, self.timeout, host, MAX_MANIFEST_BYTES)
            except urllib.error.HTTPError as exc:
                with exc:
                    if exc.code == 401 and attempt == 0:
                        challenge = exc.headers.get("WWW-Authenticate", "")
                        self._tokens[(host, repository)] = self._token(challenge, host, repository)
                        continue
                    raise RegistryError(_explain(exc, host)) from None
        raise AssertionError("unreachable")

    def _token(self, challenge: str, host: str, repository: str) -> str:
        """An anonymous pull token from the realm a `WWW-Authenticate: Bearer` challenge names."""
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() != "bearer":
            raise RegistryError(
                f"{host} asks for {scheme or 'unknown'} authentication; lock only makes anonymous pulls "
                "(is the image private?)"
            )
        fields = dict(_CHALLENGE_PARAM.findall(params))
        realm = fields.get("realm", "")
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"{host} sent a bearer challenge without a usable realm: {challenge!r}")
        query = {"scope": fields.get("scope") or f"repository:{repository}:pull"}
        if "service" in fields:
            query["service"] = fields["service"]
        url = f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(query)}"
        try:
            _, body = _request(
                urllib.request.Request(url), self.timeout, urllib.parse.urlsplit(realm).netloc, MAX_TOKEN_BYTES
            )
            answer = json.loads(body)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise RegistryError(
                f"the token service {realm} refused an anonymous pull token (HTTP {exc.code})"
            ) from None
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser's stack
            raise RegistryError(f"the token service {realm} did not answer with JSON") from None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service {realm} answered without a token")
        return token


def _request(
    request: urllib.request.Request, timeout: float, host: str, limit: int
) -> tuple[http.client.HTTPMessage, bytes]:
    """Headers and body (at most `limit` bytes) of an answer; HTTPError for an error status,
    RegistryUnreachable for every way of getting no answer at all."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(limit + 1)
            if len(body) > limit:
                raise RegistryError(f"{host} sent more than {limit} bytes")
            return response.headers, body
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            message = f"{host} presented an untrusted TLS certificate ({reason.verify_message})"
        elif isinstance(reason, ssl.SSLError):
            message = (
                f"TLS with {host} failed ({reason.reason}); if it serves plain http, pass --insecure-registry {host}"
            )
        elif isinstance(reason, TimeoutError):
            message = f"{host} did not answer within {timeout:g}s"
        else:
            message = f"cannot reach {host} ({reason}); lock needs network access to the registry"
        raise RegistryUnreachable(message) from None


def _check_type(headers: http.client.HTTPMessage) -> None:
    media_type = headers.get_content_type()
    if "distribution.manifest.v1" in media_type:
        raise RegistryError("the registry only offers a schema 1 manifest, whose digest is not stable; pin a newer tag")


def _explain(exc: urllib.error.HTTPError, host: str) -> str:
    """A sentence for an HTTP error, with the registry's own error codes when it sent them."""
    detail = ""
    try:
        errors = json.loads(exc.read(MAX_TOKEN_BYTES)).get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        detail = "".join(c if c.isprintable() else "?" for c in detail[:300])  # a registry's words reach a terminal
    except (ValueError, RecursionError, AttributeError, OSError):
        pass
    meaning = {
        401: "not allowed without credentials: the image is private or does not exist",
        403: "access denied",
        404: "no such repository or tag",
        429: "rate limited by the registry; try again later",
    }.get(exc.code, "unexpected answer")
    return f"{host} answered HTTP {exc.code}, {meaning}" + (f" ({detail})" if detail else "")
