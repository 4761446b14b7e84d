"""How long deployment environments take to build: what a fresh machine (and CI) pays.

Builds the environments the project's own deployments and tests ask for, with the
emulator's own `EnvironmentBuilds` (uv), three ways:

- **cold**: an empty environment cache and an empty uv cache, as on a fresh machine:
  every package is downloaded from the index;
- **warm uv**: an empty environment cache, uv's cache kept from the cold pass: what a
  new environment of known packages costs (and what clearing the environment cache costs);
- **cached**: the environment is in the cache: what every later deployment pays.

The environments: the sample's (examples/environment/conda.yaml, the same pins as
requirements.txt), the inference-contract suite's (tests/emulator/fixtures/contract),
and test_environments' scikit-learn 1.2.2 one.

    .venv/bin/python -m bench.bench_env_builds

Everything is built in a temporary folder, removed at the end; the user's caches are
not touched. Results: bench/results/env_builds.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python bench/bench_env_builds.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import BENCH
from emulator.conda_env import EnvironmentSpec, read_conda_file
from emulator.env_builds import EnvironmentBuilds

REPO = BENCH.parent
RESULTS = BENCH / "results" / "env_builds.json"
OLD_SKLEARN = """
name: env
dependencies:
  - python=3.11
  - pip
  - pip:
      - scikit-learn==1.2.2
      - numpy==1.26.4
      - scipy==1.17.1
      - joblib==1.6.0
"""


def _specs() -> dict[str, EnvironmentSpec]:
    files = {
        "sample (examples/environment)": (REPO / "examples" / "environment" / "conda.yaml"),
        "contract suite": REPO / "tests" / "emulator" / "fixtures" / "contract" / "conda.yaml",
    }
    specs = {name: read_conda_file(path.read_text(), what=name) for name, path in files.items()}
    specs["scikit-learn 1.2.2 (test_environments)"] = read_conda_file(
        OLD_SKLEARN, what="scikit-learn 1.2.2"
    )
    return specs


def _build(cache: Path, spec: EnvironmentSpec) -> float:
    started = time.perf_counter()
    asyncio.run(EnvironmentBuilds(cache).python_for(spec, lambda line: None))
    return time.perf_counter() - started


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def measure(work: Path) -> dict[str, Any]:
    # uv reads its cache folder from the environment; EnvironmentBuilds passes it on.
    os.environ["UV_CACHE_DIR"] = str(work / "uv-cache")
    rows: dict[str, dict[str, float]] = {}
    specs = _specs()
    for label, cache in (("cold", work / "envs-cold"), ("warm uv", work / "envs-warm")):
        for name, spec in specs.items():
            seconds = _build(cache, spec)
            rows.setdefault(name, {})[label] = round(seconds, 1)
            print(f"{label:8s} {name}: {seconds:.1f} s", flush=True)
    for name, spec in specs.items():
        seconds = _build(work / "envs-warm", spec)
        rows[name]["cached"] = round(seconds, 2)
        print(f"cached   {name}: {seconds:.2f} s", flush=True)
    return {
        "rows": rows,
        "total_s": {
            label: round(sum(r[label] for r in rows.values()), 1)
            for label in ("cold", "warm uv", "cached")
        },
        "environments_mb": round(_size_mb(work / "envs-warm"), 0),
        "uv_cache_mb": round(_size_mb(work / "uv-cache"), 0),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bg-env-bench-"))
    try:
        result = measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| environment | cold | warm uv cache | cached |\n|---|---:|---:|---:|")
    for name, row in result["rows"].items():
        print(f"| {name} | {row['cold']} s | {row['warm uv']} s | {row['cached']} s |")
    totals = result["total_s"]
    print(f"| all three | {totals['cold']} s | {totals['warm uv']} s | {totals['cached']} s |")
    print(f"\nenvironments {result['environments_mb']:.0f} MB,", end=" ")
    print(f"uv cache {result['uv_cache_mb']:.0f} MB")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
