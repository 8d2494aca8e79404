"""Benchmark: separate compilation executed on a REAPI remote execution engine, and a model for scale.

    ./pants run bench/remote_exec_bench.py -- [--projects rich,werkzeug,generated-200] [--mypy 2.4.1,1.19.1] \\
        [--unit-size 1] [--jobs 2]

Each project is a real package's sdist from PyPI (tests/python/cacheplug_tests/realcode.py),
checked with `strict = True` and `ignore_missing_imports = True`, or `generated-N`: the tests'
generated project of N modules in a layered import DAG (real packages are mostly one large import
cycle, which is one unit: the DAG shows what more workers can do). For each project and mypy
version, two checkouts, each with pantsd and its own empty caches:
  - local: `pants check ::` with whole-repo mypy and no cache (the oracle; it also builds the
    tools' PEXes), then a cold separate-compilation check, timed;
  - remote: the same two checks with every process on the engine (bench/remote_exec.sh:
    buildbox-casd running `--jobs` actions at a time on this machine), the second timed.
Diagnostics must be equal across the three. From the local cold check's units (their DAG and each
unit's process time: the debug line separate.py logs) the model prints the critical path (base
unit + the longest chain of units: what no number of workers beats) and the process time a cold
check would take on W workers (list scheduling, longest remaining chain first), beside the measured
wall times (which add Pants' own work: reading files, the import graph, uploads).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo, PantsResult
from cacheplug_tests.realcode import SDISTS, fetch
from cacheplug_tests.remotekit import remote_engine, remote_execution_flags
from cacheplug_tests.separatekit import (
    SEPARATE,
    counter,
    mypy_version_args,
    project_repo,
    ran,
    realcode_repo,
    report_difference,
)

ENGINE_SCRIPT = Path(__file__).parent / "remote_exec.sh"
TIMELINE = """--log-levels-by-target={"cacheplug.mypy.separate": "debug"}"""
WORKERS = (1, 2, 8, 64, 512)


def timeline(result: PantsResult) -> dict:
    match = re.search(r"mypy separate compilation timeline: (\{.*\})$", result.stderr, re.M)
    assert match, result.stderr[-3000:]
    return json.loads(match.group(1))


def users_of(units: list[dict]) -> list[list[int]]:
    """Per unit: the units that wait for it (the inverse of "after", which has no repeats)."""
    users: list[list[int]] = [[] for _ in units]
    for i, unit in enumerate(units):
        for d in unit["after"]:
            users[d].append(i)
    return users


def critical_path_ms(units: list[dict]) -> list[int]:
    """Per unit: its time plus the longest chain of units that wait for it."""
    users = users_of(units)
    tail = [0] * len(units)
    for i in reversed(range(len(units))):  # units come in dependency order
        tail[i] = units[i]["ms"] + max((tail[j] for j in users[i]), default=0)
    return tail


def projected_ms(base_ms: int, units: list[dict], workers: int) -> int:
    """A cold check's process time on `workers` machines: the base unit, then each unit as soon as
    the units it waits for are done and a worker is free, the longest remaining chain first."""
    tail = critical_path_ms(units)
    waiting = [len(u["after"]) for u in units]
    users = users_of(units)
    ready = [(-tail[i], i) for i in range(len(units)) if not waiting[i]]
    heapq.heapify(ready)
    running: list[tuple[int, int]] = []
    now, idle = base_ms, workers
    while ready or running:
        while ready and idle:
            _, i = heapq.heappop(ready)
            heapq.heappush(running, (now + units[i]["ms"], i))
            idle -= 1
        now, i = heapq.heappop(running)
        idle += 1
        for j in users[i]:
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(ready, (-tail[j], j))
    return now


def timed(repo: PantsRepo, *args: str) -> tuple[PantsResult, float]:
    start = time.perf_counter()
    # Every run: pantsd keeps the log levels it started with (the option does not restart it).
    result = repo.run(*args, TIMELINE, "--stats-log", "check", "::", pantsd=True, timeout=4 * 3600)
    return result, time.perf_counter() - start


def repo_maker(project: str) -> Callable[[Path], PantsRepo]:
    if project.startswith("generated-"):
        generated = Project.generate(int(project.split("-", 1)[1]), random.Random(0))
        return lambda root: project_repo(root, generated)
    files = fetch(SDISTS[project])
    return lambda root: realcode_repo(root, files)


def bench(project: str, version: str, unit_size: int, engine: dict[str, str], work: Path) -> dict:
    make_repo = repo_maker(project)
    mypy = mypy_version_args(version)
    separate = (*mypy, SEPARATE, f"--mypy-separate-compilation-unit-size={unit_size}")
    local = make_repo(work / f"{project}-{version}-local")
    remote = make_repo(work / f"{project}-{version}-remote")
    try:
        oracle, _ = timed(local, *mypy, "--mypy-shared-cache=off")
        local_cold, local_s = timed(local, *separate)
        timed(remote, *mypy, "--mypy-shared-cache=off", *remote_execution_flags(engine))
        remote_cold, remote_s = timed(remote, *separate, *remote_execution_flags(engine))
    finally:
        local.stop_pantsd()
        remote.stop_pantsd()
    differs = [report_difference(f"{project} mypy {version}", "cold whole-repo", oracle, name, result)
               for name, result in (("local separate", local_cold), ("remote separate", remote_cold))]
    units, ran_remote = ran(remote_cold)
    line = timeline(local_cold)
    # Pants' time for each remotely executed unit: the engine's queue, staging and capture included.
    remote_ms = [u["ms"] for u in timeline(remote_cold)["units"]]
    return {
        "project": project, "mypy": version, "units": units, "ran remotely": ran_remote,
        "remote_execution_success": counter(remote_cold, "remote_execution_success"),
        "local_execution_requests": counter(remote_cold, "local_execution_requests"),
        "same": not any(differs),
        "local s": local_s, "remote s": remote_s, "base ms": line["base_ms"],
        "sum ms": line["base_ms"] + sum(u["ms"] for u in line["units"]),
        "unit ms local": sorted(u["ms"] for u in line["units"])[len(line["units"]) // 2],
        "unit ms remote": sorted(remote_ms)[len(remote_ms) // 2] if None not in remote_ms else None,
        "critical ms": line["base_ms"] + max(critical_path_ms(line["units"]), default=0),
        **{f"W={w}": projected_ms(line["base_ms"], line["units"], w) / 1000 for w in WORKERS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", default="rich,werkzeug,generated-200")
    parser.add_argument("--mypy", default="2.4.1,1.19.1")
    parser.add_argument("--unit-size", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="actions the engine runs at a time")
    args = parser.parse_args()
    rows = []
    os.environ["CACHEPLUG_REMOTE_EXEC_JOBS"] = str(args.jobs)  # read by remote_exec.sh
    os.environ.setdefault("CACHEPLUG_REMOTE_EXEC_MAX_SECONDS", str(12 * 3600))  # outlive a long bench
    with tempfile.TemporaryDirectory(prefix="cacheplug-remote-exec-") as work:
        with remote_engine(ENGINE_SCRIPT, Path(work) / "engine") as engine:
            for project in args.projects.split(","):
                for version in args.mypy.split(","):
                    row = bench(project, version, args.unit_size, engine, Path(work))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(f"\nunit size {args.unit_size}, engine jobs {args.jobs}; measured: `pants check ::` wall time, cold "
          "(tools' PEXes built); model: process time from the local run's per-unit times")
    print(f"{'project':<14} {'mypy':<7} {'units':>5} {'remote ok':>9} {'same':>5} {'local':>7} {'remote':>7} "
          f"{'unit l/r':>11} {'sum':>7} {'critical':>8} " + " ".join(f"{'W=' + str(w):>7}" for w in WORKERS))
    for r in rows:
        ok = f"{r['remote_execution_success']}/{r['local_execution_requests']}"
        unit = f"{r['unit ms local']}/{r['unit ms remote']}"
        print(f"{r['project']:<14} {r['mypy']:<7} {r['units']:>5} {ok:>9} {str(r['same']):>5} {r['local s']:>6.1f}s "
              f"{r['remote s']:>6.1f}s {unit:>11} {r['sum ms'] / 1000:>6.1f}s {r['critical ms'] / 1000:>7.1f}s "
              + " ".join(f"{r[f'W={w}']:>6.1f}s" for w in WORKERS))
    print("remote ok: processes executed on the engine / executed locally; same: diagnostics and exit code of the "
          "remote check == local separate == cold whole-repo; unit l/r: a unit's median process time in ms as Pants "
          "measured it, local / on the engine (its queue, staging and capture included)")
    differing = [f"{r['project']} mypy {r['mypy']}" for r in rows if not r["same"]]
    if differing:
        sys.exit(f"DIFFERENCE: the remote check's diagnostics differ from local ones for {', '.join(differing)}")


if __name__ == "__main__":
    main()
