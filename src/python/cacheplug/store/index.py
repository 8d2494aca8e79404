"""index.json: what each entry of a scope holds and weighs, for the byte budget; and eviction.

Kept beside the entries and rewritten by every commit, under the lock; readers never need it."""

from __future__ import annotations

import json
import os

from .faults import fault
from .layout import (
    TMP_GRACE, TMP_PREFIX, checked_name, entry_file, iter_entries, iter_objects, load_entry, object_path, own_dir,
    read_nofollow, unlink_quietly, write_atomically,
)
from .report import Report

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Tuple

INDEX_FORMAT = 1
LOW_WATER = 0.9  # eviction goes below the budget by this factor, so it runs rarely, not every commit


class Index:
    """Every entry's record size and objects, and the objects no entry names any more (garbage:
    superseded versions, not deleted at once so that a commit costs no unlink per file).

    Kept in index.json beside the entries and rewritten by every commit, under the lock. It is
    trusted only if it names the current generation: a commit bumps the generation *before* it
    changes anything, so a commit killed midway leaves a stale index, and the next commit
    rebuilds it from the records (the warm start). Readers never need it."""

    def __init__(self) -> None:
        self.entries: Dict[str, Tuple[int, Dict[str, int]]] = {}  # record name -> (size, {obj: size})
        self.refs: Dict[str, int] = {}  # object -> number of entries naming it
        self.garbage: Dict[str, int] = {}  # object -> size, on disk but named by no entry
        self.sizes: Dict[str, int] = {}  # object -> size, for every object named
        self.bad_records: Dict[str, int] = {}  # record name -> size: unreadable or foreign, unused

    def bytes(self) -> int:
        return (sum(s for s, _ in self.entries.values()) + sum(self.sizes.values()) + sum(self.garbage.values())
                + sum(self.bad_records.values()))

    def put(self, name: str, record_size: int, objects: Dict[str, int]) -> None:
        self.remove(name)
        self.bad_records.pop(name, None)  # replaced by a good one
        self.entries[name] = (record_size, objects)
        for obj, size in objects.items():
            self.refs[obj] = self.refs.get(obj, 0) + 1
            self.sizes[obj] = size
            self.garbage.pop(obj, None)

    def remove(self, name: str) -> List[str]:
        """Forget an entry; return the objects that no entry names any more (now garbage)."""
        freed = []
        _, objects = self.entries.pop(name, (0, {}))
        for obj in objects:
            self.refs[obj] -= 1
            if not self.refs[obj]:
                del self.refs[obj]
                self.garbage[obj] = self.sizes.pop(obj)
                freed.append(obj)
        return freed

    def save(self, scope: str, generation: int) -> None:
        data = {"format": INDEX_FORMAT, "generation": generation, "garbage": self.garbage,
                "bad_records": self.bad_records,
                "entries": {n: [size, objs] for n, (size, objs) in self.entries.items()}}
        write_atomically(os.path.join(scope, "index.json"), json.dumps(data).encode(), "write-index")

    @classmethod
    def load(cls, scope: str, generation: int) -> Optional["Index"]:
        """The saved index if it is whole and current, else None."""
        try:
            data = json.loads(read_nofollow(os.path.join(scope, "index.json")))
            if data.get("format") != INDEX_FORMAT or data.get("generation") != generation:
                return None
            index = cls()
            # Every name becomes a path (eviction deletes it): a crafted index naming an
            # absolute path or `..` is not an index of ours (checked_name raises ValueError).
            for name, (size, objects) in data["entries"].items():
                index.put(checked_name(name), int(size), {checked_name(o): int(s) for o, s in objects.items()})
            index.garbage.update({checked_name(o): int(s) for o, s in data["garbage"].items() if o not in index.refs})
            index.bad_records.update({checked_name(n): int(s) for n, s in data["bad_records"].items() if n not in index.entries})
            return index
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None  # missing, torn by hand, crafted, or foreign: rebuilt from the records

    @classmethod
    def rebuild(cls, scope: str) -> "Index":
        """Read every record and list every object (only after a crash, or for cache-prune)."""
        index = cls()
        for path in iter_entries(scope):
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue  # deleted since listdir
            try:
                _, files = load_entry(path, None)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, KeyError):
                # Unreadable or foreign: setup skips it too. Counted, and deleted by eviction.
                index.bad_records[os.path.basename(path)] = size
                continue
            index.put(os.path.basename(path), size, {obj: s for obj, s in files.values()})
        for obj, size in iter_objects(scope):
            if obj not in index.refs:
                index.garbage[obj] = size
        return index


def _unlink_objects(scope: str, objects: Iterable[str]) -> None:
    for obj in objects:
        unlink_quietly(object_path(scope, obj))


def evict(scope: str, index: Index, target: int, report: Report) -> None:
    """Bring the scope down to `target` bytes: garbage first, then least recently used entries.
    Runs under the lock. A record goes before its objects, so a reader that read it just before
    finds an object missing: a miss for that group, never a torn one."""
    # Objects of commits that never named them (killed, or timed out on the lock) are on disk but
    # not in the index: find them now. Eviction is rare (LOW_WATER), so this listing is too. One
    # that a commit waiting for the lock is about to name is re-stored by that commit.
    for obj, size in iter_objects(scope):
        if obj not in index.refs:
            index.garbage[obj] = size
    before = index.bytes()
    _unlink_objects(scope, list(index.garbage))
    index.garbage.clear()
    for name in index.bad_records:
        unlink_quietly(entry_file(scope, name))
    index.bad_records.clear()
    current = index.bytes()  # kept by hand below: summing the index per entry would be quadratic
    if current > target:
        def last_used(name: str) -> Tuple[int, str]:
            try:
                return os.lstat(entry_file(scope, name)).st_mtime_ns, name
            except OSError:
                return 0, name  # already gone: forget it first
        for name in sorted(index.entries, key=last_used):
            if current <= target:
                break
            unlink_quietly(entry_file(scope, name))
            fault("evict")
            record_size = index.entries[name][0]
            freed = index.remove(name)
            current -= record_size + sum(index.garbage[obj] for obj in freed)
            _unlink_objects(scope, freed)
            index.garbage.clear()
            report.data["evicted"] = report.data.get("evicted", 0) + 1
    report.data["freed_bytes"] = report.data.get("freed_bytes", 0) + before - current


def collect_temp_files(scope: str, now: float) -> int:
    """Delete temp files left by killed runs (older than TMP_GRACE by ctime, which a rename or a
    link also sets); return how many bytes that freed."""
    freed = 0
    dirs = [scope] + [os.path.join(scope, sub, shard) for sub in ("entries", "objects")
                      for shard in os.listdir(os.path.join(scope, sub))]
    for directory in dirs:
        try:
            names = os.listdir(own_dir(directory, create=False))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
                if name.startswith(TMP_PREFIX) and now - st.st_ctime > TMP_GRACE:
                    os.unlink(path)
                    freed += st.st_size
            except OSError:
                pass
    return freed
