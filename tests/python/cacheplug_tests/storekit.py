"""Run the real cache shim (engine.sandbox_files: the shim, the store) in hand-made sandboxes, as Pants would.

A sandbox here is what Pants gives the wrapped process: a fresh directory holding the shim, the store
and the tool's inputs, with the named cache reachable at `.cache/cacheplug` through a symlink.
Many sandboxes share one named cache, as concurrent Pants runs do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cacheplug.engine import (
    NAMED_CACHE_SANDBOX_PATH, REPORT_PATH, SHIM_PATH, CacheSpec, compile_store_argv, sandbox_files, sandbox_scope_dir,
)
from cacheplug.python.rules import shared_cache_spec
from cacheplug.store import layout
from cacheplug.store.index import Index
from cacheplug.subsystem import SharedCache
from cacheplug_tests import fake_policy

FAKETOOL = str(Path(__file__).with_name("faketool.py"))
FAKE_SPEC = CacheSpec(tool="fake", scope=("test",), policy="cacheplug_tests.fake_policy", commit_exit_codes=(0, 1))
FAKE_GROUPING = fake_policy.group_of
PYTEST_SPEC = shared_cache_spec(SharedCache.read_write)  # cacheplug.python's, as `pants test` runs it
ARGV_FILE = ".cacheplug/argv.json"


def fake_grouping(tool: str) -> layout.GroupOf | None:
    """What the goals' registered-tools grouping gives, for faketool."""
    return FAKE_GROUPING if tool == FAKE_SPEC.tool else None  # the tool's argv, which Pants would pass to the shim
FAKE_ARGV = [sys.executable, FAKETOOL, FAKE_SPEC.sandbox_dir, "src"]
BUILD_ROOT = "/buildroot"  # any fixed string: the scope hash only needs to be stable


@dataclass
class Run:
    exit_code: int
    stdout: str
    report: dict = field(default_factory=dict)


def scope_path(named_cache: Path, spec: CacheSpec = FAKE_SPEC) -> Path:
    rel = sandbox_scope_dir(spec, BUILD_ROOT)
    return named_cache / os.path.relpath(rel, NAMED_CACHE_SANDBOX_PATH)


def make_sandbox(
    named_cache: Path,
    argv: list[str],
    files: dict[str, str] | None = None,
    spec: CacheSpec = FAKE_SPEC,
    lock_timeout: float = 30.0,
    sandbox_parent: Path | None = None,
    max_size: int = 0,
    bytecode: bool = False,
) -> Path:
    """A fresh sandbox that runs `argv` through the shim against `named_cache`. `bytecode`: with the
    store's bytecode, as engine.compile_store ships it (for benchmarks: Pants' start-up cost)."""
    named_cache.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sandbox-", dir=sandbox_parent or named_cache.parent))
    for rel, content in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    for file in sandbox_files(spec, sys.executable, BUILD_ROOT, lock_timeout, max_size):
        (root / file.path).parent.mkdir(parents=True, exist_ok=True)
        (root / file.path).write_bytes(file.content)
    if bytecode:
        subprocess.run(compile_store_argv(sys.executable, str(root / ".cacheplug/store")), check=True)
    (root / ARGV_FILE).write_text(json.dumps(argv))
    (root / ".cache").mkdir()
    os.symlink(named_cache, root / NAMED_CACHE_SANDBOX_PATH)
    return root


def start(sandbox: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", SHIM_PATH, *json.loads((sandbox / ARGV_FILE).read_text())],
        cwd=sandbox,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a test can kill -9 the whole run
    )


def finish(sandbox: Path, proc: subprocess.Popen) -> Run:
    stdout, _ = proc.communicate(timeout=600)
    report_file = sandbox / REPORT_PATH
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    shutil.rmtree(sandbox)
    return Run(proc.returncode, stdout, report)


def start_fake(named_cache: Path, sources: dict[str, str], env: dict[str, str] | None = None, **kw: Any) -> tuple[Path, subprocess.Popen]:
    """Start one faketool run through the shim on `sources` ({module: text})."""
    files = {f"src/{m}.mod": text for m, text in sources.items()}
    sandbox = make_sandbox(named_cache, FAKE_ARGV, files, **kw)
    return sandbox, start(sandbox, env)


def run_fake(named_cache: Path, sources: dict[str, str], env: dict[str, str] | None = None, **kw: Any) -> Run:
    """One faketool run through the shim on `sources`, to the end."""
    return finish(*start_fake(named_cache, sources, env, **kw))


