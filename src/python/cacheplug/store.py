"""The shared cache store: seeds a sandbox from it, and commits a tool's writes back into it.

This file runs as a program inside each Pants sandbox (python store.py setup|commit ...), so it
uses the standard library only. It never fails the build: every problem becomes a warning in the
report, the tool's own result stands.

Layout of one cache scope (a directory inside the Pants named cache):

    objects/ab/<sha256>   immutable file contents, content-addressed; never modified once there
    entries/ab/<sha256 of the group name>
                          one JSON record per *group* of tool files: {"format": F, "scope": s,
                          "group": g, "files": {relpath: [object, size]}}. A group is the files
                          that must travel together (mypy's <module>.meta.json + .data.json).
    lock                  flock(2) lock file serializing commits
    generation            a counter, bumped by every commit
    index.json            what each entry holds and weighs (for the byte budget); see Index
    scope.json            what the scope is for (tool, scope parts, buildroot): cache-info, import
    runs.log              one line per run: entries reused untouched / written (hit rate)

Why this shape:
- A group's record is replaced with one rename(2), so a reader sees a group's files either all old
  or all new, never meta from one run and data from another -- with or without the lock. Objects
  are written under a unique temp name in their own directory, then renamed, so no reader ever sees
  a partial file, and two writers of the same content write the same bytes.
- Merging is per group: a commit only replaces the groups its run wrote, so concurrent runs never
  lose each other's work; for the same group the last commit wins, and either version is whole.
- Readers take no lock. A group whose object vanished (replaced and deleted by a commit racing with
  us) or that fails validation is a miss for this run: it costs work, never correctness.
- The lock (flock(2): excludes flock(1) and Python's filelock on the same file; fcntl.lockf does
  not) makes the generation check-and-bump atomic, and keeps deletions of superseded objects from
  racing with a commit that references them. If flock silently does nothing (some network
  filesystems), the worst case is a group that becomes a miss.
- Least-recently-used eviction keeps a scope within its byte budget. Last use is the record's
  mtime: a commit writes it, and marks (at most every TOUCH_AFTER seconds) each group the tool
  read or replaced. The tool is given every group, so "given" says nothing; "read" is seen in the
  atime of the file we linked in: linking sets its ctime, and under relatime (Linux's default) the
  next read then moves its atime. On a noatime mount no read is ever seen: then every group given
  counts as used. Eviction deletes the record first, then objects no record names any more: a
  run that read the record just before becomes a miss for that group (an object gone when it
  links it), never a torn group.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import sys
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

FORMAT = 2  # 2: records name their scope
TMP_PREFIX = ".cacheplug-tmp."
HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_ENTRY_WARNINGS = 5  # per run; the rest are counted
INDEX_FORMAT = 1
TOUCH_AFTER = 600  # seconds: LRU resolution; a record reused more often is not touched again
LOW_WATER = 0.9  # eviction goes below the budget by this factor, so it runs rarely, not every commit
TMP_GRACE = 900  # seconds: a temp file older than this (ctime) belongs to a killed run
RUNS_KEPT = 50  # lines of runs.log kept when it is trimmed

# Fault injection for the reliability tests, off unless CACHEPLUG_FAULT is set:
#   "kill:<point>:<n>"    SIGKILL this process the n-th time it reaches fault(<point>);
#   "enospc:<point>:<n>"  fail with ENOSPC (disk full) there instead;
#   "wait:<point>:<n>"    wait there until the file $CACHEPLUG_FAULT_GATE exists (to stage a race);
#   "nolock"              skip flock entirely, to prove correctness does not depend on the lock;
#   "euid:<n>"            act as user n, to test caches owned by another user without root.
# CACHEPLUG_FAULT_LOG=path: append "<point>" there when a kill, enospc or wait fault fires.
FAULT = os.environ.get("CACHEPLUG_FAULT", "")
_fault_hits: Dict[str, int] = {}
EUID = int(FAULT[5:]) if FAULT.startswith("euid:") else os.geteuid()


def fault(point: str) -> None:
    kind, _, rest = FAULT.partition(":")
    if kind in ("kill", "enospc", "wait") and rest.rpartition(":")[0] == point:
        _fault_hits[point] = _fault_hits.get(point, 0) + 1
        if _fault_hits[point] == int(rest.rpartition(":")[2]):
            if os.environ.get("CACHEPLUG_FAULT_LOG"):
                with open(os.environ["CACHEPLUG_FAULT_LOG"], "a") as log:
                    log.write(f"{point}\n")
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "wait":
                while not os.path.exists(os.environ["CACHEPLUG_FAULT_GATE"]):
                    time.sleep(0.01)
                return
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (injected at {point})")


class Report:
    """What this run did, written as JSON for the Pants rule to log."""

    def __init__(self) -> None:
        self.data: Dict[str, Any] = {
            "reused": 0,
            "written": 0,
            "deleted": 0,
            "skipped": 0,
            "lock_wait_ms": 0,
            "warnings": [],
        }

    def warn(self, message: str) -> None:
        self.data["warnings"].append(message)

    def warn_entry(self, message: str) -> None:
        """A warning about one cache entry: a cache damaged throughout (or written by an older
        cacheplug) would give one per entry, so only the first few are kept, the rest counted."""
        self.data["entry_warnings"] = self.data.get("entry_warnings", 0) + 1
        if self.data["entry_warnings"] <= MAX_ENTRY_WARNINGS:
            self.warn(message)
        else:
            self.data["warnings_dropped"] = self.data.get("warnings_dropped", 0) + 1

    def save(self, path: str) -> None:
        write_atomically(path, json.dumps(self.data).encode())  # killed midway: the old report


# --- naming --------------------------------------------------------------------------------------


def group_of(relpath: str, by_stem: bool) -> str:
    """The group a tool file belongs to: its stem (mypy's a/b.meta.json -> a/b) or itself."""
    if not by_stem:
        return relpath
    head, base = os.path.split(relpath)
    return os.path.join(head, base.split(".")[0] or base)


def is_safe_relpath(relpath: str) -> bool:
    """A relative path that stays inside its root: no absolute paths, no `..`, nothing odd."""
    if not relpath or relpath.startswith("/") or "\\" in relpath or "\0" in relpath:
        return False
    parts = relpath.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def _hashed_path(root: str, name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return os.path.join(root, digest[:2], digest)


def entry_path(scope: str, group: str) -> str:
    return _hashed_path(os.path.join(scope, "entries"), group)


def object_path(scope: str, obj: str) -> str:
    return os.path.join(scope, "objects", obj[:2], obj)


def _unique_tmp(directory: str) -> str:
    return os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}.{os.urandom(6).hex()}")


# --- the scope directory -------------------------------------------------------------------------


_checked_dirs: set = set()


def reset() -> None:
    """Forget which directories were checked: for callers that live longer than one run (pantsd
    serving cache-prune then cache-import), as the directories may be deleted between calls."""
    _checked_dirs.clear()


def own_dir(path: str, create: bool = True) -> str:
    """`path`, a real directory owned by us, made private (0700) if we create it. A symlink planted
    here (pointing outside the cache) is refused, never followed, for reads and writes alike."""
    if path not in _checked_dirs:
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(f"{path} is not a directory (a symlink?); not using it")
        if st.st_uid != EUID:
            raise OSError(f"{path} is owned by uid {st.st_uid}, not by us; not using it")
        _checked_dirs.add(path)
    return path


def open_scope(scope: str) -> str:
    """Create the scope dir private to this user; refuse one that is a symlink or not ours."""
    root = os.path.dirname(os.path.dirname(scope))  # the named cache: Pants' symlink in the sandbox
    if os.path.islink(root) and not os.path.exists(root):
        # Pants creates a named cache's directory once per process (pantsd lives long); if it was
        # deleted since (rm -rf, a prune), recreate it rather than run cold until pantsd restarts.
        os.makedirs(os.path.join(os.path.dirname(root), os.readlink(root)), mode=0o700, exist_ok=True)
    own_dir(os.path.dirname(scope))  # the tool's directory
    for path in (scope, os.path.join(scope, "entries"), os.path.join(scope, "objects")):
        own_dir(path)
    return scope


def read_generation(scope: str) -> int:
    try:
        return int(_read_nofollow(os.path.join(scope, "generation")).strip() or 0)
    except (OSError, ValueError):
        return 0


def write_atomically(path: str, data: bytes, point: str = "") -> None:
    """Write `path` whole or not at all: a unique temp file in the same dir, then rename(2)."""
    tmp = _unique_tmp(os.path.dirname(path))
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            fault(point)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_nofollow(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        chunks: List[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def iter_entries(scope: str) -> Iterator[str]:
    entries = os.path.join(scope, "entries")
    for shard in sorted(os.listdir(entries)):
        shard_dir = os.path.join(entries, shard)
        try:
            own_dir(shard_dir, create=False)
        except OSError:
            continue  # not a directory of ours: nothing in it is used
        else:
            for name in sorted(os.listdir(shard_dir)):
                if not name.startswith(TMP_PREFIX):
                    yield os.path.join(shard_dir, name)


def load_entry(path: str, by_stem: Optional[bool], data: Optional[bytes] = None) -> Tuple[str, Dict[str, Tuple[str, int]]]:
    """Parse and validate one entry record (read from `path` unless `data` is given); raise
    ValueError if it is foreign or corrupt. `by_stem=None`: do not check how files are grouped."""
    record = json.loads(_read_nofollow(path) if data is None else data)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError("unknown record format")
    scope = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    if record.get("scope") != os.path.basename(scope):
        raise ValueError("record of another cache scope")
    group, files = record.get("group"), record.get("files")
    if not isinstance(group, str) or not is_safe_relpath(group) or not isinstance(files, dict):
        raise ValueError("bad group name")
    if entry_path(scope, group) != path:
        raise ValueError("record stored under the wrong name")
    result = {}
    for rel, value in files.items():
        if not (is_safe_relpath(rel) and (by_stem is None or group_of(rel, by_stem) == group)):
            raise ValueError(f"file {rel!r} does not belong to group {group!r}")
        obj, size = value
        if not (isinstance(obj, str) and HEX64.fullmatch(obj)):
            raise ValueError("bad object name")
        result[rel] = (obj, int(size))
    return group, result


# --- the index: what each entry weighs, for the byte budget --------------------------------------


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
            data = json.loads(_read_nofollow(os.path.join(scope, "index.json")))
            if data.get("format") != INDEX_FORMAT or data.get("generation") != generation:
                return None
            index = cls()
            for name, (size, objects) in data["entries"].items():
                index.put(name, int(size), {str(o): int(s) for o, s in objects.items()})
            index.garbage.update({str(o): int(s) for o, s in data["garbage"].items() if o not in index.refs})
            index.bad_records.update({str(n): int(s) for n, s in data["bad_records"].items() if n not in index.entries})
            return index
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None  # missing, torn by hand, or foreign: rebuilt from the records

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


def iter_objects(scope: str) -> Iterator[Tuple[str, int]]:
    """(name, size) of every object file on disk."""
    objects = os.path.join(scope, "objects")
    for shard in sorted(os.listdir(objects)):
        try:
            shard_dir = own_dir(os.path.join(objects, shard), create=False)
        except OSError:
            continue
        for name in os.listdir(shard_dir):
            if HEX64.fullmatch(name):
                try:
                    yield name, os.lstat(os.path.join(shard_dir, name)).st_size
                except FileNotFoundError:
                    pass


def _unlink_objects(scope: str, objects: Iterable[str]) -> None:
    for obj in objects:
        _unlink_quietly(object_path(scope, obj))


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
        _unlink_quietly(_entry_file(scope, name))
    index.bad_records.clear()
    current = index.bytes()  # kept by hand below: summing the index per entry would be quadratic
    if current > target:
        def last_used(name: str) -> Tuple[int, str]:
            try:
                return os.lstat(_entry_file(scope, name)).st_mtime_ns, name
            except OSError:
                return 0, name  # already gone: forget it first
        for name in sorted(index.entries, key=last_used):
            if current <= target:
                break
            _unlink_quietly(_entry_file(scope, name))
            fault("evict")
            record_size = index.entries[name][0]
            freed = index.remove(name)
            current -= record_size + sum(index.garbage[obj] for obj in freed)
            _unlink_objects(scope, freed)
            index.garbage.clear()
            report.data["evicted"] = report.data.get("evicted", 0) + 1
    report.data["freed_bytes"] = report.data.get("freed_bytes", 0) + before - current


def _entry_file(scope: str, name: str) -> str:
    return os.path.join(scope, "entries", name[:2], name)


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


# --- the run log: hit rates for cache-info -------------------------------------------------------


def log_run(scope: str, hits: int, misses: int) -> None:
    """Append this run's counts to runs.log. One short write(2) with O_APPEND, so concurrent runs
    need no lock; it is trimmed (by whoever gets the lock without waiting) once it grows. A line
    appended to the old file while a trim replaces it is lost: statistics, not cache content."""
    path = os.path.join(scope, "runs.log")
    line = json.dumps({"t": int(time.time()), "hits": hits, "misses": misses}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line.encode())
            big = os.fstat(fd).st_size > RUNS_KEPT * 200
        finally:
            os.close(fd)
    except OSError:
        return  # statistics only: never worth failing the commit over (disk full, a symlink)
    if big:
        lock = os.open(os.path.join(scope, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            write_atomically(path, b"".join(_read_nofollow(path).splitlines(True)[-RUNS_KEPT:]))
        except OSError:
            pass  # busy: someone else trims, or we do next time
        finally:
            os.close(lock)


def read_runs(scope: str) -> List[Dict[str, int]]:
    runs: List[Dict[str, int]] = []
    try:
        lines = _read_nofollow(os.path.join(scope, "runs.log")).splitlines()
    except OSError:
        return runs
    for line in lines[-RUNS_KEPT:]:
        try:
            run = json.loads(line)
            runs.append({k: int(run[k]) for k in ("t", "hits", "misses")})
        except (ValueError, TypeError, KeyError):
            continue  # a line torn by a crash
    return runs


# --- setup: seed the sandbox ---------------------------------------------------------------------


def _materialize(src: str, dest: str, obj: str, size: int, copy: bool, made: set) -> Tuple[bytes, os.stat_result]:
    """Link (or copy) a verified object to `dest`; return its content and dest's lstat."""
    own_dir(os.path.dirname(src), create=False)
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)  # a planted symlink is never followed
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            raise ValueError(f"object {obj[:12]} is not a file or has the wrong size")
        # Verify the content: a flipped bit, or a tool that wrote through a hardlink (root ignores
        # the objects' read-only mode), must be a miss, never a wrong input for the tool.
        content = os.read(fd, size + 1)  # one call (no file object: this runs per cached file)
    finally:
        os.close(fd)
    if len(content) != size or hashlib.sha256(content).hexdigest() != obj:
        raise ValueError(f"object {obj[:12]} is corrupt (content does not match its hash)")
    directory = os.path.dirname(dest)
    if directory not in made:
        os.makedirs(directory, exist_ok=True)
        made.add(directory)
    if not copy:
        try:
            os.link(src, dest, follow_symlinks=False)
            linked = os.lstat(dest)
            if linked.st_ino == st.st_ino:
                return content, linked
            os.unlink(dest)  # the path was replaced after we verified it: copy what we verified
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.ENOENT):
                raise
    # A private copy, for files the tool changes in place (or across filesystems).
    with open(dest, "xb") as fdst:
        fdst.write(content)
    return content, os.lstat(dest)


def load_policy(path: str) -> Any:
    """The tool's policy module (e.g. cacheplug/mypy/cache_policy.py), shipped beside this file:
    `READS`, globs of the files it reads, `withhold(groups) -> groups` not to give the tool (it
    re-creates them), to work around the tool's incremental bugs; optionally `prepare(config)`,
    run after setup with the rule's `--policy-config`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cacheplug_tool_policy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def setup(
    scope: str, dest: str, manifest: str, by_stem: bool, copy_globs: List[str], policy: Any, report: Report,
    policy_config: Optional[Dict[str, Any]] = None,
) -> None:
    """Give the tool a private copy of the cache at `dest`, and record what it was given."""
    given: Dict[str, Tuple[Dict[str, Tuple[str, int]], Dict[str, os.stat_result], os.stat_result]] = {}
    reads: Dict[str, Dict[str, bytes]] = {}  # group -> {relpath: content} of the files the policy reads
    generation = 0
    os.makedirs(dest, exist_ok=True)
    made = {dest}  # directories created in dest
    try:
        open_scope(scope)
        generation = read_generation(scope)
        for path in iter_entries(scope):
            try:
                group, files = load_entry(path, by_stem)
                entry_st = os.lstat(path)
            except FileNotFoundError:
                continue  # replaced or deleted since listdir: a miss
            except (OSError, ValueError, TypeError, KeyError) as e:
                report.data["skipped"] += 1
                report.warn_entry(f"ignored a bad cache record {os.path.basename(path)[:12]}: {e}")
                continue
            contents = {}
            stats = {}
            try:
                for rel, (obj, size) in files.items():
                    target = os.path.join(dest, rel)
                    copy = any(fnmatch.fnmatch(rel, g) for g in copy_globs)
                    contents[rel], stats[rel] = _materialize(object_path(scope, obj), target, obj, size, copy, made)
                    fault("setup-file")
            except (OSError, ValueError) as e:
                _unlink_group(dest, stats)  # all of a group or none of it
                report.data["skipped"] += 1
                if not isinstance(e, FileNotFoundError):  # vanished = evicted/replaced: a miss
                    report.warn_entry(f"ignored cache group {group!r}: {e}")
                continue
            given[group] = (files, stats, entry_st)
            if policy is not None:
                reads[group] = {r: c for r, c in contents.items() if any(fnmatch.fnmatch(r, g) for g in policy.READS)}
    except OSError as e:
        report.warn(f"cache unavailable, running cold: {e}")
    try:
        withheld = policy.withhold(reads) if policy is not None else set()
    except Exception as e:  # a policy that fails cannot say what is safe to give: nothing is
        report.warn(f"cache policy failed, running cold: {type(e).__name__}: {e}")
        withheld = set(given)
    for group in withheld & set(given):
        _unlink_group(dest, given.pop(group)[1])
        report.data["withheld"] = report.data.get("withheld", 0) + 1
    if policy is not None and hasattr(policy, "prepare"):
        try:
            policy.prepare(policy_config or {})
        except Exception as e:  # it only saves the tool work
            report.warn(f"cache policy's preparation failed, results unaffected: {type(e).__name__}: {e}")
    seeded: Dict[str, list] = {}  # relpath -> [ino, size, mtime_ns, object, atime_ns] as given to the tool
    stale = time.time() - TOUCH_AFTER
    for files, stats, _ in given.values():
        for rel, st in stats.items():
            seeded[rel] = [st.st_ino, st.st_size, st.st_mtime_ns, files[rel][0], st.st_atime_ns]
    report.data["reused"] += len(given)
    write_atomically(manifest, json.dumps({
        "generation": generation,
        "files": seeded,
        "groups": {group: entry_st.st_ino for group, (_, _, entry_st) in given.items()},  # the records they came from
        # groups whose record was last marked used over TOUCH_AFTER ago
        "unmarked": [group for group, (_, _, entry_st) in given.items() if entry_st.st_mtime < stale],
    }).encode(), "write-manifest")


def _unlink_group(dest: str, files: Iterable[str]) -> None:
    for rel in files:
        _unlink_quietly(os.path.join(dest, rel))


# --- commit: merge the tool's writes back --------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _number_of(keys: Tuple[str, ...]) -> "re.Pattern[bytes]":
    """Matches `"key": <number>` for any of `keys`."""
    return re.compile(rb'"(%s)":\s*-?[0-9.eE+-]+' % b"|".join(re.escape(k.encode()) for k in keys))


def _same_json(path: str, stored: str, keys: List[str]) -> bool:
    """True if two JSON files are equal but for the values of `keys` (top-level)."""
    try:
        with open(path, "rb") as f:
            new_bytes = f.read()
        old_bytes = _read_nofollow(stored)
    except OSError:
        return False
    # Fast path, no parsing: equal once each key's number is blanked out. A nested key of the
    # same name could be blanked too, so this only ever says "same" for numbers of that name.
    pattern = _number_of(tuple(keys))
    if pattern.sub(rb'"\1":0', new_bytes) == pattern.sub(rb'"\1":0', old_bytes):
        return True
    try:
        new, old = json.loads(new_bytes), json.loads(old_bytes)
    except ValueError:
        return False
    if not (isinstance(new, dict) and isinstance(old, dict)):
        return False
    return {k: v for k, v in new.items() if k not in keys} == {k: v for k, v in old.items() if k not in keys}


def _changed_groups(
    scope: str, dest: str, seeded: Dict[str, list], by_stem: bool, volatile: List[Tuple[str, List[str]]]
) -> Tuple[Dict[str, Dict[str, str]], set, set, Optional[set]]:
    """Groups with a new, changed or removed file, mapped to all their current files; every group
    now present; the groups given whose files the tool replaced (rewrote); and the groups the tool
    used (read or replaced a file of), or None if no read was seen at all (atime not kept). A rewrite that changes only `volatile` JSON keys is not a
    change: mypy rewrites each meta whose source has a new mtime (new in every sandbox), and
    committing those would cost every run a commit per module for nothing."""
    current: Dict[str, Dict[str, str]] = {}
    dirty = set()
    used = set()
    replaced = set()
    reads_seen = False
    prefix = len(dest.rstrip("/")) + 1
    for root, dirs, names in os.walk(dest):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in names:
            path = os.path.join(root, name)
            rel = path[prefix:]
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or not is_safe_relpath(rel):
                continue  # symlinks and odd names are never committed
            group = group_of(rel, by_stem)
            current.setdefault(group, {})[rel] = path
            before = seeded.get(rel)
            if before is None:
                dirty.add(group)
                continue
            if before[:3] == [st.st_ino, st.st_size, st.st_mtime_ns]:
                if st.st_atime_ns > before[4]:
                    used.add(group)
                    reads_seen = True
                continue  # the file the tool was given
            used.add(group)
            replaced.add(group)
            keys = [k for glob, ks in volatile if fnmatch.fnmatch(rel, glob) for k in ks]
            if keys:
                if not _same_json(path, object_path(scope, before[3]), keys):
                    dirty.add(group)
            elif before[1] != st.st_size or _sha256(path) != before[3]:
                dirty.add(group)  # not just rewritten with the same bytes
    for rel in seeded:  # a file the tool removed from a group it kept
        group = group_of(rel, by_stem)
        if group in current and rel not in current[group]:
            dirty.add(group)
    return {g: current[g] for g in dirty}, set(current), replaced, used if reads_seen else None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _store_object(scope: str, path: str) -> Tuple[str, int]:
    """Put a file's content into objects/ and return (object name, size)."""
    obj = _sha256(path)
    size = os.lstat(path).st_size
    final = object_path(scope, obj)
    # Always (re)place the object, even if one of that name exists: it may be the corrupt copy
    # that made this run miss, and replacing identical content is harmless to readers (they hold
    # their own links to the old inode).
    tmp = _unique_tmp(own_dir(os.path.dirname(final)))
    try:
        try:
            os.link(path, tmp)  # the sandbox is discarded after the run: share its inode
        except OSError:
            shutil.copyfile(path, tmp)
        fault("write-object")
        os.chmod(tmp, 0o400)  # objects are immutable: a tool writing through a hardlink fails loudly
        os.replace(tmp, final)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return obj, size


def _lock(scope: str, timeout: float, report: Report) -> Optional[int]:
    """flock(2) the scope's lock file, polling until `timeout` seconds; None if that expired."""
    fd = os.open(os.path.join(scope, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if FAULT == "nolock":
        return fd
    start = time.monotonic()
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            report.data["lock_wait_ms"] = int((time.monotonic() - start) * 1000)
            return fd
        except BlockingIOError:
            waited = time.monotonic() - start
            if waited >= timeout:
                os.close(fd)
                report.data["lock_wait_ms"] = int(waited * 1000)
                return None
            time.sleep(min(delay, timeout - waited))
            delay = min(delay * 2, 0.05)


def commit(
    scope: str, dest: str, manifest: str, by_stem: bool, volatile: List[Tuple[str, List[str]]],
    timeout: float, snapshot: bool, max_size: int, describe: Optional[str], report: Report,
) -> None:
    """Commit every group the tool created or changed; drop groups the tool deleted; keep the
    scope within `max_size` bytes (0: unlimited)."""
    with open(manifest) as f:
        seen = json.load(f)
    open_scope(scope)
    dirty, present, replaced, used = _changed_groups(scope, dest, seen["files"], by_stem, volatile)
    # Given, then rewritten by the tool with the same content (or only volatile changes): not a
    # write, but work the tool redid.
    report.data["rewritten"] = len(replaced - set(dirty))
    deleted = [g for g in seen["groups"] if g not in present]
    log_run(scope, hits=sum(1 for g in seen["groups"] if g in present and g not in dirty), misses=len(dirty))
    _mark_used(scope, [g for g in seen["unmarked"] if g not in dirty and (used is None or g in used)], seen["groups"])
    if not dirty and not deleted:
        return
    # Objects first, outside the lock: content-addressed and renamed into place, they are safe to
    # write concurrently, and until a record names them no reader looks at them.
    records = {}
    for group, files in sorted(dirty.items()):
        stored = {}
        for rel, path in sorted(files.items()):
            stored[rel] = _store_object(scope, path)
            fault("commit-object")
        records[group] = stored

    fd = _lock(scope, timeout, report)
    if fd is None:
        report.warn(f"timed out after {timeout:g}s waiting for the cache lock; this run's cache writes were skipped")
        return
    try:
        generation = read_generation(scope)
        if snapshot and generation != seen["generation"]:
            # The tool judges freshness by comparing timestamps between modules, so mixing this
            # run's entries with another run's could make a stale entry look fresh. Keep the
            # cache a sequence of whole runs instead: skip, the next run redoes the work.
            report.warn("another run committed to this cache meanwhile; this run's writes were skipped to keep it consistent")
            index = Index.load(scope, generation)
            if index is not None:  # count the objects stored for nothing, for the budget
                index.garbage.update({o: n for fs in records.values() for o, n in fs.values() if o not in index.refs})
                index.save(scope, generation)
            return
        fault("commit-locked")
        if describe and not os.path.lexists(os.path.join(scope, "scope.json")):
            write_atomically(os.path.join(scope, "scope.json"), describe.encode())
        update_locked(scope, generation, records, deleted, seen["groups"], dirty, max_size, report)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _mark_used(scope: str, groups: List[str], inodes: Dict[str, int]) -> None:
    """Set the records' mtime (last use, for LRU eviction) to now. No lock: a record evicted
    meanwhile is not there to mark; one replaced meanwhile is new anyway (the inode check)."""
    for group in groups:
        path = entry_path(scope, group)
        try:
            if os.lstat(path).st_ino == inodes[group]:
                os.utime(path, follow_symlinks=False)
        except OSError:
            pass


def update_locked(
    scope: str, generation: int, records: Dict[str, Dict[str, Tuple[str, int]]], deleted: List[str],
    deleted_inodes: Dict[str, int], sources: Dict[str, Dict[str, str]], max_size: int, report: Report,
) -> None:
    """Under the lock: write `records` ({group: {relpath: (object, size)}}, objects already
    stored), delete the `deleted` groups whose record is still the inode in `deleted_inodes`,
    update the index, evict down to the budget. `sources[group][relpath]` is a file to re-store
    an object from if it was collected between its write and now."""
    index = Index.load(scope, generation) or Index.rebuild(scope)
    # Bump the generation first: if we die before saving the index, the index is stale and says so.
    write_atomically(os.path.join(scope, "generation"), str(generation + 1).encode(), "write-generation")
    for group, files in records.items():
        for rel, (obj, _) in files.items():
            if not os.path.lexists(object_path(scope, obj)):  # evicted after we stored it
                _store_object(scope, sources[group][rel])
        data = json.dumps({"format": FORMAT, "scope": os.path.basename(scope), "group": group,
                           "files": {rel: list(v) for rel, v in files.items()}}, sort_keys=True).encode()
        path = entry_path(scope, group)
        own_dir(os.path.dirname(path))
        write_atomically(path, data, "write-record")
        index.put(os.path.basename(path), len(data), {obj: size for obj, size in files.values()})
        report.data["written"] += 1
        fault("commit-record")
    for group in deleted:
        path = entry_path(scope, group)
        try:
            if os.lstat(path).st_ino == deleted_inodes[group]:  # not replaced since we read it
                os.unlink(path)
                index.remove(os.path.basename(path))
                report.data["deleted"] += 1
        except FileNotFoundError:
            pass
    if max_size and index.bytes() > max_size:
        evict(scope, index, int(max_size * LOW_WATER), report)
    index.save(scope, generation + 1)


# --- command line --------------------------------------------------------------------------------


def main(argv: List[str]) -> int:
    """store.py setup|commit SCOPE DEST MANIFEST REPORT [--by-stem] [--copy GLOB]...
    [--policy FILE [--policy-config JSON]] [--volatile GLOB:KEY,KEY...]... [--timeout S] [--snapshot]
    [--max-size BYTES] [--describe JSON]"""
    command, scope, dest, manifest, report_path, *flags = argv
    by_stem = "--by-stem" in flags
    copy_globs = [flags[i + 1] for i, f in enumerate(flags) if f == "--copy"]
    volatile = [(g, k.split(",")) for g, _, k in (flags[i + 1].rpartition(":") for i, f in enumerate(flags) if f == "--volatile")]
    timeout = float(flags[flags.index("--timeout") + 1]) if "--timeout" in flags else 60.0
    max_size = int(flags[flags.index("--max-size") + 1]) if "--max-size" in flags else 0
    describe = flags[flags.index("--describe") + 1] if "--describe" in flags else None
    report = Report()
    try:  # setup's report, which commit adds to
        with open(report_path) as f:
            report.data.update(json.load(f))
    except (OSError, ValueError):
        pass
    try:
        if command == "setup":
            policy = load_policy(flags[flags.index("--policy") + 1]) if "--policy" in flags else None
            config = json.loads(flags[flags.index("--policy-config") + 1]) if "--policy-config" in flags else None
            setup(scope, dest, manifest, by_stem, copy_globs, policy, report, config)
        elif command == "commit":
            commit(scope, dest, manifest, by_stem, volatile, timeout, "--snapshot" in flags, max_size, describe, report)
        else:
            report.warn(f"unknown store command {command!r}")
    except Exception as e:  # the cache never fails the build
        report.warn(f"cache {command} failed, results unaffected: {type(e).__name__}: {e}")
    report.save(report_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
