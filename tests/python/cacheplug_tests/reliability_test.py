"""The reliability suite, small (bench/reliability.py runs it at full size and prints figures):
load, kill -9, corruption, a stuck lock, disk full, hostile files. See reliability.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacheplug_tests import reliability
from cacheplug_tests.storekit import run_fake, scope_path


def _assert_clean(outcome: reliability.Outcome, tried: int) -> None:
    assert outcome.failures == [], outcome.scenario
    assert outcome.tried >= tried, outcome.scenario


@pytest.mark.parametrize("lock", [True, False], ids=["flock", "lock-disabled"])
def test_8_concurrent_writers_lose_nothing_and_tear_nothing(named_cache: Path, lock: bool) -> None:
    # With the lock disabled (fault hook), the outcome must be just as correct: the lock only
    # orders commits, it is not what keeps entries whole.
    _assert_clean(reliability.load(named_cache, writers=8, runs=4, lock=lock), 32)


def test_a_merged_file_keeps_every_writers_last_change_through_kill_9_and_disk_full(named_cache: Path) -> None:
    outcome = reliability.merged_file(named_cache, writers=4, runs=8, seed=1)
    _assert_clean(outcome, 32)
    assert outcome.figures["faults"], outcome.figures


def test_kill_9_anywhere_leaves_a_valid_cache_and_correct_next_run(named_cache: Path) -> None:
    outcome = reliability.crashes(named_cache, kills=40, seed=1)
    _assert_clean(outcome, 40)
    phases = outcome.figures["phases"]
    assert phases.get("setup (hook)") and phases.get("commit (hook)") and phases.get("tool (external)"), phases
    # Kills while evicting and while saving the index landed too (the runs have a small budget).
    assert {"evict", "write-index"} <= outcome.figures["hook_points"].keys(), outcome.figures


def test_every_kind_of_corrupt_or_foreign_entry_is_skipped_and_replaced(tmp_path: Path) -> None:
    cases = 2 * len(reliability.CORRUPTIONS)
    _assert_clean(reliability.corruption(tmp_path, cases=cases, seed=1), cases)


@pytest.mark.parametrize("holder", reliability.HOLDERS)
def test_a_stuck_lock_costs_the_commit_not_the_result(named_cache: Path, holder: str) -> None:
    outcome = reliability.stuck_lock(named_cache, runs=2, timeout=0.3, holder_kind=holder)
    _assert_clean(outcome, 2)


@pytest.mark.parametrize("holder", reliability.HOLDERS)
def test_a_commit_waits_for_a_lock_held_for_a_while(named_cache: Path, holder: str) -> None:
    """flock(1) or filelock holds the scope's lock for 1 s: a commit with lock_timeout 30 waits
    for it, then commits (the store's flock(2) and theirs exclude each other)."""
    run_fake(named_cache, {"m0": "def a\n"})
    lock = scope_path(named_cache) / "lock"
    holder_process = reliability.hold_lock(lock, holder, seconds=1)
    try:
        reliability.wait_until_held(lock, holder_process)
        run = run_fake(named_cache, {"m0": "def b\n"}, lock_timeout=30)
    finally:
        holder_process.wait()
    assert run.report["written"] == 1 and run.report["warnings"] == [], run.report
    assert run.report["lock_wait_ms"] >= 300, run.report


def test_disk_full_during_commit_keeps_result_and_cache_whole(named_cache: Path) -> None:
    _assert_clean(reliability.disk_full_injected(named_cache, cases=12, seed=1), 12)


def test_hostile_files_and_other_users_caches_are_not_used(tmp_path: Path) -> None:
    _assert_clean(reliability.security(tmp_path), 8)
