"""The cache shim and store with real processes: exit codes, merging concurrent writers, kill -9,
corrupt and hostile entries, a stuck lock. The oracle is always a cold run on the same inputs."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from cacheplug_tests import fakeproject
from cacheplug_tests.storekit import (
    FAKE_SPEC,
    check_scope,
    finish,
    make_sandbox,
    run_cold,
    run_fake,
    scope_path,
    start,
)


@pytest.fixture
def named_cache(tmp_path: Path) -> Path:
    return tmp_path / "named_caches" / "cacheplug"


def _write_then_exit(code: int) -> list[str]:
    # A tool that writes one cache group, then exits with `code`.
    return ["sh", "-c", f"mkdir -p {FAKE_SPEC.sandbox_dir} && echo {code} > {FAKE_SPEC.sandbox_dir}/a.meta.json; exit {code}"]


@pytest.mark.parametrize("code", [0, 1, 2, 3])
def test_exit_codes_pass_through_and_only_commit_worthy_ones_commit(named_cache: Path, code: int) -> None:
    sandbox = make_sandbox(named_cache, _write_then_exit(code))
    run = finish(sandbox, start(sandbox))
    assert run.exit_code == code
    groups, problems = check_scope(scope_path(named_cache), group_problem=lambda files: None)
    assert problems == []
    assert sorted(groups) == (["a"] if code in FAKE_SPEC.commit_exit_codes else [])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
def test_a_signal_gives_128_plus_n_and_commits_nothing(named_cache: Path, sig: signal.Signals) -> None:
    argv = ["sh", "-c", f"mkdir -p {FAKE_SPEC.sandbox_dir}; echo x > {FAKE_SPEC.sandbox_dir}/a.meta.json; kill -{int(sig)} $$"]
    sandbox = make_sandbox(named_cache, argv)
    run = finish(sandbox, start(sandbox))
    assert run.exit_code == 128 + int(sig)
    assert check_scope(scope_path(named_cache)) == ({}, [])


def test_cached_equals_cold_over_random_edits(named_cache: Path) -> None:
    rng = random.Random(1234)
    sources = fakeproject.generate(60, rng)
    for step in range(40):
        what = fakeproject.edit(sources, rng) if step else "initial"
        cached, cold = run_fake(named_cache, sources), run_cold(sources)
        assert (cached.exit_code, cached.stdout) == (cold.exit_code, cold.stdout), what
        assert cached.report["warnings"] == []
    assert cached.report["reused"] > 0


def _writer_sources(writer: int, round_: int) -> dict[str, str]:
    # Shared modules every writer writes with its own content (so a torn group is visible), plus
    # modules only this writer ever writes (so a lost one is visible).
    sources = {f"shared{i}": f"def s{i}\n# writer {writer} round {round_}\n" for i in range(20)}
    sources.update({f"w{writer}_{i}": f"import shared{i}\nuse shared{i}.s{i}\ndef w{i}\n" for i in range(10)})
    return sources


@pytest.mark.parametrize("lock", ["flock", "nolock"])
def test_concurrent_writers_merge_without_loss_or_tears(named_cache: Path, lock: str) -> None:
    """8 writers at once, 4 rounds each. With the lock disabled (fault hook) the outcome must be
    just as correct: the lock only orders commits, it is not what keeps entries whole."""
    env = {"CACHEPLUG_FAULT": "nolock"} if lock == "nolock" else {}
    writers = 8
    for round_ in range(4):
        sandboxes = [
            make_sandbox(named_cache, [sys.executable, str(Path(__file__).with_name("faketool.py")), FAKE_SPEC.sandbox_dir, "src"],
                         {f"src/{m}.mod": t for m, t in _writer_sources(w, round_).items()})
            for w in range(writers)
        ]
        procs = [start(s, env) for s in sandboxes]
        runs = [finish(s, p) for s, p in zip(sandboxes, procs)]
        for w, run in enumerate(runs):
            cold = run_cold(_writer_sources(w, round_))
            assert (run.exit_code, run.stdout) == (cold.exit_code, cold.stdout)
    groups, problems = check_scope(scope_path(named_cache))
    assert problems == []
    expected = {f"shared{i}" for i in range(20)} | {f"w{w}_{i}" for w in range(writers) for i in range(10)}
    assert set(groups) == expected
    # Every shared group holds one writer's last-round content, whole.
    for i in range(20):
        data = json.loads(groups[f"shared{i}"][f"shared{i}.data.json"])
        assert "round 3" in data["src"]


KILL_POINTS = ["setup-file", "commit-object", "commit-locked", "commit-record"]


def test_kill_9_at_every_phase_leaves_a_valid_cache(named_cache: Path) -> None:
    rng = random.Random(99)
    sources = fakeproject.generate(30, rng)
    assert run_fake(named_cache, sources).report["written"] > 0
    kills = 0
    for attempt in range(24):
        fakeproject.edit(sources, rng)
        fakeproject.edit(sources, rng)
        if attempt % 6 == 5:
            # kill -9 of the whole run from outside while the tool runs
            started = named_cache.parent / "started"
            started.unlink(missing_ok=True)
            files = {f"src/{m}.mod": t for m, t in sources.items()}
            sandbox = make_sandbox(named_cache, [sys.executable, str(Path(__file__).with_name("faketool.py")), FAKE_SPEC.sandbox_dir, "src"], files)
            proc = start(sandbox, {"FAKETOOL_STARTED": str(started), "FAKETOOL_SLEEP": "30"})
            while not started.exists():
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
            run = finish(sandbox, proc)
            assert run.exit_code == -signal.SIGKILL
        else:
            point = KILL_POINTS[attempt % 6 % len(KILL_POINTS)]
            run = run_fake(named_cache, sources, {"CACHEPLUG_FAULT": f"kill:{point}:{rng.randint(1, 3)}"})
            # store.py dies, the shim carries on: the tool's result is untouched.
            cold = run_cold(sources)
            assert (run.exit_code, run.stdout) == (cold.exit_code, cold.stdout)
        kills += 1
        assert check_scope(scope_path(named_cache))[1] == []
        after, cold = run_fake(named_cache, sources), run_cold(sources)
        assert (after.exit_code, after.stdout) == (cold.exit_code, cold.stdout)
    assert kills == 24


def _corrupt(scope: Path, case: str, rng: random.Random) -> None:
    records = sorted((scope / "entries").glob("*/*"))
    record = rng.choice(records)
    obj_name = rng.choice(list(json.loads(record.read_text())["files"].values()))[0]
    obj = scope / "objects" / obj_name[:2] / obj_name
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
    elif case == "foreign-version-record":
        data = json.loads(record.read_text())
        data["format"] = 999
        record.write_text(json.dumps(data))
    elif case == "misplaced-record":  # a valid record stored under another group's name
        other = rng.choice([r for r in records if r != record])
        other.write_bytes(record.read_bytes())
    elif case == "escaping-record":
        data = json.loads(record.read_text())
        data["files"] = {"../../escape.meta.json": list(data["files"].values())[0]}
        record.write_text(json.dumps(data))


CORRUPTIONS = ["truncated-object", "empty-object", "garbage-object", "missing-object", "symlink-object",
               "garbage-record", "truncated-record", "foreign-version-record", "misplaced-record", "escaping-record"]


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_bad_entries_are_ignored_and_replaced(named_cache: Path, case: str) -> None:
    rng = random.Random(case)
    sources = fakeproject.generate(20, rng)
    run_fake(named_cache, sources)
    scope = scope_path(named_cache)
    for _ in range(3):
        _corrupt(scope, case, rng)
    run, cold = run_fake(named_cache, sources), run_cold(sources)
    assert (run.exit_code, run.stdout) == (cold.exit_code, cold.stdout)
    assert run.report["skipped"] > 0
    assert not (named_cache.parent.parent / "escape.meta.json").exists()
    # Replaced: the next run finds every module whole again.
    again = run_fake(named_cache, sources)
    assert (again.report["skipped"], again.report["written"], again.report["reused"]) == (0, 0, len(sources))
    assert check_scope(scope)[1] == []


def test_stuck_lock_costs_the_commit_not_the_result(named_cache: Path) -> None:
    sources = fakeproject.generate(10, random.Random(5))
    run_fake(named_cache, {"m0": "def a\n"})  # creates the scope
    fd = os.open(scope_path(named_cache) / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held by this process for the whole run
    try:
        run = run_fake(named_cache, sources, lock_timeout=0.3)
    finally:
        os.close(fd)
    cold = run_cold(sources)
    assert (run.exit_code, run.stdout) == (cold.exit_code, cold.stdout)
    assert any("timed out" in w for w in run.report["warnings"])
    assert run.report["written"] == 0
    assert run_fake(named_cache, sources).report["written"] == len(sources)


def test_scope_is_private_and_hostile_symlinks_are_not_followed(named_cache: Path, tmp_path: Path) -> None:
    sources = {"m0": "def a\n"}
    run_fake(named_cache, sources)
    scope = scope_path(named_cache)
    assert (scope.stat().st_mode & 0o777) == 0o700
    # Replace the entries dir with a symlink to a directory elsewhere: the cache is not used.
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(scope / "entries", tmp_path / "old-entries")
    os.symlink(outside, scope / "entries")
    run = run_fake(named_cache, sources)
    assert run.exit_code == 0 and run.report["reused"] == 0
    assert any("not a directory" in w for w in run.report["warnings"])
    assert list(outside.iterdir()) == []


def test_rewrites_that_change_only_volatile_keys_or_nothing_are_not_committed(named_cache: Path) -> None:
    spec = dataclasses.replace(FAKE_SPEC, volatile_json=(("*.meta.json", ("mtime",)),))
    cache = FAKE_SPEC.sandbox_dir

    def rewrite(meta: dict, data: str) -> dict:
        # Like mypy: write a temp file, rename it over the old one.
        argv = ["sh", "-c", f"mkdir -p {cache} && printf '%s' '{json.dumps(meta)}' > t && mv t {cache}/a.meta.json"
                f" && printf '{data}' > t && mv t {cache}/a.data.json"]
        sandbox = make_sandbox(named_cache, argv, spec=spec)
        return finish(sandbox, start(sandbox)).report

    assert rewrite({"hash": 1, "mtime": 1}, "d1")["written"] == 1
    assert rewrite({"hash": 1, "mtime": 2}, "d1")["written"] == 0  # only the mtime: not worth it
    assert rewrite({"mtime": 3, "hash": 1}, "d1")["written"] == 0  # same JSON, other bytes
    assert rewrite({"hash": 2, "mtime": 3}, "d1")["written"] == 1  # a real change
    assert rewrite({"hash": 2, "mtime": 3}, "d2")["written"] == 1  # the data changed
    groups, problems = check_scope(scope_path(named_cache, spec), group_problem=lambda files: None)
    assert problems == [] and json.loads(groups["a"]["a.meta.json"]) == {"hash": 2, "mtime": 3}


def test_a_named_cache_deleted_under_a_running_pantsd_is_recreated(named_cache: Path) -> None:
    sources = {"m0": "def a\n"}
    run_fake(named_cache, sources)
    # Pants made the directory once and keeps handing out symlinks to it.
    sandbox = make_sandbox(named_cache, [sys.executable, str(Path(__file__).with_name("faketool.py")), FAKE_SPEC.sandbox_dir, "src"],
                           {"src/m0.mod": sources["m0"]})
    shutil.rmtree(named_cache)
    run = finish(sandbox, start(sandbox))
    assert run.exit_code == 0 and run.report["warnings"] == [] and run.report["written"] == 1
    assert run_fake(named_cache, sources).report["reused"] == 1
