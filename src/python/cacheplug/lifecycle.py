"""What is in cacheplug's named cache, and making room in it: the work behind `pants cache-info`
and `pants cache-prune`, on the layout the store owns (see cacheplug/store/__init__.py).

Layout: <named caches dir>/cacheplug/<tool>/<scope id>/, one scope per tool and everything that
changes what the tool writes (scope.json says what).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from cacheplug.store import layout
from cacheplug.store.index import Index, collect_temp_files, evict
from cacheplug.store.locking import scope_lock
from cacheplug.store.report import Report
from cacheplug.store.runlog import read_runs

RECENT_RUNS = 20  # the hit rate is over this many of a scope's last runs


@dataclass(frozen=True)
class ScopeInfo:
    tool: str
    scope_id: str
    path: Path
    description: dict  # scope.json: tool, parts, buildroot, policy ({} if missing)
    entries: int
    bytes: int
    last_used: Optional[float]  # epoch seconds: the newest record (runs mark what they use), or the last run
    runs: int  # of the recent runs counted below
    hits: int  # entries recent runs were given and did not rewrite
    misses: int  # entries recent runs wrote

    @property
    def hit_rate(self) -> Optional[float]:
        return self.hits / (self.hits + self.misses) if self.hits + self.misses else None

    def label(self) -> str:
        """The parts a person tells scopes apart by (tool version, resolve, interpreter)."""
        parts = self.description.get("parts", [])
        return ", ".join(p for p in parts[:3] if len(p) < 60) or "(scope.json missing)"

    def to_json(self) -> dict:
        return {
            "tool": self.tool, "scope": self.scope_id, "path": str(self.path), "label": self.label(),
            "buildroot": self.description.get("buildroot"), "entries": self.entries, "bytes": self.bytes,
            "last_used": self.last_used, "recent_runs": self.runs, "hits": self.hits, "misses": self.misses,
            "hit_rate": self.hit_rate,
        }


def tools(root: Path) -> list[str]:
    return sorted(p.name for p in _dirs(root))


def scopes(root: Path, tool: Optional[str] = None) -> Iterator[Path]:
    for tool_dir in _dirs(root):
        if tool in (None, tool_dir.name):
            yield from _dirs(tool_dir)


def _dirs(path: Path) -> list[Path]:
    """Real subdirectories, not symlinks, not temp dirs of an import or a clear in progress."""
    try:
        children = sorted(path.iterdir())
    except OSError:
        return []
    return [p for p in children if p.is_dir() and not p.is_symlink() and not p.name.startswith(layout.TMP_PREFIX)]


def describe(scope: Path) -> dict:
    try:
        data = json.loads(layout.read_nofollow(str(scope / "scope.json")))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def info(scope: Path) -> ScopeInfo:
    """A scope's figures, from its index if current (else from the records, without writing)."""
    path = str(scope)
    index = Index.load(path, layout.read_generation(path)) if (scope / "entries").is_dir() else None
    if index is None:
        index = Index.rebuild(path) if (scope / "entries").is_dir() else Index()
    last_used = None
    for name in index.entries:
        try:
            mtime = os.lstat(layout.entry_file(path, name)).st_mtime
        except OSError:
            continue
        last_used = mtime if last_used is None else max(last_used, mtime)
    runs = read_runs(path)[-RECENT_RUNS:]
    if runs:
        last_used = max(last_used or 0, runs[-1]["t"])
    return ScopeInfo(
        tool=scope.parent.name, scope_id=scope.name, path=scope, description=describe(scope),
        entries=len(index.entries), bytes=index.bytes(), last_used=last_used, runs=len(runs),
        hits=sum(r["hits"] for r in runs), misses=sum(r["misses"] for r in runs),
    )


def unused_for(scope: Path, days: float, now: float) -> bool:
    """True if no run used `scope` (read-write) in the last `days` days."""
    last = info(scope).last_used
    return last is None or now - last > days * 86400


def prune(scope: Path, max_size: int, lock_timeout: float) -> int:
    """Evict `scope` down to `max_size` bytes (0: only collect garbage); return the bytes freed.
    Under the scope's lock, with an index rebuilt from the records (cache-prune trusts the disk,
    not the index), so it also collects what killed runs left behind."""
    path = layout.open_scope(str(scope))
    report = Report()
    with scope_lock(path, lock_timeout):
        generation = layout.read_generation(path)
        layout.write_atomically(os.path.join(path, "generation"), str(generation + 1).encode())
        index = Index.rebuild(path)
        freed = collect_temp_files(path, time.time())
        evict(path, index, max_size if max_size else index.bytes() - sum(index.garbage.values()), report)
        index.save(path, generation + 1)
        return freed + report.data.get("freed_bytes", 0)


def clear(scope: Path, lock_timeout: float) -> int:
    """Delete a whole scope; return the bytes freed. It is renamed away under its lock first, so
    runs see it whole or not at all (a run reading it meanwhile gets misses, never errors)."""
    freed = info(scope).bytes
    with scope_lock(str(scope), lock_timeout):
        trash = scope.parent / f"{layout.TMP_PREFIX}clear.{os.getpid()}.{scope.name}"
        os.rename(scope, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return freed


def collect_stale_temp_dirs(root: Path) -> int:
    """Remove what a killed import or clear left (temp dirs under the tool dirs and the root)."""
    freed = 0
    now = time.time()
    for parent in [root, *_dirs(root)]:
        try:
            children = list(parent.iterdir())
        except OSError:
            continue
        for child in children:
            try:
                if child.name.startswith(layout.TMP_PREFIX) and now - child.lstat().st_ctime > layout.TMP_GRACE:
                    freed += sum(p.lstat().st_size for p in child.rglob("*") if p.is_file()) if child.is_dir() else child.lstat().st_size
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            except OSError:
                continue
    return freed
