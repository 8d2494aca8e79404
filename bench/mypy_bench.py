"""Benchmark: `pants check` with Pants' builtin mypy backend vs `cacheplug.mypy`, and the shim's
own overhead against plain mypy.

    ./pants run bench/mypy_bench.py -- [--modules 1000] [--repeats 3]

(`./pants run` so that this runs with Pants importable and the launcher's environment.)
Everything is measured side by side in one run, on the same generated project, and reported as
medians and ratios (the machine is shared: absolute times are noise, ratios are the result).

Part 1, inside Pants (pantsd warm, `--no-local-cache` so mypy really runs), for each backend:
  cold (its mypy cache deleted), no-change rerun, one leaf-module body edit, one core-module body
  edit (the module most others import); and the same four with plain mypy outside Pants, in one
  directory with its own persistent cache (the floor: no sandbox, no Pants).
Part 2, shim overhead: mypy with a warm cache and nothing changed, through the cacheplug shim
  (setup + commit, outside Pants) vs the same mypy re-run in its own directory on its own warm
  cache (the floor), and vs mypy in a fresh copy of sources and cache (a sandbox without cacheplug).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cacheplug_tests.mypykit import Project, mypy_argv, mypy_python, run_mypy
from cacheplug_tests.storekit import make_sandbox
from cacheplug_tests.pants_repo import PantsRepo
from cacheplug_tests.separatekit import sync

BACKENDS = {
    "builtin": ("pants.backend.python.typecheck.mypy", "mypy_cache"),
    "cacheplug": ("cacheplug.mypy", "cacheplug"),
}
SCENARIOS = ["cold", "no-change", "leaf edit", "core edit"]
PANTS_DEFAULT_MYPY = "1.1.1"  # Pants 2.17's [mypy] default, which both backends run


def leaf_and_core(project: Project) -> tuple[str, str]:
    importers = {name: 0 for name in project.modules}
    for m in project.modules.values():
        for d in m.deps:
            importers[d] += 1
    leaf = max((n for n, c in importers.items() if c == 0), key=lambda n: int(n[1:]))
    core = max(importers, key=lambda n: importers[n])
    return leaf, core


def timed(repo: PantsRepo) -> float:
    # pantsd memoizes a process whose inputs did not change, even with --no-local-cache: a
    # one-line module that changes every run makes mypy really run, in both backends alike.
    timed.runs = getattr(timed, "runs", 0) + 1  # type: ignore[attr-defined]
    repo.write({"src/bench_nonce.py": f"RUN = {timed.runs}\n"})  # type: ignore[attr-defined]
    start = time.perf_counter()
    result = repo.run("--no-local-cache", "check", "::", pantsd=True)
    elapsed = time.perf_counter() - start
    if result.exit_code not in (0, 1) or "✕ mypy failed" not in result.stderr + result.stdout and result.exit_code:
        sys.exit(f"pants check failed ({result.exit_code}):\n{result.stderr[-3000:]}")
    if "cacheplug" in str(repo.root.name) and ("mypy cache [" not in result.stderr or "cache unavailable" in result.stderr):
        sys.exit(f"cacheplug's cache was not used:\n{result.stderr[-3000:]}")
    return elapsed


def timed_plain(root: Path, files: dict[str, str], version: str = PANTS_DEFAULT_MYPY) -> float:
    """Plain mypy outside Pants, in one directory with its own persistent cache dir."""
    for rel, text in files.items():
        if not (root / rel).exists() or (root / rel).read_text() != text:  # keep unchanged mtimes
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    argv = [mypy_python(version), "-m", "mypy", "--python-version=3.11", "--cache-dir=.mypy_cache", *sorted(files)]
    start = time.perf_counter()
    subprocess.run(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # 1.1.1 warns on 3.11
    return time.perf_counter() - start


def bench_pants(n: int, repeats: int, work: Path) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {b: {s: [] for s in SCENARIOS} for b in [*BACKENDS, "plain"]}
    repos = {}
    for backend, (package, _) in BACKENDS.items():
        repos[backend] = PantsRepo(
            work / backend,
            backends=["pants.backend.python", package],
            extra_toml='[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n',
        )
    try:
        for rep in range(repeats):
            project = Project.generate(n, random.Random(rep))
            leaf, core = leaf_and_core(project)
            for backend, repo in repos.items():  # interleaved: both see the same machine load
                shutil.rmtree(repo.root / "src", ignore_errors=True)
                repo.write({"src/BUILD": "python_sources()\n", **project.render()})
                timed(repo)  # warms pantsd and builds the tool PEXes; not measured
                shutil.rmtree(repo.named_caches / BACKENDS[backend][1], ignore_errors=True)
                times[backend]["cold"].append(timed(repo))
                times[backend]["no-change"].append(timed(repo))
                for scenario, module in (("leaf edit", leaf), ("core edit", core)):
                    # An edit writes the edited file only (rewriting all makes Pants re-read all).
                    before = project.render()
                    project.modules[module].body += 1
                    sync(repo, before, project.render())
                    times[backend][scenario].append(timed(repo))
                for module in (leaf, core):  # the next backend starts from the same files
                    project.modules[module].body -= 1
                print(f"  repeat {rep + 1}/{repeats} {backend}: "
                      + ", ".join(f"{s} {times[backend][s][-1]:.1f}s" for s in SCENARIOS), flush=True)
            plain = work / "plain"
            shutil.rmtree(plain, ignore_errors=True)
            files = {rel: text for rel, text in project.render().items() if rel.endswith(".py")}
            times["plain"]["cold"].append(timed_plain(plain, files))
            times["plain"]["no-change"].append(timed_plain(plain, files))
            for scenario, module in (("leaf edit", leaf), ("core edit", core)):
                project.modules[module].body += 1
                times["plain"][scenario].append(timed_plain(plain, project.render()))
                project.modules[module].body -= 1
            print(f"  repeat {rep + 1}/{repeats} plain mypy: "
                  + ", ".join(f"{s} {times['plain'][s][-1]:.1f}s" for s in SCENARIOS), flush=True)
    finally:
        for repo in repos.values():
            repo.stop_pantsd()
    return times


def bench_shim(n: int, repeats: int, work: Path, version: str) -> dict[str, list[float]]:
    """Warm no-change mypy, timed from process start to exit, `repeats`*3 times each, alternating:
    - shim: as Pants runs it (a fresh sandbox, sources with new mtimes), setup + mypy + commit;
    - plain: mypy alone, re-run in one directory on its own warm cache (mtimes unchanged): what a
      developer gets without Pants, the floor;
    - fresh: mypy alone in a fresh copy of the sources and of a warm cache (new mtimes, no
      quickstart file): what a sandbox costs mypy without cacheplug's setup."""
    files = Project.generate(n, random.Random(0)).render()
    named_cache = work / "shim" / "named_caches" / "cacheplug"
    run_mypy(named_cache, files, version)  # warms the shared cache
    spec, argv, inputs = mypy_argv(version, files)
    files = {**files, **inputs}
    direct_argv = [a for a in argv if not a.startswith("--quickstart-file")]
    warm = work / "warm-cache"
    plain = work / "plain"
    times: dict[str, list[float]] = {"shim": [], "plain": [], "fresh": []}

    def write_tree(root: Path) -> None:
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)

    def timed(cmd: list[str], cwd: Path) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    for i in range(repeats * 3 + 1):
        sandbox = make_sandbox(named_cache, argv, files, spec=spec, bytecode=True)
        elapsed = timed(["bash", ".cacheplug/shim.sh", *argv], sandbox)
        if i == 0:  # the first run after warming: keep its cache as the direct runs' warm copy
            shutil.copytree(sandbox / ".cacheplug/cache", warm)
            write_tree(plain)
            shutil.copytree(warm, plain / ".cacheplug/cache")
            timed(direct_argv, plain)  # its cache now matches its files' mtimes
        else:
            times["shim"].append(elapsed)
            times["plain"].append(timed(direct_argv, plain))
        shutil.rmtree(sandbox)
        fresh = work / "fresh"
        write_tree(fresh)
        shutil.copytree(warm, fresh / ".cacheplug/cache")
        if i:
            times["fresh"].append(timed(direct_argv, fresh))
        shutil.rmtree(fresh)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mypy", default="1.19.1", help="mypy version for the shim-overhead part")
    parser.add_argument("--skip-pants", action="store_true", help="only the shim-overhead part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cacheplug-bench-"))
    print(f"project: {args.modules} modules; repeats: {args.repeats}; work dir {work}", flush=True)
    try:
        shim = bench_shim(args.modules, args.repeats, work, args.mypy)
        med = statistics.median
        print(f"\nshim overhead, warm no-change mypy {args.mypy} (median of {len(shim['shim'])}):")
        print(f"  through the shim {med(shim['shim']):.2f}s, plain mypy (own directory) {med(shim['plain']):.2f}s,"
              f" ratio {med(shim['shim']) / med(shim['plain']):.3f} (target <= 1.10)")
        print(f"  plain mypy in a fresh copy (new mtimes, no quickstart) {med(shim['fresh']):.2f}s,"
              f" shim / that {med(shim['shim']) / med(shim['fresh']):.3f}")
        if args.skip_pants:
            return
        times = bench_pants(args.modules, args.repeats, work)
        print(f"\npants check, pantsd warm, --no-local-cache, Pants' default mypy (median of {args.repeats}):")
        print("  (a) Pants' builtin backend, (b) cacheplug.mypy, (c) plain mypy outside Pants, own warm cache")
        print(f"  {'scenario':<10} {'(a)':>7} {'(b)':>7} {'(c)':>7} {'b/a':>6} {'b/c':>6}")
        for s in SCENARIOS:
            a, b, c = (med(times[k][s]) for k in ("builtin", "cacheplug", "plain"))
            print(f"  {s:<10} {a:>6.1f}s {b:>6.1f}s {c:>6.1f}s {b / a:>6.2f} {b / c:>6.2f}")
        print("  target: leaf edit b/a <= 0.8; b/c is mostly Pants' own per-run cost")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
