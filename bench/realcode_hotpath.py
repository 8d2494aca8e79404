"""Benchmark: the whole-repo hot path on a real package (issue 19's first target).

    ./pants run bench/realcode_hotpath.py -- [--project django] [--mypy 1.19.1,2.4.1] [--repeats 5] [--only DIR]

The package is a real sdist from PyPI (tests/python/cacheplug_tests/realcode.py), checked as a
new user would: `ignore_missing_imports = True` (its requirements are not installed), Python 3.11,
`cacheplug.mypy` in whole-repo mode, pantsd warm. After a cold check (not measured), each repeat
adds one one-line module and runs `pants check ::`; it reads, from cacheplug's log line, the mypy
process's own time (`process_ms`: shim, store setup and commit, mypy, Python start-ups) and the
store's parts. Beside it, interleaved, plain mypy in its own directory on its own warm cache:
a no-change re-run (the target's baseline) and a run after the same added module.

Prints medians and `process / plain no-change`: target (issue 19) <= 1.25. Also compares each
check's diagnostics with plain mypy's after the same edit (both warm); a difference is printed.

`--only src/django/contrib/auth`: a partial check, `pants check DIR::`, as users run it on what
they work on (and `--changed-since` does): mypy gets DIR's files listed and finds the rest through
MYPYPATH (the source root); plain mypy gets the same list and MYPYPATH, and the module is added
in DIR. Pants' sandbox holds only the files dependency inference finds (Django imports some
modules by name at run time), so plain mypy, with the whole package there, checks more modules and
reports more: its times are an upper bound, and the diagnostics' oracle is instead one cold
`pants check` (`--mypy-shared-cache=off`) after the last repeat.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cacheplug_tests.mypykit import mypy_python
from cacheplug_tests.realcode import SDISTS, fetch
from cacheplug_tests.separatekit import diagnostics, mypy_version_args, realcode_repo

CONFIG = "[mypy]\nignore_missing_imports = True\n"  # what the issue was filed with
LINE = re.compile(r"mypy cache \[[^\]]*\]: (.*); setup (\d+) ms, commit (\d+) ms of a (\d+) ms process")


def plain_run(root: Path, version: str, only: str) -> tuple[float, list[str]]:
    """Plain mypy over the package (or the files under `only`) in its own directory, on its own
    persistent cache."""
    files = sorted(str(p.relative_to(root)) for p in (root / only).rglob("*.py*") if p.suffix in (".py", ".pyi"))
    argv = [mypy_python(version), "-m", "mypy", "--python-version=3.11", "--cache-dir=.mypy_cache", *files]
    start = time.perf_counter()
    out = subprocess.run(argv, cwd=root, capture_output=True, text=True, env={**os.environ, "MYPYPATH": "src"})
    elapsed = time.perf_counter() - start
    lines = out.stdout.splitlines()
    return elapsed, sorted(l for l in lines if re.match(r"src/\S+:\d+: (error|note):", l)) + [
        l for l in lines if l.startswith(("Found ", "Success: "))]


def bench(project: str, version: str, repeats: int, work: Path, only: str) -> dict[str, float]:
    files = {**fetch(SDISTS[project]), "mypy.ini": CONFIG}
    repo = realcode_repo(work / f"repo-{version}", files)
    repo.write({"mypy.ini": CONFIG})
    plain = work / f"plain-{version}"
    for rel, text in files.items():
        (plain / rel).parent.mkdir(parents=True, exist_ok=True)
        (plain / rel).write_text(text)
    package = only if only != "src" else min((p.rsplit("/", 1)[0] for p in files if p.endswith("__init__.py")), key=len)
    target = f"{only}::"
    mypy = mypy_version_args(version)
    times: dict[str, list[float]] = {k: [] for k in ("check", "process", "setup", "commit", "plain no-change", "plain edit")}
    counts = ""
    try:
        repo.run(*mypy, "check", target, pantsd=True)  # cold: PEXes, pantsd, the shared cache
        plain_run(plain, version, only)
        for rep in range(repeats):
            new = {f"{package}/_cacheplug_added_{rep}.py": f"ADDED = {rep}\n"}
            repo.write(new)
            start = time.perf_counter()
            result = repo.run(*mypy, "check", target, pantsd=True)
            times["check"].append(time.perf_counter() - start)
            match = LINE.search(result.stderr)
            if result.exit_code not in (0, 1) or not match:
                sys.exit(f"pants check failed ({result.exit_code}) or cacheplug's line is missing:\n{result.stderr[-3000:]}")
            counts = match.group(1)
            for key, group in (("setup", 2), ("commit", 3), ("process", 4)):
                times[key].append(int(match.group(group)) / 1000)
            for rel, text in new.items():
                (plain / rel).write_text(text)
            elapsed, plain_diagnostics = plain_run(plain, version, only)
            times["plain edit"].append(elapsed)
            times["plain no-change"].append(plain_run(plain, version, only)[0])
            if only == "src" and diagnostics(result) != plain_diagnostics:
                only_pants = sorted(set(diagnostics(result)) - set(plain_diagnostics))
                only_plain = sorted(set(plain_diagnostics) - set(diagnostics(result)))
                print(f"DIFFERENCE {project} mypy {version} repeat {rep + 1}:\n"
                      + "".join(f"  only cacheplug: {l}\n" for l in only_pants[:10])
                      + "".join(f"  only plain: {l}\n" for l in only_plain[:10]), flush=True)
            print(f"  {project} {version} repeat {rep + 1}/{repeats}: "
                  + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()) + f" [{counts}]", flush=True)
        if only != "src":
            cold = repo.run(*mypy, "--mypy-shared-cache=off", "check", target, pantsd=True)
            same = diagnostics(cold) == diagnostics(result)
            print(f"  diagnostics of the last check {'==' if same else '!='} a cold check's "
                  f"({len(diagnostics(cold))} lines)", flush=True)
    finally:
        repo.stop_pantsd()
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{project} ({len([p for p in files if p.endswith('.py')])} modules, `pants check {target}`), mypy {version}, "
          f"one one-line module added per run, medians of {repeats}; last cache line: {counts}")
    for key, value in medians.items():
        print(f"  {key:<16} {value:6.2f}s")
    print(f"  process / plain no-change = {medians['process'] / medians['plain no-change']:.2f} (target <= 1.25); "
          f"process / plain after the same edit = {medians['process'] / medians['plain edit']:.2f}")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default="django", choices=sorted(SDISTS))
    parser.add_argument("--mypy", default="1.19.1,2.4.1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="src", help="check DIR:: only (default: the whole package, ::)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cacheplug-realhot-") as tmp:
        for version in args.mypy.split(","):
            bench(args.project, version, args.repeats, Path(tmp), args.only.rstrip("/"))


if __name__ == "__main__":
    main()
