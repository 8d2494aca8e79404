"""Benchmark and differential: separate compilation against cold whole-repo mypy on real code.

    ./pants run bench/separate_realcode_bench.py -- [--projects rich,click,...] \\
        [--mypy 1.1.1,1.11.2,1.19.1,2.4.1] [--edits 10] [--seed 0] [--unit-size 1]

Each project is a real package's sdist, fetched from PyPI (tests/python/cacheplug_tests/
realcode.py), checked with `strict = True` and `ignore_missing_imports = True` (its requirements
are not installed). For each project and mypy version, in one temp repo with pantsd: the cold
check, then `--edits` random edits (a body edit, a signature change, a new error, a fixed error,
a new import cycle, a removed module), and after each, `pants check ::` twice: whole-repo mypy
with no cache (`--mypy-shared-cache=off`: the oracle) and separate compilation. Their diagnostics
(sorted lines and the summary) and exit codes must be equal; a difference is printed with the
edits that led to it. The table gives, per project and version: steps, differences, units, and
the wall time of the separate run, cold and the median after an edit, beside the oracle's, and
"cold s/w": the separate run's cold time over the oracle's median after edits (a cold whole-repo
check with Pants' PEXes already built, as the separate cold run has them; the oracle's own first
run also builds them).
`--unit-size` is `[mypy].separate_compilation_unit_size`: 1 (one unit per import-graph component)
by default, so that every import crosses a unit boundary; these projects would be one unit or two
of the option's default size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from cacheplug_tests.realcode import SDISTS, Editor, fetch
from cacheplug_tests.separatekit import SEPARATE, mypy_version_args, ran, realcode_repo, report_difference, sync

PROJECTS = ["click", "jinja2", "httpx", "werkzeug", "markdown-it-py", "rich"]
VERSIONS = ["1.1.1", "1.11.2", "1.19.1", "2.4.1"]


def differential(project: str, version: str, edits: int, seed: int, unit_size: int, work: Path) -> dict:
    editor = Editor(fetch(SDISTS[project]), random.Random(f"{seed} {project} {version}"))
    repo = realcode_repo(work / f"{project}-{version}", editor.files)
    mypy = mypy_version_args(version)
    row: dict = {"project": project, "mypy": version, "modules": len(editor.modules()), "steps": 0,
                 "differences": 0, "units": 0, "cold": [], "separate": []}
    history: list[str] = []
    try:
        for step in range(edits + 1):
            if step:
                before = dict(editor.files)
                history.append(editor.edit())
                sync(repo, before, editor.files)
            start = time.perf_counter()
            cold = repo.run(*mypy, "--mypy-shared-cache=off", "check", "::", pantsd=True)
            middle = time.perf_counter()
            separate = repo.run(*mypy, SEPARATE, f"--mypy-separate-compilation-unit-size={unit_size}", "check", "::",
                                pantsd=True)
            row["cold"].append(middle - start)
            row["separate"].append(time.perf_counter() - middle)
            row["steps"] += 1
            # No log line: pantsd reused the whole check (the edit changed nothing mypy reads,
            # e.g. a .py hidden by its .pyi); the diagnostics are still compared.
            if "mypy separate compilation [" in separate.stderr:
                row["units"] = ran(separate)[0]
            what = f"{project} mypy {version} after {history or ['nothing (cold)']}"
            if report_difference(what, "cold", cold, "separate", separate):
                row["differences"] += 1
    finally:
        repo.stop_pantsd()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", default=",".join(PROJECTS))
    parser.add_argument("--mypy", default=",".join(VERSIONS))
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unit-size", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cacheplug-realcode-") as work:
        for project in args.projects.split(","):
            for version in args.mypy.split(","):
                row = differential(project, version, args.edits, args.seed, args.unit_size, Path(work))
                rows.append(row)
                print(f"{project} mypy {version}: {row['steps']} steps, {row['differences']} differences", flush=True)
    med = statistics.median
    print(f"\n{'project':<15} {'mypy':<7} {'modules':>7} {'units':>5} {'steps':>5} {'diffs':>5} "
          f"{'cold: whole':>11} {'separate':>8} {'edit: whole':>11} {'separate':>8} {'cold s/w':>8}")
    for r in rows:
        edits = slice(1, None) if r["steps"] > 1 else slice(0, None)
        print(f"{r['project']:<15} {r['mypy']:<7} {r['modules']:>7} {r['units']:>5} {r['steps']:>5} {r['differences']:>5} "
              f"{r['cold'][0]:>10.1f}s {r['separate'][0]:>7.1f}s {med(r['cold'][edits]):>10.1f}s {med(r['separate'][edits]):>7.1f}s "
              f"{r['separate'][0] / med(r['cold'][edits]):>8.2f}")
    print(f"\n{sum(r['differences'] for r in rows)} differences in {sum(r['steps'] for r in rows)} steps")


if __name__ == "__main__":
    main()
