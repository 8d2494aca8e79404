"""The reliability suite: scenarios that drive the real cache shim and store.py with real processes
and count what they tried and every failure they found.

Each scenario returns an `Outcome`. reliability_test.py runs them small inside `./pants test ::`;
bench/reliability.py runs them at full size and prints the figures in docs/RELIABILITY.md. The
oracle is always faketool run cold on the same inputs; `check_scope` is the integrity check.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cacheplug.python import cache_policy
from cacheplug.store import layout
from cacheplug_tests import fake_policy
from cacheplug_tests import fakeproject
from cacheplug_tests.storekit import (
    FAKE_SPEC,
    PYTEST_SPEC,
    Run,
    check_scope,
    disk_bytes,
    finish,
    make_sandbox,
    run_cold,
    run_fake,
    same_as_cold,
    scope_path,
    start,
    start_fake,
    tree_state,
)


@dataclass
class Outcome:
    scenario: str
    tried: int = 0  # runs, kills, corruptions...: what the figure counts
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def expect_cold(self, run: Run, sources: dict[str, str], what: str) -> None:
        diff = same_as_cold(run, sources)
        if diff:
            self.failures.append(f"{what}: {diff}")

    def expect_intact(self, scope: Path, what: str) -> None:
        for problem in check_scope(scope)[1]:
            self.failures.append(f"{what}: {problem}")


def _temp_files(scope: Path) -> int:
    return sum(1 for p in scope.rglob(f"{layout.TMP_PREFIX}*"))


# --- R1: load --------------------------------------------------------------------------------------


def _load_sources(writer: int, run: int) -> dict[str, str]:
    # Groups every writer writes with its own content (a torn or mixed group is visible), groups
    # only this writer writes, and one group per run that no later run ever touches again (so a
    # commit that replaced the cache instead of merging into it would lose it).
    sources = {f"shared{i}": f"def s{i}\n# writer {writer} run {run}\n" for i in range(8)}
    sources.update({f"w{writer}_{i}": f"import shared{i}\nuse shared{i}.s{i}\ndef w{i}\n" for i in range(4)})
    sources[f"u{writer}_{run}"] = f"import w{writer}_0\nuse w{writer}_0.w0\ndef u\n" + ("error seeded\n" if run % 3 == 0 else "")
    return sources


def load(named_cache: Path, writers: int, runs: int, lock: bool = True) -> Outcome:
    """`writers` concurrent writers, each doing `runs` runs in a row, on one cache scope."""
    out = Outcome(f"R1 load ({writers} writers x {runs} runs, {'flock' if lock else 'lock disabled'})")
    env = {} if lock else {"CACHEPLUG_FAULT": "nolock"}
    waits: list[int] = []

    def writer(w: int) -> None:
        for r in range(runs):
            sources = _load_sources(w, r)
            run = run_fake(named_cache, sources, env)
            out.expect_cold(run, sources, f"writer {w} run {r}")
            out.expect(run.report.get("warnings") == [], f"writer {w} run {r} warned: {run.report.get('warnings')}")
            waits.append(run.report.get("lock_wait_ms", 0))  # list.append is atomic across threads

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(writer, range(writers)))
    out.tried = len(waits)
    scope = scope_path(named_cache)
    # Without the lock, two commits can each save an index missing the other's entry (the next
    # rebuild fixes it; only the budget is off meanwhile): the index is checked with the lock only.
    groups, problems = check_scope(scope, check_index=lock)
    out.failures += [f"torn or invalid: {p}" for p in problems]
    for w in range(writers):
        for r in range(runs):
            want = _load_sources(w, r)[f"u{w}_{r}"]
            got = groups.get(f"u{w}_{r}", {}).get(f"u{w}_{r}.data.json")
            out.expect(got is not None and json.loads(got)["src"] == want, f"lost: writer {w}'s group u{w}_{r}")
        for i in range(4):
            out.expect(f"w{w}_{i}" in groups, f"lost: writer {w}'s group w{w}_{i}")
    last = {_load_sources(w, runs - 1)[f"shared{i}"] for w in range(writers) for i in range(8)}
    for i in range(8):
        data = groups.get(f"shared{i}", {}).get(f"shared{i}.data.json")
        # The last commit of a shared group is some writer's last run: anything else was lost.
        out.expect(data is not None and json.loads(data)["src"] in last, f"shared{i} is not from a last run")
    out.figures.update(groups=len(groups), max_lock_wait_ms=max(waits, default=0), temp_files_left=_temp_files(scope))
    return out


# --- R2: kill -9 -----------------------------------------------------------------------------------

# Where store.py can be killed by the fault hook: within setup (after the n-th file seeded, while
# writing its manifest), within commit (while an object is linked in, after the n-th object, with
# the lock held, while a record is being written, after the n-th record, while bumping the
# generation, while saving the index, after the n-th entry evicted).
KILL_POINTS = ["setup-file", "write-manifest", "write-object", "commit-object", "commit-locked", "write-record",
               "commit-record", "write-generation", "write-index", "evict"]
ONCE_PER_RUN = {"write-manifest", "commit-locked", "write-generation", "write-index"}


def crashes(named_cache: Path, kills: int, seed: int = 0) -> Outcome:
    """kill -9 at random points of setup, tool run and commit; after each, the cache must pass the
    integrity check and the next run must equal a cold run."""
    out = Outcome(f"R2 kill -9 ({kills} kills)")
    rng = random.Random(seed)
    scope = scope_path(named_cache)
    sources = fakeproject.generate(30, rng)
    t0 = time.monotonic()
    run_fake(named_cache, sources)
    run_time = time.monotonic() - t0
    # A budget below what the project needs, so that commits evict too (and can be killed there).
    budget: dict[str, Any] = {"max_size": int(disk_bytes(scope) * 0.8)}
    log = named_cache.parent / "fault.log"
    phases: collections.Counter[str] = collections.Counter()
    points: collections.Counter[str] = collections.Counter()
    attempts = hook_tries = 0
    while out.tried < kills and attempts < 4 * kills:
        attempts += 1
        for _ in range(rng.randint(1, 3)):
            fakeproject.edit(sources, rng)
        how = rng.random()
        if how < 0.5:  # store.py killed by its fault hook; the shim carries on with the tool
            point = KILL_POINTS[hook_tries % len(KILL_POINTS)]  # every point in turn
            n = 1 if point in ONCE_PER_RUN else rng.randint(1, 5)
            hook_tries += 1
            log.unlink(missing_ok=True)
            run = run_fake(named_cache, sources, {"CACHEPLUG_FAULT": f"kill:{point}:{n}", "CACHEPLUG_FAULT_LOG": str(log)}, **budget)
            out.expect_cold(run, sources, f"run with store.py killed at {point}#{n}")
            if not log.exists():
                continue  # the point was not reached n times: not a kill
            phases["setup (hook)" if point in ("setup-file", "write-manifest") else "commit (hook)"] += 1
            points[point] += 1
        else:  # the whole shim killed from outside: while the tool runs, or at a random time
            in_tool = how < 0.7
            env = {"FAKETOOL_STARTED": "started"}  # relative to the sandbox
            if in_tool:
                env["FAKETOOL_SLEEP"] = str(rng.uniform(0, 0.2))
            sandbox, proc = start_fake(named_cache, sources, env, **budget)
            if in_tool:
                while not (sandbox / "started").exists() and proc.poll() is None:
                    time.sleep(0.002)
            else:
                time.sleep(rng.uniform(0, run_time * 1.2))
            if proc.poll() is not None:  # finished before the kill
                out.expect_cold(finish(sandbox, proc), sources, "a run that finished before its kill")
                continue
            started = (sandbox / "started").exists()
            os.killpg(proc.pid, signal.SIGKILL)
            run = finish(sandbox, proc)
            if run.exit_code != -signal.SIGKILL:  # it exited just before the kill
                out.expect_cold(run, sources, "a run that exited as it was killed")
                continue
            phases["tool (external)" if in_tool else ("tool or commit (external, random time)" if started else "setup (external, random time)")] += 1
        out.tried += 1
        out.expect_intact(scope, f"after kill {out.tried}")
        out.expect_cold(run_fake(named_cache, sources, **budget), sources, f"run after kill {out.tried}")
    out.expect(out.tried == kills, f"only {out.tried} of {kills} kills landed in {attempts} attempts")
    out.figures.update(phases=dict(sorted(phases.items())), hook_points=dict(sorted(points.items())), temp_files_left=_temp_files(scope))
    return out


# --- R3: corrupt and foreign entries ---------------------------------------------------------------

CORRUPTIONS = [
    "truncated-object", "empty-object", "garbage-object", "missing-object", "symlink-object",
    "garbage-record", "truncated-record", "empty-record", "foreign-version-record",
    "wrong-scope-record", "misplaced-record", "escaping-record", "absolute-record",
]
OTHER_SPEC = dataclasses.replace(FAKE_SPEC, scope=("another scope",))


def corrupt(named_cache: Path, sources: dict[str, str], case: str, rng: random.Random) -> None:
    """Damage one random entry of the fake scope in the way `case` says."""
    scope = scope_path(named_cache)
    records = sorted((scope / "entries").glob("*/*"))
    intact = [r for r in records if _loads(r)]
    if not intact:
        return
    record = rng.choice(intact)  # not one damaged already
    obj_name = rng.choice(list(json.loads(record.read_text())["files"].values()))[0]
    obj = scope / "objects" / obj_name[:2] / obj_name
    if case.endswith("-object"):
        if obj.is_symlink() or not obj.exists():
            return  # this object (shared by several groups) was hit already
        os.chmod(obj, 0o600)
    if case == "truncated-object":
        obj.write_bytes(obj.read_bytes()[:-3])
    elif case == "empty-object":
        obj.write_bytes(b"")
    elif case == "garbage-object":  # same size, different bytes
        obj.write_bytes(bytes(rng.randrange(256) for _ in range(obj.stat().st_size)))
    elif case == "missing-object":
        obj.unlink()
    elif case == "symlink-object":
        obj.unlink()
        obj.symlink_to("/etc/hostname")
    elif case == "garbage-record":
        record.write_bytes(os.urandom(50))
    elif case == "truncated-record":
        record.write_bytes(record.read_bytes()[:20])
    elif case == "empty-record":
        record.write_bytes(b"")
    elif case == "foreign-version-record":
        data = json.loads(record.read_text())
        data["format"] = layout.FORMAT + 1
        record.write_text(json.dumps(data))
    elif case == "wrong-scope-record":
        # The same group, whole and valid, from another scope (another tool version, say), with its
        # objects: only the record's scope tells it apart.
        other_sources = {m: t + "# another scope\n" for m, t in sources.items()}
        run_fake(named_cache, other_sources, spec=OTHER_SPEC)
        other_scope = scope_path(named_cache, OTHER_SPEC)
        other = other_scope / record.relative_to(scope)
        for obj_name, _ in json.loads(other.read_text())["files"].values():
            rel = Path("objects", obj_name[:2], obj_name)
            (scope / rel).parent.mkdir(exist_ok=True)
            shutil.copyfile(other_scope / rel, scope / rel)
        shutil.copyfile(other, record)
    elif case == "misplaced-record":  # a valid record stored under another group's name
        other_record = rng.choice([r for r in records if r != record])
        other_record.write_bytes(record.read_bytes())
    elif case in ("escaping-record", "absolute-record"):
        data = json.loads(record.read_text())
        name = "../../escape.meta.json" if case == "escaping-record" else f"{named_cache.parent}/escape.meta.json"
        data["files"] = {name: list(data["files"].values())[0]}
        record.write_text(json.dumps(data))


def _loads(record: Path) -> bool:
    try:
        layout.load_entry(str(record), fake_policy.group_of)
        return True
    except (OSError, ValueError, TypeError, KeyError):
        return False


def corruption(base: Path, cases: int, seed: int = 0) -> Outcome:
    """`cases` damaged caches, cycling through CORRUPTIONS: each run equals a cold run, reports the
    bad entries as skipped, and replaces them, so the next run reuses everything."""
    out = Outcome(f"R3 corruption ({cases} cases, {len(CORRUPTIONS)} kinds)")
    for i in range(cases):
        case = CORRUPTIONS[i % len(CORRUPTIONS)]
        rng = random.Random(f"{seed}-{i}")
        named_cache = base / f"case{i}" / "named_caches" / "cacheplug"
        sources = fakeproject.generate(12, rng)
        run_fake(named_cache, sources)
        for _ in range(rng.randint(1, 3)):
            corrupt(named_cache, sources, case, rng)
        run = run_fake(named_cache, sources)
        out.tried += 1
        out.expect_cold(run, sources, f"{case} #{i}")
        out.expect(run.report["skipped"] > 0, f"{case} #{i}: the bad entries were not noticed")
        out.expect(not any(base.rglob("escape.meta.json")), f"{case} #{i}: a file was written outside the sandbox")
        again = run_fake(named_cache, sources)
        counts = (again.report["skipped"], again.report["written"], again.report["reused"])
        out.expect(counts == (0, 0, len(sources)), f"{case} #{i}: not replaced; next run skipped/written/reused {counts}")
        out.expect_intact(scope_path(named_cache), f"{case} #{i}")
        shutil.rmtree(base / f"case{i}")
    return out


# --- R4: a stuck lock ------------------------------------------------------------------------------


HOLDERS = ("flock", "filelock")


def hold_lock(path: Path, holder: str = "flock", seconds: float = 3600) -> subprocess.Popen:
    """Another process that takes the lock for `seconds`: flock(1) (which shows it excludes the
    store's flock(2)), or Python's `filelock.FileLock`, as a Python tool or a Pants rule would."""
    if holder == "flock":
        # Its `sleep` child holds the lock too: the holder runs in its own process group.
        return subprocess.Popen(["flock", str(path), "sleep", str(seconds)], start_new_session=True)
    # The lock object must stay referenced: filelock releases a lock it garbage-collects.
    code = "import filelock, sys, time; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); time.sleep(float(sys.argv[2]))"
    return subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def wait_until_held(path: Path, holder: subprocess.Popen) -> None:
    """Until `holder` holds the lock at `path`; AssertionError if it died without taking it."""
    while not lock_is_held(path):
        assert holder.poll() is None, f"the lock holder exited with {holder.returncode}"
        time.sleep(0.01)


def lock_is_held(path: Path) -> bool:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def stuck_lock(named_cache: Path, runs: int, timeout: float, holder_kind: str = "flock") -> Outcome:
    """A process (flock(1), or filelock) holds the cache lock forever: runs still give the cold
    result and exit code, with a warning, in about `timeout` + the tool's own time; once it is
    gone, commits resume."""
    out = Outcome(f"R4 stuck lock, held by {holder_kind} ({runs} runs, lock_timeout {timeout:g}s)")
    run_fake(named_cache, {"m0": "def a\n"})  # creates the scope
    lock = scope_path(named_cache) / "lock"
    holder = hold_lock(lock, holder_kind)
    overruns, codes = [], set()
    try:
        wait_until_held(lock, holder)
        for i in range(runs):
            sources = {m: t.replace("error seeded\n", "") for m, t in fakeproject.generate(15, random.Random(i)).items()}
            if i % 2:  # exit 1 as well as 0
                sources["m0"] += "error seeded\n"
            t0 = time.monotonic()
            run = run_fake(named_cache, sources, lock_timeout=timeout)
            elapsed = time.monotonic() - t0
            t0 = time.monotonic()
            run_cold(sources)
            overruns.append(elapsed - timeout - (time.monotonic() - t0))
            out.tried += 1
            codes.add(run.exit_code)
            out.expect_cold(run, sources, f"run {i} under a stuck lock")
            out.expect(any("timed out" in w for w in run.report["warnings"]), f"run {i}: no lock timeout warning")
            out.expect(run.report["written"] == 0, f"run {i} wrote without the lock")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    after = run_fake(named_cache, sources)
    out.expect(after.report["written"] == len(sources), "commits did not resume once the lock was free")
    out.figures.update(exit_codes=sorted(codes), max_seconds_over_timeout_plus_tool=round(max(overruns, default=0), 3))
    return out


# --- R5: disk full ---------------------------------------------------------------------------------


def disk_full_injected(named_cache: Path, cases: int, seed: int = 0) -> Outcome:
    """ENOSPC injected where store.py writes (objects, records, the generation file, setup's
    manifest): the tool's result stays exact and the cache whole."""
    out = Outcome(f"R5 disk full, injected ENOSPC ({cases} cases)")
    rng = random.Random(seed)
    scope = scope_path(named_cache)
    sources = fakeproject.generate(20, rng)
    run_fake(named_cache, sources)
    log = named_cache.parent / "fault.log"
    while out.tried < cases:
        fakeproject.edit(sources, rng)
        point = rng.choice(["write-object", "write-record", "write-generation", "write-index", "write-manifest"])
        log.unlink(missing_ok=True)
        run = run_fake(named_cache, sources, {"CACHEPLUG_FAULT": f"enospc:{point}:{rng.randint(1, 4)}", "CACHEPLUG_FAULT_LOG": str(log)})
        out.expect_cold(run, sources, f"run with ENOSPC at {point}")
        if log.exists():
            out.tried += 1
            out.expect(any("No space left" in w for w in run.report.get("warnings", [])), f"ENOSPC at {point}: no warning")
        out.expect_intact(scope, f"after ENOSPC at {point}")
        out.expect_cold(run_fake(named_cache, sources), sources, "run after ENOSPC")
    return out


def disk_full_tmpfs(mountpoint: Path, runs: int, seed: int = 0) -> Outcome:
    """The named cache on a real 512 KiB tmpfs (needs root), filled up by the project's commits."""
    out = Outcome(f"R5 disk full, real 512 KiB tmpfs ({runs} runs)")
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mountpoint)], check=True)
    enospc = 0
    try:
        with tempfile.TemporaryDirectory() as sandboxes:
            named_cache = mountpoint / "cacheplug"
            rng = random.Random(seed)
            # Modules of ~6 KiB each, whose data files carry their source: far more than fits.
            sources = {m: t + f"# {'x' * 6000}\n" for m, t in fakeproject.generate(60, rng).items()}
            for i in range(runs):
                fakeproject.edit(sources, rng)
                run = run_fake(named_cache, sources, sandbox_parent=Path(sandboxes))
                out.tried += 1
                out.expect_cold(run, sources, f"run {i} on a full disk")
                enospc += any("No space left" in w for w in run.report.get("warnings", []))
                out.expect_intact(scope_path(named_cache), f"after run {i} on a full disk")
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
    out.expect(enospc > 0, "the disk never filled up: the test did not test anything")
    out.figures.update(runs_that_hit_enospc=enospc)
    return out


