"""Benchmark: what a warm `pants check ::` costs besides mypy, whole-repo mode (issue 19, item 3).

    ./pants run bench/pants_floor.py -- [--modules 1000] [--repeats 5] [--mypy 1.19.1]

One generated project (as bench/mypy_bench.py's), one repo with `cacheplug.mypy`, pantsd warm.
Each repeat edits a leaf module's body, then runs, interleaved so that all see the same load:
  - cacheplug: `pants check ::` (mypy runs through the shim; `--stats-log` gives the process time);
  - floor:     `pants --mypy-skip check ::`, after the same kind of edit: what Pants does per run
               with no mypy partition at all (options, file watching, target graph, the goal);
  - plain:     mypy alone after the same edit, re-run in its own directory on its own warm cache.
Prints medians, and (cacheplug - floor) / plain: what the mypy step costs through Pants and
cacheplug against mypy alone. Target (issue 19): <= 1.2.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo
from cacheplug_tests.separatekit import mypy_version_args, sync
from mypy_bench import leaf_and_core, timed_plain


def stat(stderr: str, name: str) -> int:
    match = re.search(rf"^\s*{name}: (\d+)$", stderr, re.M)
    return int(match.group(1)) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mypy", default="1.19.1", help="mypy version, for Pants and for plain mypy")
    args = parser.parse_args()
    mypy = mypy_version_args(args.mypy)
    project = Project.generate(args.modules, random.Random(0))
    leaf, _ = leaf_and_core(project)
    times: dict[str, list[float]] = {"cacheplug": [], "floor": [], "plain": [], "mypy process": []}
    with tempfile.TemporaryDirectory(prefix="cacheplug-floor-") as tmp:
        repo = PantsRepo(Path(tmp) / "repo", backends=["pants.backend.python", "cacheplug.mypy"],
                         extra_toml='[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n')
        plain = Path(tmp) / "plain"

        repo.write({"src/BUILD": "python_sources()\n", **project.render()})

        def edit() -> dict[str, str]:
            """The leaf's body changes; only its file is written (rewriting all makes Pants re-read all)."""
            before = project.render()
            project.modules[leaf].body += 1
            files = project.render()
            sync(repo, before, files)
            return {rel: text for rel, text in files.items() if rel.endswith(".py")}

        def check(*flags: str) -> tuple[float, str]:
            start = time.perf_counter()
            result = repo.run(*mypy, *flags, "check", "::", pantsd=True)
            elapsed = time.perf_counter() - start
            if result.exit_code not in (0, 1):
                sys.exit(f"pants check failed ({result.exit_code}):\n{result.stderr[-3000:]}")
            return elapsed, result.stderr

        try:
            files = edit()
            check()  # builds the PEXes, warms pantsd and the shared cache; not measured
            check("--mypy-skip")
            timed_plain(plain, files, args.mypy)
            for rep in range(args.repeats):
                edit()
                elapsed, stderr = check("--stats-log")
                if "mypy cache [" not in stderr:
                    sys.exit(f"cacheplug's cache was not used:\n{stderr[-3000:]}")
                times["cacheplug"].append(elapsed)
                times["mypy process"].append(stat(stderr, "local_process_total_time_run_ms") / 1000)
                edit()
                times["floor"].append(check("--mypy-skip")[0])
                times["plain"].append(timed_plain(plain, edit(), args.mypy))
                print(f"  repeat {rep + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                      flush=True)
        finally:
            repo.stop_pantsd()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\npants check ::, leaf body edit, pantsd warm, {args.modules} modules, mypy {args.mypy} "
          f"(median of {args.repeats}):")
    for k, v in med.items():
        print(f"  {k:<13} {v:6.2f}s")
    print(f"  Pants around the mypy process (cacheplug - floor - process): {med['cacheplug'] - med['floor'] - med['mypy process']:.2f}s")
    print(f"  (cacheplug - floor) / plain = {(med['cacheplug'] - med['floor']) / med['plain']:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
