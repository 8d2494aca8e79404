"""The cache's lifecycle with real processes: byte budget and LRU eviction (in the shim's commits),
the index's warm start, cache-info's figures and cache-prune (lifecycle.py), and snapshots
(snapshot.py). The goals themselves, through a real Pants, are in lifecycle_integration_test.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cacheplug import lifecycle, snapshot
from cacheplug.engine import scope_id
from cacheplug.store import index as store_index
from cacheplug.store import layout
from cacheplug.store.index import LOW_WATER, Index
from cacheplug_tests import fakeproject
from cacheplug_tests.storekit import (
    BUILD_ROOT,
    FAKE_SPEC,
    check_scope,
    disk_bytes,
    fake_grouping,
    finish,
    index_problems,
    run_fake,
    same_as_cold,
    scope_path,
    start_fake,
    tree_state,
)


def _age_all_records(scope: Path, days: float = 10) -> None:
    """Make every entry look last used `days` ago (a second apart, in name order)."""
    base = time.time() - days * 86400
    for i, record in enumerate(sorted(scope.glob("entries/*/*"))):
        os.utime(record, (base + i, base + i))


def test_budget_is_kept_and_the_entries_a_run_used_survive(named_cache: Path) -> None:
    rng = random.Random(1)
    sources = fakeproject.generate(40, rng)
    run_fake(named_cache, sources)
    scope = scope_path(named_cache)
    full = disk_bytes(scope)
    _age_all_records(scope)
    # A run on a quarter of the modules (closed under imports: m_i imports only lower ones) reads
    # only their entries, rewriting none (it is given all of them), plus one new module's, so that
    # it commits, and commits evict.
    kept = {f"m{i}": sources[f"m{i}"] for i in range(10)}
    budget = full // 2
    run = run_fake(named_cache, {**kept, "new": "def n\n"}, max_size=budget)
    assert same_as_cold(run, {**kept, "new": "def n\n"}) is None
    assert run.report["reused"] == 40 and run.report["written"] == 1 and run.report["evicted"] > 0
    assert disk_bytes(scope) <= budget * LOW_WATER
    groups, problems = check_scope(scope)
    assert problems == []
    assert set(kept) <= set(groups), "an entry the run used was evicted before unused ones"
    assert len(groups) < len(sources)
    # Evicted entries are misses, never wrong results.
    assert same_as_cold(run_fake(named_cache, sources, max_size=budget), sources) is None


def test_without_a_budget_nothing_is_evicted(named_cache: Path) -> None:
    sources = fakeproject.generate(20, random.Random(2))
    run_fake(named_cache, sources, max_size=0)
    fakeproject.edit(sources, random.Random(3))
    run = run_fake(named_cache, sources, max_size=0)
    assert "evicted" not in run.report
    assert len(check_scope(scope_path(named_cache))[0]) >= 20


def test_an_entry_evicted_while_a_run_copies_it_in_is_a_miss_not_an_error(named_cache: Path, tmp_path: Path) -> None:
    sources = fakeproject.generate(30, random.Random(4))
    run_fake(named_cache, sources)
    gate, log = tmp_path / "gate", tmp_path / "fault.log"
    # The reader stops after seeding its 3rd file, with the records of the rest already read...
    sandbox, reader = start_fake(named_cache, sources, {
        "CACHEPLUG_FAULT": "wait:setup-file:3", "CACHEPLUG_FAULT_GATE": str(gate), "CACHEPLUG_FAULT_LOG": str(log)})
    while not log.exists():
        time.sleep(0.01)
    # ...while another run's commit evicts everything (a 1-byte budget)...
    edited = dict(sources, extra="def x\n")
    evictor = run_fake(named_cache, edited, max_size=1)
    assert evictor.report["evicted"] > 0 and disk_bytes(scope_path(named_cache)) <= 1
    gate.touch()
    run = finish(sandbox, reader)
    # ...so the reader's later groups vanish under it: misses, without a warning, result exact.
    assert same_as_cold(run, sources) is None
    assert run.report["skipped"] > 0 and run.report["warnings"] == []
    assert check_scope(scope_path(named_cache))[1] == []


def test_concurrent_runs_evicting_all_the_time_stay_correct(named_cache: Path) -> None:
    base = fakeproject.generate(30, random.Random(5))
    run_fake(named_cache, base)
    budget = disk_bytes(scope_path(named_cache)) // 3

    def runner(seed: int) -> list[str]:
        rng, sources, failures = random.Random(seed), dict(base), []
        for _ in range(8):
            fakeproject.edit(sources, rng)
            run = run_fake(named_cache, sources, max_size=budget)
            diff = same_as_cold(run, sources)
            if diff or run.report["warnings"]:
                failures.append(diff or str(run.report["warnings"]))
        return failures

    with ThreadPoolExecutor(4) as pool:
        failures = [f for result in pool.map(runner, range(4)) for f in result]
    assert failures == []
    scope = scope_path(named_cache)
    assert check_scope(scope)[1] == []
    assert disk_bytes(scope) <= budget + 4 * 2 * max(p.stat().st_size for p in scope.glob("objects/*/*"))


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated", "stale"])
def test_a_missing_or_bad_index_is_rebuilt_and_nothing_is_lost(named_cache: Path, damage: str) -> None:
    rng = random.Random(6)
    sources = fakeproject.generate(20, rng)
    run_fake(named_cache, sources)
    scope = scope_path(named_cache)
    index = scope / "index.json"
    if damage == "deleted":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\x00not json")
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    else:  # an index that missed a commit (saved by a run killed after it) claims an old generation
        (scope / "generation").write_text(str(layout.read_generation(str(scope)) + 5))
    before = set(check_scope(scope)[0])
    fakeproject.edit(sources, rng)
    run = run_fake(named_cache, sources, max_size=10 << 20)
    assert same_as_cold(run, sources) is None and run.report["warnings"] == []
    assert Index.load(str(scope), layout.read_generation(str(scope))) is not None, "not rebuilt"
    assert index_problems(scope) == []
    groups, problems = check_scope(scope)
    assert problems == [] and before <= set(groups)


def test_info_matches_the_disk_and_prune_frees_what_it_says(named_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    sources = fakeproject.generate(30, rng)
    for _ in range(4):  # superseded versions become garbage
        run_fake(named_cache, sources)
        fakeproject.edit(sources, rng)
    scope = scope_path(named_cache)
    (scope / "objects" / "ab").mkdir(exist_ok=True)
    (scope / "objects" / "ab" / f"{layout.TMP_PREFIX}1.killed").write_bytes(b"x" * 1000)  # a killed run's
    info = lifecycle.info(scope)
    assert info.bytes == disk_bytes(scope)
    assert info.entries == len(list(scope.glob("entries/*/*")))
    assert info.runs == 4 and info.hits + info.misses > 0 and info.last_used is not None
    assert info.description["parts"] == list(FAKE_SPEC.scope) and info.description["buildroot"] == BUILD_ROOT

    monkeypatch.setattr(store_index, "TMP_GRACE", 0)  # what cache-prune's temp-file collection reads
    before = disk_bytes(scope) + 1000
    freed = lifecycle.prune(scope, 0, lock_timeout=5)  # garbage only
    assert freed == before - disk_bytes(scope) > 1000
    assert lifecycle.info(scope).entries == info.entries
    before, budget = disk_bytes(scope), disk_bytes(scope) // 2
    freed = lifecycle.prune(scope, budget, lock_timeout=5)
    after = disk_bytes(scope)
    assert after <= budget and freed == before - after > 0
    assert check_scope(scope)[1] == [] and index_problems(scope) == []
    assert same_as_cold(run_fake(named_cache, sources), sources) is None

    before = disk_bytes(scope)
    freed = lifecycle.clear(scope, lock_timeout=5)
    assert freed == before and not scope.exists()


def test_snapshot_round_trip_gives_hits_in_another_named_cache(tmp_path: Path, named_cache: Path) -> None:
    rng = random.Random(8)
    sources = fakeproject.generate(25, rng)
    run_fake(named_cache, sources)
    archive = tmp_path / "snap.tar.gz"
    entries, _ = snapshot.export([scope_path(named_cache)], archive, lock_timeout=5, grouping=fake_grouping)
    assert entries == 25
    again = tmp_path / "again.tar.gz"
    snapshot.export([scope_path(named_cache)], again, lock_timeout=5, grouping=fake_grouping)
    assert again.read_bytes() == archive.read_bytes(), "exports of the same cache differ"

    other = tmp_path / "machine2" / "cacheplug"
    done = snapshot.import_(archive, other, BUILD_ROOT, max_size=0, lock_timeout=5, grouping=fake_grouping)
    assert [(p, n) for p, n in done] == [(scope_path(other), 25)]
    run = run_fake(other, sources)
    assert same_as_cold(run, sources) is None
    assert (run.report["reused"], run.report["written"]) == (25, 0)
    # Another checkout's buildroot gets the scope its own runs will use.
    done = snapshot.import_(archive, other, "/elsewhere", max_size=0, lock_timeout=5, grouping=fake_grouping)
    assert done[0][0].name == scope_id("/elsewhere", FAKE_SPEC.tool, FAKE_SPEC.scope)
    assert check_scope(done[0][0])[1] == []


def test_import_replaces_a_corrupt_object_already_there(tmp_path: Path, named_cache: Path) -> None:
    """Like a commit, an import stores every object it brings, even one of that name on disk:
    it may be the corrupt copy that made runs miss (issue 17, defect 3)."""
    sources = fakeproject.generate(10, random.Random(5))
    run_fake(named_cache, sources)
    archive = tmp_path / "snap.tar.gz"
    snapshot.export([scope_path(named_cache)], archive, lock_timeout=5, grouping=fake_grouping)
    other = tmp_path / "machine2" / "cacheplug"
    run_fake(other, sources)  # the same entries, then one object goes bad
    victim = next(p for p in (scope_path(other) / "objects").rglob("*") if p.is_file())
    victim.chmod(0o600)
    victim.write_bytes(b"flipped bits")
    assert run_fake(other, sources).report["skipped"] == 1  # a run now misses that group (and re-stores it)
    victim.chmod(0o600)
    victim.write_bytes(b"flipped bits")  # again, now that the run re-stored it
    snapshot.import_(archive, other, BUILD_ROOT, max_size=0, lock_timeout=5, grouping=fake_grouping)
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name
    run = run_fake(other, sources)
    assert run.report["skipped"] == 0 and run.report["written"] == 0 and run.report["reused"] == 10, run.report


def test_a_crafted_index_never_deletes_outside_the_cache(tmp_path: Path, named_cache: Path) -> None:
    """index.json naming an absolute path (or `..`) as garbage or as an entry: eviction once
    unlinked it (issue 17, defect 2). Now the index is not trusted, rebuilt, and the file stays."""
    run_fake(named_cache, fakeproject.generate(10, random.Random(6)))
    scope = scope_path(named_cache)
    victims = [tmp_path / "victim-1", tmp_path / "victim-2"]
    for victim in victims:
        victim.write_text("precious")
    index = json.loads((scope / "index.json").read_text())
    index["garbage"][str(victims[0])] = 8
    index["entries"]["../../../../" + str(victims[1]).lstrip("/")] = [8, {}]
    (scope / "index.json").write_text(json.dumps(index))
    # A commit that evicts (a tiny budget), then a prune.
    run_fake(named_cache, fakeproject.generate(12, random.Random(7)), max_size=1)
    lifecycle.prune(scope, 1, lock_timeout=5)
    assert [v.read_text() for v in victims] == ["precious", "precious"]
    assert check_scope(scope)[1] == []


def _tamper(archive: Path, out: Path) -> None:
    """The same archive with one object's content changed (its name kept)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        changed = False
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if "/objects/" in member.name and not changed:
                data, changed = data + b" ", True
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))


