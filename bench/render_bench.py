"""Render-speed benchmarks, reported as ratios measured in one run (timing here is noisy; never a test).

(a) a cold `tempo-gen render --check` of the example profile, against a floor
    process that only imports the libraries tempo-gen uses (target: <= 1.3x);
(b) rendering 500 generated profiles in one process (target: <= 5 ms each).

Run: python bench/render_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The floor imports the same libraries as far as tempo-gen uses them: pydantic's
# package import is lazy, so BaseModel is imported to load pydantic itself.
FLOOR = "import click, dotenv, jinja2, yaml; from pydantic import BaseModel"


def median_seconds(command: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def cold_check(runs: int) -> tuple[float, float]:
    check = median_seconds([sys.executable, "-m", "tempo_gen", "render", "--check", "profiles/example.yaml"], runs)
    floor = median_seconds([sys.executable, "-c", FLOOR], runs)
    return check, floor


def many_profiles(count: int) -> float:
    from tempo_gen.bundle.pipeline import render_bundle
    from tempo_gen.profile.loader import load_profile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "profiles").mkdir()
        paths = []
        for i in range(count):
            path = root / "profiles" / f"site-{i}.yaml"
            path.write_text(
                f"name: site-{i}\ndomain: tempo{i}.example.com\ntempo:\n  allow_unpinned: true\n"
                f"  media_max_mb: {10 + i % 90}\nproxy:\n  publish_addresses: [203.0.113.{i % 250 + 1}]\n"
                "firewall:\n  admin_cidrs: [198.51.100.0/24]\n"
            )
            paths.append(path)
        started = time.perf_counter()
        for path in paths:
            loaded = load_profile(path, root)
            render_bundle(loaded, root, root / "out" / loaded.profile.name)
        return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profiles", type=int, default=500)
    args = parser.parse_args()
    check, floor = cold_check(args.runs)
    print(
        f"(a) cold render --check: {check * 1000:.0f} ms; import floor: {floor * 1000:.0f} ms; "
        f"ratio {check / floor:.2f}x (target <= 1.3x)"
    )
    per_profile = many_profiles(args.profiles)
    print(f"(b) {args.profiles} profiles in one process: {per_profile * 1000:.2f} ms per profile (target <= 5 ms)")


if __name__ == "__main__":
    main()