# --- S1: hostile files and permissions -------------------------------------------------------------


def _symlink_shards(scope: Path, sub: str, outside: Path) -> None:
    """Move each shard dir of scope/sub outside and leave a symlink to it; every other possible
    shard name becomes a symlink to an empty dir outside."""
    (outside / sub).mkdir(parents=True)
    for shard in (f"{i:02x}" for i in range(256)):
        path = scope / sub / shard
        target = outside / sub / shard
        if path.exists():
            path.rename(target)
        else:
            target.mkdir()
        path.symlink_to(target)


def security(base: Path) -> Outcome:
    out = Outcome("S1 security")
    rng = random.Random(7)

    def fresh(name: str) -> tuple[Path, Path, dict[str, str], Path]:
        named_cache = base / name / "named_caches" / "cacheplug"
        sources = fakeproject.generate(10, rng)
        run_fake(named_cache, sources)
        outside = base / name / "outside"
        outside.mkdir()
        (outside / "secret.meta.json").write_text('{"secret": 1}')
        return named_cache, scope_path(named_cache), sources, outside

    def attempt(what: str, named_cache: Path, sources: dict[str, str], outside: Path, reused: int, env: dict[str, str] | None = None) -> Run:
        before = tree_state(outside)
        sources[f"new{out.tried}"] = "import m0\ndef z\n"  # so that the run has something to commit
        run = run_fake(named_cache, sources, env)
        out.tried += 1
        out.expect_cold(run, sources, what)
        out.expect(run.report.get("reused", 0) <= reused, f"{what}: reused {run.report.get('reused')} entries (at most {reused})")
        out.expect(tree_state(outside) == before, f"{what}: something outside the cache was written")
        return run

    # Private: every directory of the cache is the user's alone.
    named_cache, scope, sources, outside = fresh("private")
    for d in [scope.parent, *(p for p in scope.rglob("*") if p.is_dir() and not p.is_symlink())]:
        out.expect(d.stat().st_mode & 0o077 == 0, f"{d} is open to others: {oct(d.stat().st_mode)}")
    out.tried += 1

    # Symlinks planted in the cache, pointing outside it, are never followed.
    for sub in ("objects", "entries"):
        named_cache, scope, sources, outside = fresh(f"symlinked-{sub}-shards")
        _symlink_shards(scope, sub, outside)
        attempt(f"{sub}/ shards are symlinks", named_cache, sources, outside, reused=0)
    named_cache, scope, sources, outside = fresh("symlinked-record")
    record = next(scope.glob("entries/*/*"))
    shutil.copyfile(record, outside / "record")
    record.unlink()
    record.symlink_to(outside / "record")
    attempt("a record is a symlink", named_cache, sources, outside, reused=len(sources) - 1)
    named_cache, scope, sources, outside = fresh("symlinked-tool-dir")
    scope.parent.rename(outside / "tool")
    scope.parent.symlink_to(outside / "tool")
    attempt("the tool's cache dir is a symlink", named_cache, sources, outside, reused=0)
    named_cache, scope, sources, outside = fresh("symlinked-scope-files")
    for name in ("lock", "generation", "index.json", "runs.log", "scope.json"):
        (outside / name).write_text("1")
        (scope / name).unlink(missing_ok=True)
        (scope / name).symlink_to(outside / name)
    attempt("the lock, generation, index, run log and scope.json are symlinks", named_cache, sources, outside, reused=len(sources))

    # Names read from disk that point outside the cache: an index naming absolute paths and `..`
    # (as garbage, entries, bad records) for a commit that evicts; a tool that rewrites setup's
    # manifest with such names. Nothing outside is deleted, read or written.
    named_cache, scope, sources, outside = fresh("crafted-index")
    victim = outside / "victim"
    victim.write_text("precious")
    index = json.loads((scope / "index.json").read_text())
    index["garbage"][str(victim)] = 8
    index["entries"]["../../../../" + str(victim).lstrip("/")] = [8, {str(victim): 8}]
    index["bad_records"]["../" + victim.name] = 8
    (scope / "index.json").write_text(json.dumps(index))
    before = tree_state(outside)
    sources["evicting"] = "def e\n"
    run = run_fake(named_cache, sources, max_size=1)
    out.tried += 1
    out.expect_cold(run, sources, "a crafted index")
    out.expect(tree_state(outside) == before, "a crafted index made a commit touch a file outside the cache")
    named_cache, scope, sources, outside = fresh("hostile-manifest")
    cache = FAKE_SPEC.sandbox_dir
    manifest = json.dumps({"generation": 0, "files": {f"../../{outside.name}/secret.meta.json": [1, 1, 1, "0" * 64, 1],
                                                      "a.meta.json": [1, 1, 1, str(outside / "secret.meta.json"), 1]},
                           "groups": {f"../{outside.name}/secret": 1, "/etc/passwd": 1}, "unmarked": ["/etc/passwd"]})
    argv = ["sh", "-c", f"printf '%s' '{manifest}' > .cacheplug/manifest.json && mkdir -p {cache} && echo ok > {cache}/a.meta.json"]
    before = tree_state(outside)
    sandbox = make_sandbox(named_cache, argv)
    run = finish(sandbox, start(sandbox))
    out.tried += 1
    out.expect(run.exit_code == 0, "the tool's run failed over a hostile manifest")
    out.expect(tree_state(outside) == before, "a hostile manifest made a commit touch a file outside the cache")
    out.expect(check_scope(scope, group_problem=lambda files: None)[1] == [], "the cache is damaged after a hostile manifest")

    # Symlinks the tool leaves in its cache dir are not committed, nor read through.
    named_cache, scope, sources, outside = fresh("tool-symlinks")
    cache = FAKE_SPEC.sandbox_dir
    argv = ["sh", "-c", f"mkdir -p {cache} && ln -s {outside}/secret.meta.json {cache}/evil.meta.json && "
            f"ln -s {outside} {cache}/dirlink && echo ok > {cache}/good.meta.json"]
    before = tree_state(outside)
    sandbox = make_sandbox(named_cache, argv)
    run = finish(sandbox, start(sandbox))
    groups = check_scope(scope, group_problem=lambda files: None)[0]
    out.tried += 1
    out.expect(run.exit_code == 0 and "good" in groups, "the tool's regular file was not committed")
    out.expect(not {"evil", "dirlink/secret"} & set(groups), f"a symlink the tool made was committed: {sorted(groups)}")
    out.expect(not any(b'"secret"' in p.read_bytes() for p in scope.rglob("*") if p.is_file()), "secret content got into the cache")
    out.expect(tree_state(outside) == before, "something outside the cache was written")

    # A cache owned by another user is not used, for reading or writing.
    named_cache, scope, sources, outside = fresh("other-user")
    env = None
    if os.geteuid() == 0:
        for p in [scope.parent, *scope.parent.rglob("*")]:
            os.lchown(p, 65534, 65534)
    else:
        env = {"CACHEPLUG_FAULT": f"euid:{os.geteuid() + 1}"}  # store.py acts as another user
    shutil.copytree(scope.parent, outside / "tool", symlinks=True)  # to compare afterwards
    run = attempt("the cache is another user's", named_cache, sources, outside, reused=0, env=env)
    out.expect(any("owned by uid" in w for w in run.report.get("warnings", [])), "no warning about the other user's cache")
    out.expect(_contents(scope.parent) == _contents(outside / "tool"), "the other user's cache was written")
    return out