@pytest.mark.parametrize("bad", ["truncated", "garbage", "tampered", "missing"])
def test_a_bad_snapshot_is_refused_and_changes_nothing(tmp_path: Path, named_cache: Path, bad: str) -> None:
    sources = fakeproject.generate(15, random.Random(9))
    run_fake(named_cache, sources)
    archive = tmp_path / "snap.tar.gz"
    snapshot.export([scope_path(named_cache)], archive, lock_timeout=5, grouping=fake_grouping)
    other = tmp_path / "machine2" / "cacheplug"
    run_fake(other, {"m0": "def other\n"})  # the target already holds a cache
    before = tree_state(other)
    if bad == "truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    elif bad == "garbage":
        archive.write_bytes(os.urandom(5000))
    elif bad == "tampered":
        _tamper(archive, tmp_path / "t.tar.gz")
        archive = tmp_path / "t.tar.gz"
    else:
        archive = tmp_path / "nonexistent.tar.gz"
    with pytest.raises(snapshot.BadSnapshot):
        snapshot.import_(archive, other, BUILD_ROOT, max_size=0, lock_timeout=5, grouping=fake_grouping)
    assert tree_state(other) == before


def test_a_scope_is_unused_for_days_only_if_no_run_used_it(named_cache: Path) -> None:
    run_fake(named_cache, {"m0": "def a\n"})
    scope = scope_path(named_cache)
    now = time.time()
    assert not lifecycle.unused_for(scope, 1, now)
    assert lifecycle.unused_for(scope, 1, now + 2 * 86400)
    _age_all_records(scope, days=3)
    (scope / "runs.log").unlink()
    assert lifecycle.unused_for(scope, 2, now) and not lifecycle.unused_for(scope, 4, now)
    run_fake(named_cache, {"m0": "def a\n"})  # a run that rewrites nothing still counts (runs.log)
    assert not lifecycle.unused_for(scope, 2, time.time())
