"""What the index saves: a commit that keeps the byte budget with the index vs one that must scan
the cache (the index deleted before each run, so the commit rebuilds it from every record and
object: what each commit would pay without one). Also what an eviction pass costs.

    ./pants run bench/lifecycle.py -- [--modules 1000] [--repeats 7]

Runs faketool (tests/python/cacheplug_tests/faketool.py) through the real shim and store.py on a
generated project, one leaf edit per run, the two variants interleaved; prints medians and ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from cacheplug.store import layout
from cacheplug.store.index import LOW_WATER, Index, evict
from cacheplug.store.report import Report
from cacheplug_tests import fakeproject
from cacheplug_tests.storekit import disk_bytes, run_fake, scope_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="cacheplug-lifecycle-") as tmp:
        named_cache = Path(tmp) / "cacheplug"
        sources = fakeproject.generate(args.modules, rng)
        run_fake(named_cache, sources)
        scope = scope_path(named_cache)
        budget = disk_bytes(scope) * 4  # a budget, not reached: the commit only checks it
        leaf = max(sources, key=lambda m: int(m[1:]))  # imported by nobody
        times: dict[str, list[float]] = {"index": [], "scan": []}
        for i in range(args.repeats):
            for variant in ("index", "scan"):
                sources[leaf] += f"def edit{i}_{variant}\n"
                if variant == "scan":
                    (scope / "index.json").unlink()
                t0 = time.perf_counter()
                run = run_fake(named_cache, sources, max_size=budget)
                times[variant].append(time.perf_counter() - t0)
                assert run.report["written"] == 1 and not run.report["warnings"], run.report
        index, scan = (statistics.median(times[v]) for v in ("index", "scan"))
        entries = len(list(scope.glob("entries/*/*")))
        print(f"{args.modules} modules, {entries} entries, {disk_bytes(scope) / 2**20:.1f} MiB; one leaf edit per run, medians of {args.repeats}")
        print(f"  whole run (setup + tool + commit), commit with the index : {index:.3f} s")
        print(f"  whole run, commit rebuilding the index (a scan)           : {scan:.3f} s")
        print(f"  scan / index                                              : {scan / index:.2f}")
        # One eviction pass: to half the cache, by last use.
        idx = Index.load(str(scope), layout.read_generation(str(scope)))
        assert idx is not None
        report = Report()
        t0 = time.perf_counter()
        evict(str(scope), idx, idx.bytes() // 2, report)
        evict_s = time.perf_counter() - t0
        print(f"  one eviction pass to half the cache: {report.data.get('evicted', 0)} entries, {evict_s * 1000:.0f} ms "
              f"(rare: a commit evicts to {int(LOW_WATER * 100)}% of the budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