def _contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


# --- R7: a merged file (pytest's record of failed tests), concurrent writers and kill -9 ----------

LASTFAILED = "pytest/v/cache/lastfailed"
# Acts as pytest does on its `lastfailed`: keeps the entries of tests it did not run (other
# writers'), sets its own tests' to this run's failures, rewrites the file in place.
PYTEST_LIKE = """\
import json, os, sys, time
path, mine, failing = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    with open(path) as f:
        record = json.load(f)
except FileNotFoundError:
    record = {}
record = {k: v for k, v in record.items() if not k.startswith(mine)}
record.update({k: True for k in failing})
time.sleep(float(sys.argv[4]))
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(record, f, indent=2)
sys.exit(1 if failing else 0)
"""
MERGE_KILL_POINTS = ["write-object", "commit-locked", "write-record", "commit-record", "write-generation", "write-index"]


def merged_file(named_cache: Path, writers: int, runs: int, seed: int = 0) -> Outcome:
    """`writers` concurrent writers of pytest's record, each `runs` runs in a row, a third of them
    faulted (store.py killed or its disk full at a point of its commit, or the whole shim killed
    from outside); every writer's last run is not. Each run records its own tests' failures; at the end the record must
    hold exactly each writer's last run's failures, and the cache pass the integrity check."""
    out = Outcome(f"R7 merged file ({writers} writers x {runs} runs, kill -9 or disk full on a third)")
    scope = scope_path(named_cache, PYTEST_SPEC)
    last: dict[int, set[str]] = {}
    faults: collections.Counter[str] = collections.Counter()

    def writer(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        for r in range(runs):
            failing = sorted(f"w{w}::t{k}" for k in range(6) if rng.random() < 0.5)
            argv = [sys.executable, "-c", PYTEST_LIKE, f"{PYTEST_SPEC.sandbox_dir}/{LASTFAILED}", f"w{w}::",
                    json.dumps(failing), str(rng.uniform(0, 0.05))]
            kill = r < runs - 1 and rng.random() < 1 / 3
            env: dict[str, str] = {}
            if kill and rng.random() < 2 / 3:
                point = rng.choice(MERGE_KILL_POINTS)
                kind = rng.choice(["kill", "enospc"])
                env = {"CACHEPLUG_FAULT": f"{kind}:{point}:1"}
                faults[f"{'store.py killed' if kind == 'kill' else 'disk full'} at {point}"] += 1
            sandbox = make_sandbox(named_cache, argv, spec=PYTEST_SPEC)
            proc = start(sandbox, env)
            if kill and not env:
                time.sleep(rng.uniform(0, 0.3))
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    faults["the shim, from outside"] += 1
            run = finish(sandbox, proc)
            out.tried += 1
            if not kill:
                out.expect(run.exit_code == (1 if failing else 0), f"writer {w} run {r}: exit {run.exit_code}: {run.stdout[-500:]}")
                out.expect(run.report.get("warnings") == [], f"writer {w} run {r} warned: {run.report.get('warnings')}")
        last[w] = set(failing)

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(writer, range(writers)))
    groups, problems = check_scope(scope, group_problem=lambda files: None, grouping=cache_policy.group_of)
    out.failures += [f"torn or invalid: {p}" for p in problems]
    record = json.loads(groups.get(LASTFAILED, {}).get(LASTFAILED, b"{}"))
    for w in range(writers):
        got = {k for k in record if k.startswith(f"w{w}::")}
        out.expect(got == last[w], f"writer {w}: the record holds {sorted(got)}, its last run failed {sorted(last[w])}")
    out.expect(set(record) <= {k for fs in last.values() for k in fs}, "the record holds tests no writer failed last")
    out.figures.update(faults=dict(sorted(faults.items())), entries=len(record), temp_files_left=_temp_files(scope))
    return out


