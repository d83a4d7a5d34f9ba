"""Shared by the ban tests: a stub Tempo API and frontend, a TCP probe, a private fail2ban, fail2ban-regex.

The stub answers like Tempo where the tests need it: POST /auth/login is 200 with the right
password and 401 otherwise, /workouts* is 401 (an expired session), /limited is 429.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tempo_gen.bundle.files import RenderedFile

TIMEOUT = 30  # seconds any single command may take
SECRETS = ("SECRETQUERY", "SECRETCOOKIE", "SECRETBEARER", "SECRETPASSWORD")
"""Sent in the query string, a cookie, Authorization and the body of every test request; never logged."""
LOG_KEYS = {
    "nginx": {"time", "client", "method", "path", "status", "bytes", "duration", "user_agent", "tls"},
    # Traefik's JSON formatter adds level, msg and its own local time to the fields kept.
    "traefik": {
        "StartUTC",
        "ClientHost",
        "RequestMethod",
        "RequestPath",
        "DownstreamStatus",
        "DownstreamContentSize",
        "Duration",
        "request_User-Agent",
        "TLSVersion",
        "RouterName",
        "level",
        "msg",
        "time",
    },
}

STUB = r"""
import http.server, sys, threading
host, api, frontend = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        status = 200
        if self.server.server_address[1] == api:
            if path == "/auth/login":
                status = 200 if b"right" in body else 401
            elif path.startswith("/workouts"):
                status = 401
            elif path == "/limited":
                status = 429
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
servers = [http.server.ThreadingHTTPServer((host, port), Handler) for port in (api, frontend)]
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
servers[0].serve_forever()
"""

CONNECT = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    socket.create_connection((host, port), timeout).close()
    print("open")
except OSError:
    print("closed")
"""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def curl_args(domain: str, address: str, port: int, ca_file: Path, method: str, path: str, body: str) -> list[str]:
    """curl's arguments for one HTTPS request carrying secrets in the query, a cookie and Authorization;
    it prints the status."""
    pinned = address if ":" not in address else f"[{address}]"
    return [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "3",
        "--cacert",
        str(ca_file),
        "--resolve",
        f"{domain}:{port}:{pinned}",
        "-X",
        method,
        "-H",
        "Cookie: authToken=SECRETCOOKIE",
        "-H",
        "Authorization: Bearer SECRETBEARER",
        "-A",
        'tester "quoted" agent',
        *(["-H", "Content-Type: application/json", "--data", body] if body else []),
        f"https://{domain}:{port}{path}?token=SECRETQUERY",
    ]


def write_fail2ban(folder: Path, files: Sequence[RenderedFile]) -> Path:
    """A private fail2ban configuration (own socket, pid, log, in-memory database) holding the
    rendered jails, filters and action; its folder."""
    for kind in ("jail.d", "filter.d", "action.d"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for file in files:
        name = str(file.path)
        if name.startswith("monitoring/fail2ban/"):
            (folder / name.removeprefix("monitoring/fail2ban/")).write_text(file.content)
    (folder / "jail.conf").write_text("[DEFAULT]\n")
    (folder / "fail2ban.conf").write_text(
        "[Definition]\nloglevel = INFO\n"
        f"logtarget = {folder}/fail2ban.log\nsocket = {folder}/fail2ban.sock\npidfile = {folder}/fail2ban.pid\n"
        "dbfile = :memory:\n"
    )
    return folder


def read_log(log_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def regex_counts(log_file: Path, filter_file: Path, lines: list[dict[str, Any]], sample: Path) -> tuple[int, int]:
    """(matched, total) of fail2ban-regex with `filter_file` on these lines, byte for byte as the proxy wrote them."""
    raw = [line for line in log_file.read_text().splitlines() if json.loads(line) in lines]
    sample.write_text("\n".join(raw) + "\n")
    out = run("fail2ban-regex", str(sample), str(filter_file)).stdout
    found = re.search(r"^Lines: (\d+) lines, \d+ ignored, (\d+) matched", out, re.M)
    assert found, out
    return int(found[2]), int(found[1])


def assert_no_secrets(log_file: Path, kind: str = "nginx") -> None:
    """The log exists, holds the promised keys, UTC times, no query string and none of SECRETS."""
    text = log_file.read_text()
    assert text, "the proxy wrote no access log"
    for secret in SECRETS:
        assert secret not in text
    lines = read_log(log_file)
    path, time, utc, tls = (
        ("path", "time", "+00:00", "tls") if kind == "nginx" else ("RequestPath", "StartUTC", "Z", "TLSVersion")
    )
    assert all("?" not in line[path] for line in lines)
    assert all(set(line) <= LOG_KEYS[kind] and {path, time} <= set(line) for line in lines), lines
    assert all(line[time].endswith(utc) for line in lines), "times are UTC"
    assert {line[tls] for line in lines} <= {"TLSv1.2", "TLSv1.3", "1.2", "1.3"}
