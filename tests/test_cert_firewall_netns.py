"""`cert issue` when the rendered firewall keeps the CA away from port 80: a clear message, the site as it was.

A "server" network namespace holds nginx (the rendered configuration, in a
temporary root, on 10.205.0.2:80/443) behind the rendered nftables ruleset of
a profile whose site is open to 192.0.2.0/24 only. Pebble listens on the host
end of the veth (10.205.0.1), and its DNS (challtestsrv) points the domain at
the server; `cert issue` runs inside the namespace. Pebble's http-01 probe is
dropped by the firewall, certbot fails, and the message says that port 80 is
not reachable; the bootstrap pair stays served. Nothing leaves the machine.
Needs root, network namespaces, nft, nginx, pebble and certbot: missing, the
test skips, or fails when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from support import nginx as nginx_support
from support.engine import unavailable
from support.pebble import require_tools, running_pebble
from support.project import REPO
from support.proxy import DOMAIN, target_input_for
from tempo_gen.targets import nginx
from tempo_gen.targets.host import firewall

pytestmark = [pytest.mark.netns, pytest.mark.acme, nginx_support.needs_nginx]

HOST, SERVER = "10.205.0.1", "10.205.0.2"
TIMEOUT = 60


def run(*cmd: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def test_a_firewall_that_keeps_the_ca_out_is_explained_and_changes_nothing() -> None:
    require_tools()
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        unavailable("needs root, iproute2 and nft")
    tag = uuid.uuid4().hex[:6]
    ns, veth = f"tgcert{tag}", f"tgc{tag}"
    root = Path(tempfile.mkdtemp(prefix="tempo-acme-fw-"))
    root.chmod(0o755)
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "addr", "add", f"{HOST}/24", "dev", veth)
        run("ip", "link", "set", veth, "up")
        for command in (
            ("ip", "addr", "add", f"{SERVER}/24", "dev", "eth0"),
            ("ip", "link", "set", "eth0", "up"),
            ("ip", "link", "set", "lo", "up"),
        ):
            run("ip", "netns", "exec", ns, *command)
        with running_pebble(root / "pebble", 80, address=SERVER, listen=HOST) as pebble:
            profile = nginx_support.for_local_nginx(
                nginx_support.make_profile(
                    proxy={
                        "publish_addresses": [SERVER],
                        "tls": {
                            "certificate": {
                                "acme_webroot": "/acme",
                                "acme_directory": pebble.directory,
                                "acme_ca_bundle": str(pebble.ca_bundle),
                            }
                        },
                    },
                    firewall={"admin_cidrs": ["198.51.100.0/24"], "web_cidrs": ["192.0.2.0/24"]},
                )
            )
            for file in firewall.files_for(target_input_for(profile)):
                if str(file.path) == "firewall/nftables.conf":
                    (root / "nftables.conf").write_text(file.content)
            run("ip", "netns", "exec", ns, "nft", "-f", str(root / "nftables.conf"))
            runtime = nginx_support.runtime(profile, root, frontend="127.0.0.1:9", api="127.0.0.1:9")
            conf = nginx_support.write_tree(profile, root, runtime)
            bundle = root / "bundle"
            for file in nginx.files_for(target_input_for(profile), runtime):
                if str(file.path).endswith(".sh"):
                    (bundle / file.path).parent.mkdir(parents=True, exist_ok=True)
                    (bundle / file.path).write_text(file.content)
                    (bundle / file.path).chmod(file.mode)
            for folder in [root, *root.rglob("*")]:
                if folder.is_dir():
                    folder.chmod(0o755)
            spec = {
                "profile": profile.model_dump(mode="json"),
                "root": str(root),
                "frontend": "127.0.0.1:9",
                "bundle": str(bundle),
                "certbot_dir": str(root / "certbot"),
                "start": [nginx_support.NGINX, "-p", f"{root}/", "-c", str(conf)],
            }
            (root / "spec.json").write_text(json.dumps(spec))
            env_path = f"{REPO / 'generator'}{os.pathsep}{REPO / 'tests'}"
            done = run(
                "ip", "netns", "exec", ns, "env", f"PYTHONPATH={env_path}", "python3", "-m",
                "support.cert_issue_child", str(root / "spec.json"),
                check=False, timeout=600,
            )  # fmt: skip
            output = done.stdout + done.stderr
            assert done.returncode == 3, output
            assert f"port 80 of {DOMAIN} is not reachable from the CA: open it in the firewall" in output, output
            assert "The site is as it was" in output
            assert "timeout" in output.lower(), output  # dropped, not refused: the firewall, not a missing listener
            # The bootstrap pair is still what the site serves.
            cert_file = Path(runtime.path(profile.proxy.tls.certificate.paths(DOMAIN)[0]))
            served = run(
                "ip", "netns", "exec", ns, "sh", "-c",
                f"openssl s_client -connect {SERVER}:443 -servername {DOMAIN} </dev/null 2>/dev/null"
                " | openssl x509 -noout -fingerprint -sha256",
            ).stdout  # fmt: skip
            on_disk = run("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert_file)).stdout
            assert served.strip() and served == on_disk
    finally:
        pid_file = root / "run" / "nginx.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=TIMEOUT)
        shutil.rmtree(root, ignore_errors=True)