def run_cold(sources: dict[str, str]) -> Run:
    """The oracle: faketool with an empty cache of its own, no shim."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        for m, text in sources.items():
            (src / f"{m}.mod").write_text(text)
        proc = subprocess.run(
            [sys.executable, FAKETOOL, str(Path(tmp, "cache")), str(src)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        return Run(proc.returncode, proc.stdout)


def fake_group_problem(files: dict[str, bytes]) -> str | None:
    """faketool's own consistency rule for one group: its meta must describe the data beside it."""
    meta = next((json.loads(v) for k, v in files.items() if k.endswith(".meta.json")), None)
    data = next((json.loads(v) for k, v in files.items() if k.endswith(".data.json")), None)
    if meta is None or data is None:
        return "meta or data missing"
    if meta["src"] != hashlib.sha256(json.dumps(data["src"], sort_keys=True).encode()).hexdigest():
        return "torn: meta and data come from different sources"
    return None


def same_as_cold(run: Run, sources: dict[str, str]) -> str | None:
    """None if `run` gave what a cold run gives on `sources`, else what differs."""
    cold = run_cold(sources)
    if (run.exit_code, run.stdout) == (cold.exit_code, cold.stdout):
        return None
    return f"exit {run.exit_code} (cold: {cold.exit_code}), output {run.stdout[:200]!r} (cold: {cold.stdout[:200]!r})"


def disk_bytes(scope: Path) -> int:
    """What a scope's records and objects weigh on disk (apparent sizes; temp files excluded)."""
    return sum(
        p.lstat().st_size
        for sub in ("entries", "objects")
        for p in (scope / sub).glob("*/*")
        if not p.name.startswith(layout.TMP_PREFIX)
    )


def index_problems(scope: Path) -> list[str]:
    """If the scope's index claims to be current, it must say exactly what is on disk."""
    index = Index.load(str(scope), layout.read_generation(str(scope)))
    if index is None:
        return []  # stale or missing: the next commit rebuilds it
    truth = Index.rebuild(str(scope))
    problems = []
    if index.entries != truth.entries:
        problems.append(f"index entries differ from the records: {len(index.entries)} vs {len(truth.entries)}")
    # Objects stored by commits that died before naming them are unknown to the index until an
    # eviction or cache-prune lists the objects: those alone may be missing from it.
    if not index.garbage.keys() <= truth.garbage.keys():
        problems.append("index garbage holds objects that are named or gone")
    orphans = sum(size for obj, size in truth.garbage.items() if obj not in index.garbage)
    if index.bytes() + orphans != disk_bytes(scope):
        problems.append(f"index says {index.bytes()} bytes (+{orphans} orphaned), disk holds {disk_bytes(scope)}")
    return problems


def check_scope(
    scope: Path, group_problem: Callable[[dict[str, bytes]], str | None] = fake_group_problem, check_index: bool = True,
    grouping: layout.GroupOf = FAKE_GROUPING,
) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    """Integrity check of a cache scope: every record valid, every object whole and matching its
    hash, every group consistent, the index (if current) true. Returns ({group: {file: content}},
    [problems])."""
    groups: dict[str, dict[str, bytes]] = {}
    problems: list[str] = index_problems(scope) if check_index and (scope / "entries").exists() else []
    if not (scope / "entries").exists():
        return groups, problems
    for path in layout.iter_entries(str(scope)):
        try:
            group, files = layout.load_entry(path, grouping)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError, KeyError) as e:
            problems.append(f"bad record {path}: {e}")
            continue
        contents = {}
        for rel, (obj, size) in files.items():
            try:
                data = Path(layout.object_path(str(scope), obj)).read_bytes()
            except OSError as e:
                problems.append(f"{group}: object of {rel} unreadable: {e}")
                continue
            if len(data) != size or hashlib.sha256(data).hexdigest() != obj:
                problems.append(f"{group}: object of {rel} torn or corrupt")
            contents[rel] = data
        problem = group_problem(contents)
        if problem:
            problems.append(f"{group}: {problem}")
        groups[group] = contents
    return groups, problems


def tree_state(path: Path) -> dict[str, str]:
    """Every path under `path` with its content hash and mtime (or link target): to prove it is
    untouched."""
    state = {}
    for p in sorted(path.rglob("*")):
        if p.is_symlink():
            state[str(p)] = "-> " + os.readlink(p)
        elif p.is_file():
            state[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() + f" {p.stat().st_mtime_ns}"
        else:
            state[str(p)] = "dir"
    return state
