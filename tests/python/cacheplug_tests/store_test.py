"""The cache shim and store with real processes: exit codes, signals, cached == cold over random
edits, volatile rewrites, a deleted named cache. Load, kill -9, corruption, a stuck lock, disk full
and hostile files: reliability_test.py."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import signal
from pathlib import Path

import pytest

from cacheplug.store.report import MAX_ENTRY_WARNINGS
from cacheplug_tests import fake_policy, fakeproject
from cacheplug_tests.storekit import (
    FAKE_ARGV,
    FAKE_SPEC,
    check_scope,
    finish,
    make_sandbox,
    run_cold,
    run_fake,
    same_as_cold,
    scope_path,
    start,
)


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


def test_rewrites_that_change_only_volatile_keys_or_nothing_are_not_committed(named_cache: Path) -> None:
    spec = dataclasses.replace(FAKE_SPEC, policy="cacheplug.mypy.cache_policy")  # a meta's mtime is no change
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


@pytest.mark.parametrize("name", ["notes", "x.inplace"])
def test_a_file_the_tool_writes_in_place_never_corrupts_the_cache(named_cache: Path, name: str) -> None:
    # As mypy writes `missing_stubs`: open, truncate, write. `chmod` because root ignores the
    # objects' read-only mode anyway. `x.inplace` is in the policy's COPIES: given as a copy.
    cache, previous = FAKE_SPEC.sandbox_dir, ""
    for content in ["a", "bb", "a", "bb", "cc"]:
        path = f"{cache}/{name}"
        argv = ["sh", "-c", f"mkdir -p {cache}; cat {path} 2>/dev/null; chmod u+w {path} 2>/dev/null; printf {content} > {path}"]
        sandbox = make_sandbox(named_cache, argv)
        run = finish(sandbox, start(sandbox))
        assert run.exit_code == 0 and run.stdout == previous  # given what the last run wrote
        warned = [w for w in run.report["warnings"] if "in place" in w]
        assert len(warned) == (name == "notes" and previous != ""), run.report["warnings"]
        groups, problems = check_scope(scope_path(named_cache), group_problem=lambda files: None)
        assert problems == [] and groups[fake_policy.group_of(name)] == {name: content.encode()}
        previous = content


def test_a_named_cache_deleted_under_a_running_pantsd_is_recreated(named_cache: Path) -> None:
    sources = {"m0": "def a\n"}
    run_fake(named_cache, sources)
    # Pants made the directory once and keeps handing out symlinks to it.
    sandbox = make_sandbox(named_cache, FAKE_ARGV, {"src/m0.mod": sources["m0"]})
    shutil.rmtree(named_cache)
    run = finish(sandbox, start(sandbox))
    assert run.exit_code == 0 and run.report["warnings"] == [] and run.report["written"] == 1
    assert run_fake(named_cache, sources).report["reused"] == 1


def test_warnings_about_many_bad_entries_are_capped(named_cache: Path) -> None:
    sources = fakeproject.generate(20, random.Random(3))
    run_fake(named_cache, sources)
    for record in scope_path(named_cache).glob("entries/*/*"):
        record.write_bytes(b"not a record")
    run = run_fake(named_cache, sources)
    assert same_as_cold(run, sources) is None
    assert len(run.report["warnings"]) == MAX_ENTRY_WARNINGS
    assert run.report["warnings_dropped"] == len(sources) - MAX_ENTRY_WARNINGS
