"""A real OpenSSH server on loopback for SFTP tests: its own config, host key and client key in a temp folder.

It accepts one key, for root, and only for SFTP (ForceCommand internal-sftp), on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.engine import unavailable
from support.wait import wait_until

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SftpServer:
    port: int
    command: str
    """The ssh command that reaches it (restic's sftp.command), with its own key and known_hosts."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def sftp_server(folder: Path) -> Iterator[SftpServer]:
    """sshd -D on 127.0.0.1, stopped (and waited for) on exit."""
    if not (os.access(SSHD, os.X_OK) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        unavailable("SFTP tests need openssh-server and openssh-client")
    if os.geteuid() != 0:
        unavailable("the SFTP tests start sshd, which needs root")
    folder.mkdir(mode=0o700, exist_ok=True)
    for key in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", str(folder / key)], check=True, timeout=30
        )
    shutil.copy(folder / "client.pub", folder / "authorized_keys")
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "AllowUsers root\nSubsystem sftp internal-sftp\nForceCommand internal-sftp\n"
    )
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {(folder / 'host.pub').read_text()}")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: _listening(port) or server.poll() is not None, 20, "sshd to listen", interval=0.1)
        if server.poll() is not None:
            raise AssertionError(f"sshd did not start: {server.stderr.read().decode() if server.stderr else ''}")
        command = (
            f"ssh -F /dev/null -p {port} -i {folder / 'client'} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={folder / 'known_hosts'} root@127.0.0.1 -s sftp"
        )
        yield SftpServer(port, command)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
