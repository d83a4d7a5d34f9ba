"""HTTP(S) requests to a proxy at a given address for a given host name (SNI and Host), trusting a test CA."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import trustme


def _read(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    host: str,
    *,
    body: bytes | None = None,
    json_body: object = None,
    cookie: str | None = None,
    content_type: str | None = None,
    raw: bool = False,
) -> tuple[int, dict[str, str], str | bytes]:
    headers = {"Host": host}
    if json_body is not None:
        body, content_type = json.dumps(json_body).encode(), "application/json"
    if content_type:
        headers["Content-Type"] = content_type
    if cookie:
        headers["Cookie"] = cookie
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    lowered = {k.lower(): v for k, v in response.getheaders()}
    connection.close()
    return response.status, lowered, data if raw else data.decode(errors="replace")


def tls_context(ca: trustme.CA, tls_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that trusts only the test CA (and verifies host names), optionally pinned to one version."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if tls_version:
        context.minimum_version = context.maximum_version = tls_version
    return context


def https_request(
    address: str,
    port: int,
    host: str,
    ca: trustme.CA,
    method: str,
    path: str,
    *,
    tls_version: ssl.TLSVersion | None = None,
    timeout: float = 30,
    **kw: Any,
) -> tuple[int, dict[str, str], str | bytes]:
    """(status, lower-cased headers, body) of one HTTPS request; the certificate must verify for `host`."""
    context = tls_context(ca, tls_version)
    sock = context.wrap_socket(socket.create_connection((address, port), timeout=timeout), server_hostname=host)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = sock
    return _read(connection, method, path, f"{host}:{port}", **kw)


def plain_request(
    address: str, port: int, host: str, method: str, path: str, timeout: float = 10, **kw: Any
) -> tuple[int, dict[str, str], str | bytes]:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    return _read(connection, method, path, f"{host}:{port}", **kw)


def write_site_pair(ca: trustme.CA, folder: Path, domain: str, proxy_uid: int) -> None:
    """`folder`/fullchain.pem and privkey.pem for `domain` from the test CA; the key readable by the proxy only."""
    folder.mkdir()
    cert = ca.issue_cert(domain)
    cert.private_key_and_cert_chain_pem.write_to_path(folder / "fullchain.pem")
    cert.private_key_pem.write_to_path(folder / "privkey.pem")
    os.chmod(folder / "privkey.pem", 0o640)
    os.chown(folder / "privkey.pem", 0, proxy_uid)
