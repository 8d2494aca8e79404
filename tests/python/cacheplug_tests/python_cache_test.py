"""cacheplug.python's cache policy through the real shim and store, with real pytest processes:
concurrent runs' failures merged three-way, what is never committed, directory units. The same
through real `pants test`: python_integration_test.py."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from cacheplug import snapshot as snapshot_module
from cacheplug.python import cache_policy
from cacheplug.store import layout
from cacheplug_tests.storekit import PYTEST_SPEC, check_scope, finish, make_sandbox, scope_path, start

CACHE = ".cacheplug/cache"
LASTFAILED = "pytest/v/cache/lastfailed"


def shared(named_cache: Path) -> dict[str, bytes]:
    """{relpath: content} of every file the shared cache holds, checked whole."""
    groups, problems = check_scope(
        scope_path(named_cache, PYTEST_SPEC), group_problem=lambda files: None, grouping=cache_policy.group_of
    )
    assert problems == []
    return {rel: data for files in groups.values() for rel, data in files.items()}


def source_of(i: int, failing: bool) -> str:
    return f"def test_ok_{i}():\n    pass\n\ndef test_bad_{i}():\n    assert {not failing}\n"


def run_pytest_files(named_cache: Path, files: dict[int, bool], *args: str) -> dict[int, str]:
    """One real pytest process per test file (i: failing?), all at once through the shim, as Pants
    runs them; their output by file."""
    env = {"PYTHONPATH": os.pathsep.join(sys.path)}  # this test's pytest, for the child
    running = {}
    for i, failing in files.items():
        argv = [sys.executable, "-m", "pytest", "-o", f"cache_dir={CACHE}/pytest", *args, f"t{i}_test.py"]
        sandbox = make_sandbox(named_cache, argv, {f"t{i}_test.py": source_of(i, failing)}, spec=PYTEST_SPEC)
        running[i] = (sandbox, start(sandbox, env))
    outputs = {}
    for i, (sandbox, proc) in running.items():
        run = finish(sandbox, proc)
        assert run.exit_code == (1 if files[i] else 0), run.stdout
        assert run.report.get("warnings") == [], run.report
        outputs[i] = run.stdout
    return outputs


def lastfailed(named_cache: Path) -> set[str]:
    return set(json.loads(shared(named_cache)[LASTFAILED]))


def test_concurrent_runs_each_keep_their_failures_and_drop_their_fixed_tests(named_cache: Path) -> None:
    # 16 files failing at once: pytest rewrites one lastfailed file per run; whole-file
    # last-writer-wins kept 1-3 of 16 (research note). The three-way merge keeps all 16.
    run_pytest_files(named_cache, {i: True for i in range(16)})
    assert lastfailed(named_cache) == {f"t{i}_test.py::test_bad_{i}" for i in range(16)}
    # Fix 8 of them, all 16 running at once again: exactly those 8 leave (a union would keep them).
    run_pytest_files(named_cache, {i: i % 2 == 1 for i in range(16)})
    assert lastfailed(named_cache) == {f"t{i}_test.py::test_bad_{i}" for i in range(1, 16, 2)}
    assert {f"t{i}_test.py::test_ok_{i}" for i in range(16)} <= set(json.loads(shared(named_cache)["pytest/v/cache/nodeids"]))
    # --lf: a file with a recorded failure runs only that test.
    outputs = run_pytest_files(named_cache, {1: True, 2: False}, "--lf")
    assert "1 failed, 1 deselected" in outputs[1]
    assert "2 passed" in outputs[2]  # none recorded for it: all of it runs


def test_merge_is_three_way() -> None:
    def merge(given: dict | None, mine: dict, current: dict | None) -> dict:
        dump = lambda d: None if d is None else json.dumps(d).encode()  # noqa: E731
        return json.loads(cache_policy.merge(LASTFAILED, dump(given), json.dumps(mine).encode(), dump(current)))

    # Another run committed b meanwhile; this run fixed a and broke c.
    assert merge({"a": True}, {"c": True}, {"a": True, "b": True}) == {"b": True, "c": True}
    # Given nothing (a cold run): its failures are added, nothing else is touched.
    assert merge(None, {"c": True}, {"a": True}) == {"a": True, "c": True}
    assert merge({"a": True}, {"a": True}, None) == {}  # unchanged by this run, gone from the cache: stays gone
    with pytest.raises(ValueError, match="lastfailed is not pytest's"):
        merge(None, [1], None)  # type: ignore[arg-type]


def test_a_file_that_fails_to_merge_is_not_committed_and_the_cache_keeps_its_copy(named_cache: Path) -> None:
    write = lambda text: ["sh", "-c", f"mkdir -p {CACHE}/pytest/v/cache && printf '%s' '{text}' > {CACHE}/{LASTFAILED}"]  # noqa: E731
    for text in ('{"a": true}', "[1]"):
        sandbox = make_sandbox(named_cache, write(text), spec=PYTEST_SPEC)
        run = finish(sandbox, start(sandbox))
    assert run.exit_code == 0
    assert any("merging it failed" in w and "not pytest's" in w for w in run.report["warnings"]), run.report
    assert json.loads(shared(named_cache)[LASTFAILED]) == {"a": True}


def test_a_record_that_cannot_be_read_for_the_merge_is_kept_as_it_is(named_cache: Path) -> None:
    """An I/O error reading the record to merge into (here an injected ENOSPC) skips the group
    with a warning: merged with nothing, this run's write would drop every other run's entries."""
    write = lambda text: ["sh", "-c", f"mkdir -p {CACHE}/pytest/v/cache && printf '%s' '{text}' > {CACHE}/{LASTFAILED}"]  # noqa: E731
    sandbox = make_sandbox(named_cache, write('{"a": true}'), spec=PYTEST_SPEC)
    assert finish(sandbox, start(sandbox)).exit_code == 0
    sandbox = make_sandbox(named_cache, write('{"a": true, "b": true}'), spec=PYTEST_SPEC)
    run = finish(sandbox, start(sandbox, {"CACHEPLUG_FAULT": "enospc:read-current:1"}))
    assert run.exit_code == 0
    assert any("merging it failed" in w and "injected at read-current" in w for w in run.report["warnings"]), run.report
    assert json.loads(shared(named_cache)[LASTFAILED]) == {"a": True}


def test_locks_partial_downloads_and_session_state_are_never_committed(named_cache: Path) -> None:
    written = [
        "pytest/v/cache/stepwise", "hf-hub/.locks/models--x/abc.lock", "hf-hub/models--x/blobs/abc.incomplete",
        "torch-hub/hub/checkpoints/w.pt.partial", "matplotlib/fontlist.json.lock",
        # kept:
        "hf-hub/models--x/blobs/def", "hypothesis/examples/k/v", "matplotlib/fontlist-v330.json",
    ]
    script = " && ".join(f"mkdir -p $(dirname {CACHE}/{rel}) && echo x > {CACHE}/{rel}" for rel in written)
    sandbox = make_sandbox(named_cache, ["sh", "-c", script], spec=PYTEST_SPEC)
    assert finish(sandbox, start(sandbox)).exit_code == 0
    assert sorted(shared(named_cache)) == sorted(written[5:])


def test_a_directory_unit_is_one_group(named_cache: Path) -> None:
    rels = ["triton/k1/kernel.json", "triton/k1/kernel.cubin", "hf-datasets/csv/default-abc/0.0.0/h1/csv-train.arrow",
            "hf-datasets/csv/default-abc/0.0.0/h1/dataset_info.json", "hypothesis/examples/k/v"]
    assert {r: cache_policy.group_of(r) for r in rels} == {
        rels[0]: "triton/k1", rels[1]: "triton/k1", rels[2]: "hf-datasets/csv/default-abc/0.0.0/h1",
        rels[3]: "hf-datasets/csv/default-abc/0.0.0/h1", rels[4]: rels[4],
    }
    script = " && ".join(f"mkdir -p $(dirname {CACHE}/{rel}) && echo x > {CACHE}/{rel}" for rel in rels)
    sandbox = make_sandbox(named_cache, ["sh", "-c", script], spec=PYTEST_SPEC)
    assert finish(sandbox, start(sandbox)).exit_code == 0
    scope = str(scope_path(named_cache, PYTEST_SPEC))
    groups = {layout.load_entry(p, cache_policy.group_of)[0] for p in layout.iter_entries(scope)}
    assert groups == {"triton/k1", "hf-datasets/csv/default-abc/0.0.0/h1", "hypothesis/examples/k/v"}


def test_hub_snapshot_links_are_kept_and_no_other_symlink_is(named_cache: Path, tmp_path: Path) -> None:
    # The Hugging Face hub's snapshots are relative symlinks to its blobs, which an offline load
    # needs: kept. A hostile or buggy test can plant links pointing outside the cache: none of
    # those is committed (nor followed).
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    snapshot = f"{CACHE}/hf-hub/models--x/snapshots/abc"
    script = (
        f"mkdir -p {snapshot}/sub {CACHE}/hf-hub/models--x/blobs && echo blob > {CACHE}/hf-hub/models--x/blobs/b1"
        f" && ln -s {outside}/secret {snapshot}/absolute && ln -s ../../../../../../../outside/secret {snapshot}/escaping"
        f" && ln -s ../../blobs/b1 {snapshot}/inside && ln -s ../../../blobs/b1 {snapshot}/sub/deeper"
        f" && ln -s {outside} {CACHE}/hf-hub/linked-dir && ln -s ../models--x/blobs/b1 {CACHE}/hf-hub/models--x/not-a-snapshot"
    )
    sandbox = make_sandbox(named_cache, ["sh", "-c", script], spec=PYTEST_SPEC)
    run = finish(sandbox, start(sandbox))
    assert run.exit_code == 0 and run.report["warnings"] == [], run
    assert shared(named_cache) == {
        "hf-hub/models--x/blobs/b1": b"blob\n",
        "hf-hub/models--x/snapshots/abc/inside": b"../../blobs/b1",  # a link: its object holds the target
        "hf-hub/models--x/snapshots/abc/sub/deeper": b"../../../blobs/b1",
    }
    assert (outside / "secret").read_text() == "secret" and sorted(p.name for p in outside.iterdir()) == ["secret"]

    # The next run gets the links back, as links, reading the blob through them; also from a
    # snapshot (cache-export, cache-import) in another named cache.
    archive = tmp_path / "tests.tar.gz"
    snapshot_module.export([scope_path(named_cache, PYTEST_SPEC)], archive, lock_timeout=5, grouping=lambda tool: cache_policy.group_of)
    other = tmp_path / "machine2" / "cacheplug"
    snapshot_module.import_(archive, other, "/elsewhere", max_size=0, lock_timeout=5, grouping=lambda tool: cache_policy.group_of)
    read = f"readlink {snapshot}/inside && cat {snapshot}/inside {snapshot}/sub/deeper && ls {CACHE}/hf-hub"
    for cache in (named_cache, other):
        sandbox = make_sandbox(cache, ["sh", "-c", read], spec=PYTEST_SPEC)
        run = finish(sandbox, start(sandbox))
        assert (run.exit_code, run.stdout, run.report["given"]) == (0, "../../blobs/b1\nblob\nblob\nmodels--x\n", 3), run


def test_a_planted_link_record_never_makes_a_link_out_of_the_sandbox(named_cache: Path) -> None:
    # A record saying a file is a symlink out of its cache (or one where the tool keeps no links)
    # is a miss for its group, never a link out of the sandbox's copy.
    sandbox = make_sandbox(named_cache, ["sh", "-c", f"mkdir -p {CACHE}/x && echo a > {CACHE}/x/a"], spec=PYTEST_SPEC)
    finish(sandbox, start(sandbox))
    scope = str(scope_path(named_cache, PYTEST_SPEC))
    planted = {
        "hf-hub/m/snapshots/r/up": "../../../../../../etc/passwd",
        "hf-hub/m/snapshots/r/absolute": "/etc/passwd",
        "hf-hub/m/snapshots/r/other-cache": "../../../../pytest/v/cache/lastfailed",
        "pytest/v/cache/not-kept-here": "lastfailed",
    }
    for rel, target in planted.items():
        data = target.encode()
        obj = hashlib.sha256(data).hexdigest()
        for path, content in ((layout.object_path(scope, obj), data),
                              (layout.entry_path(scope, rel), layout.record_bytes(scope, rel, {rel: (obj, len(data))}, {}, {rel}))):
            Path(path).parent.mkdir(mode=0o700, exist_ok=True)
            Path(path).write_bytes(content)
    sandbox = make_sandbox(named_cache, ["sh", "-c", f"find {CACHE} -type l"], spec=PYTEST_SPEC)
    run = finish(sandbox, start(sandbox))
    assert (run.exit_code, run.stdout, run.report["given"], run.report["skipped"]) == (0, "", 1, len(planted)), run
    assert all("is not one this tool's cache keeps" in w for w in run.report["warnings"]), run.report
