"""`ops.certificates.issue` in a child process, for a test that runs it inside a network namespace
(`ip netns exec NS python -m support.cert_issue_child SPEC.json`). The spec names the profile (as JSON),
the temporary root nginx runs in, the bundle, certbot's folder and how to start nginx. Prints the
result, or `error: <message>` with exit status 3."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from support import nginx as nginx_support
from tempo_gen.errors import TempoGenError
from tempo_gen.models.profile import Profile
from tempo_gen.ops import certificates


def main(spec_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    profile = Profile.model_validate(spec["profile"])
    root = Path(spec["root"])
    runtime = nginx_support.runtime(profile, root, frontend=spec["frontend"], api=spec["frontend"])
    site = certificates.NginxSite(
        profile, runtime, Path(spec["bundle"]), certbot_dir=Path(spec["certbot_dir"]), start=tuple(spec["start"])
    )
    try:
        result = certificates.issue(site, print)
    except TempoGenError as exc:
        print(f"error: {exc}")
        return 3
    print(result.message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
