"""Benchmark: a fresh checkout type-checking with a populated remote cache vs cold.

    ./pants run bench/remote_cache_bench.py -- [--modules 1000] [--fresh 3] [--mypy 2.4.1]

Separate compilation on the generated project of bench/separate_bench.py, against a real REAPI
server (BuildGrid on loopback, bench/remote_cache.sh). Every checkout is fresh, as on a new CI
runner: its own directory, an empty local store and named caches, no pantsd. In one run:
  1. cold: a checkout with no remote cache (everything runs; the tool PEXes are built too);
  2. populate: another checkout, remote cache read + write (what a CI job on main does);
  3. fresh: `--fresh` more checkouts per way Pants can treat a remote hit's outputs
     (`[GLOBAL].cache_content_behavior`): `fetch` (the default: download them all), `validate`
     (check they exist, download what a rule reads), `defer` (neither, until something reads them;
     experimental in Pants 2.17), interleaved; remote cache read + write, as on any other runner.
Reported: the median fresh time over cold per behavior (target: <= 0.1), and from Pants' own
counters how many processes ran and how many came from the remote cache.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo
from cacheplug_tests.separatekit import REPO_TOML, counter
from separate_bench import mypy_options

SERVER_SCRIPT = Path(__file__).parent / "remote_cache.sh"
BEHAVIORS = ("fetch", "validate", "defer")  # [GLOBAL].cache_content_behavior


def run_check(root: Path, files: dict[str, str], version: str, remote: list[str]) -> float:
    repo = PantsRepo(root, backends=["pants.backend.python", "cacheplug.mypy"], extra_toml=REPO_TOML + mypy_options(version))
    repo.write(files)
    start = time.perf_counter()
    result = repo.run("--mypy-separate-compilation", *remote, "--stats-log", "check", "::")
    elapsed = time.perf_counter() - start
    if result.exit_code not in (0, 1) or "mypy separate compilation" not in result.stderr:
        raise SystemExit(f"pants check failed ({result.exit_code}):\n{result.stderr[-3000:]}")
    line = re.search(r"mypy separate compilation \[.*", result.stderr)
    assert line
    print(f"  {root.name}: {elapsed:.1f}s; {line.group(0).split(': ', 1)[1]}; processes: "
          f"{counter(result, 'local_execution_requests')} ran locally, "
          f"{counter(result, 'remote_cache_requests_cached')} remote hits, "
          f"{counter(result, 'remote_cache_write_successes')} uploaded", flush=True)
    shutil.rmtree(root.parent / f"{root.name}-caches", ignore_errors=True)  # ~1 GB per checkout
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--fresh", type=int, default=3, help="fresh checkouts using the populated cache")
    parser.add_argument("--mypy", default="", help="a mypy version instead of Pants' default (1.1.1)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cacheplug-remote-bench-"))
    print(f"project: {args.modules} modules; mypy {args.mypy or 'default'}; work dir {work}", flush=True)
    files = {"src/BUILD": "python_sources()\n", **Project.generate(args.modules, random.Random(0)).render()}
    server = work / "buildgrid"
    address = subprocess.run(["bash", str(SERVER_SCRIPT), "start", str(server)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    remote = ["--remote-cache-read", "--remote-cache-write", f"--remote-store-address={address}"]
    try:
        cold = run_check(work / "cold", files, args.mypy, [])
        populate = run_check(work / "populate", files, args.mypy, remote)
        fresh: dict[str, list[float]] = {b: [] for b in BEHAVIORS}
        for i in range(args.fresh):
            for behavior in BEHAVIORS:
                root = work / f"fresh{i}-{behavior}"
                fresh[behavior].append(run_check(root, files, args.mypy, [*remote, f"--cache-content-behavior={behavior}"]))
    finally:
        subprocess.run(["bash", str(SERVER_SCRIPT), "stop", str(server)], check=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nfresh checkouts, no pantsd, mypy {args.mypy or '(Pants default)'}:")
    print(f"  cold (no remote cache)           {cold:7.1f}s")
    print(f"  populate (remote read + write)   {populate:7.1f}s   populate/cold {populate / cold:.2f}")
    for behavior, times in fresh.items():
        median = statistics.median(times)
        print(f"  fresh, {behavior:<8} (median of {len(times)}) {median:7.1f}s   fresh/cold {median / cold:.3f}"
              f"   (all: {', '.join(f'{t:.1f}s' for t in times)})")
    print("  target: fresh/cold <= 0.1")


if __name__ == "__main__":
    main()
