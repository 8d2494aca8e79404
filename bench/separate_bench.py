"""Benchmark: mypy separate compilation vs whole-repo cacheplug.mypy vs Pants' builtin backend.

    ./pants run bench/separate_bench.py -- [--modules 1000] [--repeats 1] [--samples 3] [--unit-sizes 1,20,50]

Same generated project as bench/mypy_bench.py, in one run, pantsd warm, Pants' default mypy
(1.1.1) or `--mypy VERSION`.
Separate compilation runs once per `--unit-sizes` value (`[mypy].separate_compilation_unit_size`;
default: the option's default).
Scenarios: cold; one leaf-module body edit; one core-module body edit (the module most others
import); one core-module interface edit (its `f` changes return type: its importers get errors).
Each repeat is a new generated project; body edits are made `--samples` times per repeat. Each
edit writes the one edited file, and every mode takes its turn before the next step.

How each mode is made to really run (pantsd memoizes processes whose inputs did not change):
  - whole-repo modes: `--no-local-cache` and a one-line module that changes every run, as in
    mypy_bench.py; cold = their named cache deleted.
  - separate compilation lives on Pants' process cache, so the local cache stays on; cold = a
    mypy flag with no effect (`--cache-dir`, ignored by `mypy --bazel`) set to a new value, so no
    unit (nor the base unit) can be reused. Processes run vs reused are read from the backend's
    own log line.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo
from cacheplug_tests.separatekit import REPO_TOML, sync
from mypy_bench import leaf_and_core, timed

MODES = {
    "builtin": ("pants.backend.python.typecheck.mypy", "mypy_cache"),
    "cacheplug": ("cacheplug.mypy", "cacheplug"),
}  # and one "separate N" mode per unit size
SCENARIOS = ["cold", "leaf body", "core body", "core interface"]


def mypy_options(version: str) -> str:
    """pants.toml lines for a mypy other than Pants' default (unlocked: a benchmark)."""
    if not version:
        return ""
    return f'\n[mypy]\nversion = "mypy=={version}"\nlockfile = "<none>"\nextra_requirements = []\n'


def timed_separate(repo: PantsRepo, cold_nonce: int, unit_size: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    size = [f"--mypy-separate-compilation-unit-size={unit_size}"] if unit_size else []
    result = repo.run("--mypy-separate-compilation", *size, f"--mypy-args=['--cache-dir=.nonce{cold_nonce}']",
                      "check", "::", pantsd=True)
    elapsed = time.perf_counter() - start
    match = re.search(r"mypy separate compilation \[.*\]: (\d+) units?, (\d+) ran", result.stderr)
    if result.exit_code not in (0, 1) or not match:
        raise SystemExit(f"pants check failed ({result.exit_code}):\n{result.stderr[-3000:]}")
    return elapsed, int(match.group(2)), int(match.group(1)) - int(match.group(2))


def unit_size_of(mode: str) -> str:
    """`separate 50` -> `50`; `separate default` -> `` (the option's default)."""
    return mode.split(" ")[1].replace("default", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--mypy", default="", help="a mypy version instead of Pants' default (1.1.1)")
    parser.add_argument("--samples", type=int, default=3, help="body edits of each kind per repeat (each module's body "
                        "edited again: every sample runs), every mode in turn")
    parser.add_argument("--unit-sizes", default="", help="comma-separated [mypy].separate_compilation_unit_size values")
    args = parser.parse_args()
    modes = {**MODES, **{f"separate {size or 'default'}": ("cacheplug.mypy", None) for size in args.unit_sizes.split(",")}}
    separate_modes = [m for m in modes if m.startswith("separate")]
    work = Path(tempfile.mkdtemp(prefix="cacheplug-separate-bench-"))
    print(f"project: {args.modules} modules; mypy {args.mypy or 'default'}; repeats: {args.repeats}; "
          f"work dir {work}", flush=True)
    times = {m: {s: [] for s in SCENARIOS} for m in modes}  # type: dict[str, dict[str, list[float]]]
    processes = {m: {s: [] for s in SCENARIOS} for m in separate_modes}  # type: dict[str, dict[str, list[tuple[int, int]]]]
    repos = {
        mode: PantsRepo(
            work / mode.replace(" ", "-"),
            backends=["pants.backend.python", package],
            extra_toml=REPO_TOML + mypy_options(args.mypy),
        )
        for mode, (package, _) in modes.items()
    }
    try:
        for rep in range(args.repeats):
            projects = {mode: Project.generate(args.modules, random.Random(rep)) for mode in modes}
            for mode, repo in repos.items():
                shutil.rmtree(repo.root / "src", ignore_errors=True)
                repo.write({"src/BUILD": "python_sources()\n", **projects[mode].render()})
                if modes[mode][1]:
                    timed(repo)  # warms pantsd and builds the tool PEXes; not measured
                else:
                    timed_separate(repo, -1 - rep, unit_size_of(mode))  # the same warm-up
            # Scenario by scenario, every mode in turn: all see about the same machine load.
            for scenario in [s for s in SCENARIOS for _ in range(args.samples if "body" in s else 1)]:
                for mode, repo in repos.items():
                    project, named_cache = projects[mode], modes[mode][1]
                    leaf, core = leaf_and_core(project)
                    before = project.render()
                    if scenario == "leaf body":
                        project.modules[leaf].body += 1
                    elif scenario == "core body":
                        project.modules[core].body += 1
                    elif scenario == "core interface":
                        project.modules[core].returns_int = not project.modules[core].returns_int
                    # The edited file only, as an editor saves it (rewriting all 1000 makes Pants
                    # re-read them all, more of a `git checkout` than an edit).
                    sync(repo, before, project.render())
                    if named_cache:
                        if scenario == "cold":
                            shutil.rmtree(repo.named_caches / named_cache, ignore_errors=True)
                        times[mode][scenario].append(timed(repo))
                    else:
                        elapsed, ran, reused = timed_separate(repo, rep, unit_size_of(mode))
                        times[mode][scenario].append(elapsed)
                        processes[mode][scenario].append((ran, reused))
            for mode in modes:
                print(f"  repeat {rep + 1}/{args.repeats} {mode}: "
                      + ", ".join(f"{s} {times[mode][s][-1]:.1f}s" for s in SCENARIOS), flush=True)
    finally:
        for repo in repos.values():
            repo.stop_pantsd()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print(f"\npants check, pantsd warm, mypy {args.mypy or '(Pants default)'} (medians of {args.repeats} repeats; "
          f"body edits: {args.repeats * args.samples} samples):")
    print("  (s) separate compilation, (w) whole-repo cacheplug.mypy, (b) Pants' builtin backend")
    for mode in separate_modes:
        print(f"  (s) = {mode} (unit size)")
        print(f"  {'scenario':<15} {'(s)':>7} {'(w)':>7} {'(b)':>7} {'s/w':>6} {'s/b':>6}  mypy processes ran / reused")
        for s in SCENARIOS:
            sep, whole, builtin = (med(times[m][s]) for m in (mode, "cacheplug", "builtin"))
            ran, reused = processes[mode][s][-1]
            print(f"  {s:<15} {sep:>6.1f}s {whole:>6.1f}s {builtin:>6.1f}s {sep / whole:>6.2f} {sep / builtin:>6.2f}"
                  f"  {ran} / {reused}")
    print("  targets (issue 16): cold s/w <= 2.0 (2.4.x), <= 3.0 (1.1.1); core body: 1 unit ran, s/w <= 1.3; leaf body s/w <= 1.0")


if __name__ == "__main__":
    main()