# --- R6: bad option values -------------------------------------------------------------------------

# (flag, what the error must say): the option's name, the bad value, what is allowed.
BAD_OPTION_VALUES = [
    ("--mypy-shared-cache=sometimes", ["--shared-cache in scope 'mypy'", "sometimes", "read-write, read-only, off"]),
    ("--cacheplug-lock-timeout=-1", ["[cacheplug].lock_timeout", "-1", ">= 0"]),
    ("--cacheplug-lock-timeout=nan", ["[cacheplug].lock_timeout", "nan", ">= 0"]),
    ("--mypy-separate-compilation=maybe", ["--separate-compilation in scope 'mypy'", "maybe", 'Expected "True" or "False"']),
    ("--cacheplug-lock-timeout=soon", ["--lock-timeout in scope 'cacheplug'", "soon", "float"]),
    ("--mypy-separate-compilation-unit-size=0", ["[mypy].separate_compilation_unit_size", "0", ">= 1"]),
    ("--mypy-separate-compilation-unit-size=big", ["--separate-compilation-unit-size in scope 'mypy'", "big", "int"]),
]
# The same for the cacheplug.python backend's options (`pants test`).
PYTEST_BAD_OPTION_VALUES = [
    ("--pytest-shared-cache=always", ["--shared-cache in scope 'pytest'", "always", "read-write, read-only, off"]),
    ("--pytest-library-caches=['hf-hub', 'pip']", ["[pytest].library_caches", "'pip'", "'hf-hub', 'hf-datasets', 'torch-hub'"]),
]
