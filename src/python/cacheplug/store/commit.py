"""commit: merge what the tool wrote back into the shared cache (see the package docstring for the
protocol and the races it defends against)."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import stat

from .faults import fault
from .index import LOW_WATER, Index, evict
from .layout import (
    checked_name, confined_link, entry_file, entry_path, is_safe_relpath, load_entry, object_path, open_scope, own_dir,
    read_generation, read_nofollow, read_object, record_bytes, sha256_file, unique_tmp, unlink_quietly, write_atomically,
)
from .locking import Busy, scope_lock
from .policy import Policy
from .report import Report
from .runlog import log_run
from .spec import Spec

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import AbstractSet, Dict, Iterator, List, Optional, Set, Tuple

    Files = Dict[str, Tuple[str, int]]  # relpath -> (object, size)


def changed_groups(
    scope: str, dest: str, seeded: Dict[str, list], policy: Policy, report: Report, written: Dict[str, int],
    links: Optional[Dict[str, str]] = None,
) -> Tuple[Dict[str, Dict[str, str]], Set[str], Set[str], Optional[Set[str]]]:
    """Groups with a new, changed or removed file, mapped to all their current files; every group
    now present; the groups given whose files the tool replaced with no change (rewrote); and the
    groups the tool used (read or replaced a file of), or None if no read was seen at all (atime
    not kept). What is no change is the policy's to say (e.g. mypy 1.x rewrites a meta whose
    source has a new mtime: committing those would cost a commit per module for nothing).
    `written` gets the objects the tool wrote through ({object: inode}); `links` the symlinks
    the cache keeps ({relpath: target}; the policy's LINKS)."""
    current: Dict[str, Dict[str, str]] = {}
    dirty = set()
    used = set()
    replaced = set()
    reads_seen = False
    prefix = len(dest.rstrip("/")) + 1
    for entry in _files_under(dest):
        path = entry.path
        rel = path[prefix:]
        st = entry.stat(follow_symlinks=False)
        if not is_safe_relpath(rel) or policy.ignored(rel):
            continue  # odd names and what the policy ignores are never committed
        if stat.S_ISLNK(st.st_mode) and links is not None and policy.linked(rel):
            target = os.readlink(path)
            if confined_link(rel, target):  # any other symlink is never committed
                group = policy.group_of(rel)
                current.setdefault(group, {})[rel] = path
                links[rel] = target
                before = seeded.get(rel)
                if before is None or before[3] != hashlib.sha256(target.encode()).hexdigest():
                    dirty.add(group)
                else:
                    used.add(group)  # a read through a link is not seen (its atime does not move)
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # other symlinks, devices, ... are never committed
        group = policy.group_of(rel)
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
        if st.st_ino == before[0] and written_through(scope, rel, before[3], st.st_ino, report):
            written[before[3]] = st.st_ino
            dirty.add(group)  # the object holds what the tool wrote: nothing to compare with
            continue
        if before[1] == st.st_size and sha256_file(path) == before[3]:
            continue  # rewritten with the same bytes
        try:
            with open(path, "rb") as f:
                new = f.read()
            old = read_nofollow(object_path(scope, before[3]))
        except OSError:
            dirty.add(group)
            continue
        if not policy.unchanged(rel, new, old):
            dirty.add(group)
    for rel in seeded:  # a file the tool removed from a group it kept
        group = policy.group_of(rel)
        if group in current and rel not in current[group]:
            dirty.add(group)
    return {g: current[g] for g in dirty}, set(current), replaced - dirty, used if reads_seen else None


def _files_under(top: str) -> Iterator[os.DirEntry]:
    """Every entry under `top` but directories, walked without following symlinks (a symlink to
    a directory is neither walked nor given), and directories that cannot be read skipped, as
    os.walk does. Not os.walk: this runs per cache file, and a DirEntry knows its path."""
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows a symlink: one stat, only for symlinks
            except OSError:
                is_dir = False  # as os.walk
            if not is_dir:
                yield entry
            elif not entry.is_symlink():
                stack.append(entry.path)


def written_through(scope: str, rel: str, obj: str, ino: int, report: Report) -> bool:
    """Whether the tool wrote `rel` in place through a hardlink to the object `obj` (its policy
    should list it in COPIES; root ignores the object's read-only mode), so that the object may no
    longer hold what its name says. Not if it was a private copy, or the object was replaced by
    rename since (then it is right)."""
    try:
        if os.lstat(object_path(scope, obj)).st_ino != ino:
            return False
    except FileNotFoundError:
        return False
    report.warn(f"the tool wrote {rel} in place through its link into the cache; its cache policy should list it in COPIES")
    return True


def drop_written_through(scope: str, index: Index, objects: Dict[str, int]) -> None:
    """Under the lock: remove each object a tool wrote through ({object: inode}) whose content no
    longer matches its name, and every record naming it (a miss, never a wrong input), records
    first as eviction does. One that another commit replaced by rename since is right: the inode
    check leaves it; one replaced between that check and the unlink is lost (a later commit that
    names it stores it again, see update_locked)."""
    for obj, ino in objects.items():
        path = object_path(scope, obj)
        try:
            if os.lstat(path).st_ino != ino or sha256_file(path) == obj:
                continue
        except FileNotFoundError:
            continue
        for name in [n for n, (_, named) in index.entries.items() if obj in named]:
            unlink_quietly(entry_file(scope, name))
            index.remove(name)
        unlink_quietly(path)
        index.garbage.pop(obj, None)


def store_object(scope: str, path: str) -> Tuple[str, int]:
    """Put a file's content into objects/ and return (object name, size)."""
    obj = sha256_file(path)
    size = os.lstat(path).st_size
    final = object_path(scope, obj)
    # Always (re)place the object, even if one of that name exists: it may be the corrupt copy
    # that made this run miss, and replacing identical content is harmless to readers (they hold
    # their own links to the old inode).
    tmp = unique_tmp(own_dir(os.path.dirname(final)))
    try:
        try:
            # The sandbox is discarded after the run: share the file's inode, unless something
            # else links to it (a given object the tool wrote in place; other sandboxes may hold
            # it and write it again).
            if os.lstat(path).st_nlink != 1:
                raise OSError("shared inode")
            os.link(path, tmp)
        except OSError:
            import shutil  # here: rarely needed, and its import is start-up cost for every commit

            shutil.copyfile(path, tmp)
        fault("write-object")
        os.chmod(tmp, 0o400)  # objects are immutable: a tool writing through a hardlink fails loudly
        os.replace(tmp, final)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return obj, size


def store_objects(scope: str, sources: Dict[str, Dict[str, str]]) -> Dict[str, Files]:
    """Store every file of `sources` ({group: {relpath: file}}); return the records to write.
    Outside the lock: content-addressed and renamed into place, objects are safe to write
    concurrently, and until a record names them no reader looks at them."""
    records = {}
    for group, files in sorted(sources.items()):
        stored = {}
        for rel, path in sorted(files.items()):
            stored[rel] = store_object(scope, path)
            fault("commit-object")
        records[group] = stored
    return records


def commit(spec: Spec, policy: Policy, report: Report) -> None:
    """Commit every group the tool created or changed; drop groups the tool deleted; keep the
    scope within `spec.max_size` bytes (0: unlimited)."""
    scope, timeout = spec.scope, spec.lock_timeout
    with open(spec.manifest) as f:
        seen = json.load(f)
    # The manifest is setup's, in this sandbox; still, every name in it is checked before use.
    seeded = {rel: v for rel, v in seen["files"].items() if is_safe_relpath(rel) and checked_name(v[3])}
    given: Dict[str, int] = {g: int(ino) for g, ino in seen["groups"].items() if is_safe_relpath(g)}
    open_scope(scope)
    written: Dict[str, int] = {}
    links: Dict[str, str] = {}
    dirty, present, rewritten, used = changed_groups(scope, spec.dest, seeded, policy, report, written, links)
    for i, (group, rel) in enumerate((g, r) for g, fs in dirty.items() for r in fs if r in links):
        # A symlink is stored as an object holding its target, from a file of ours (store_object
        # would follow the link).
        dirty[group][rel] = f"{spec.manifest}.link-{i}"
        write_atomically(dirty[group][rel], links[rel].encode())
    deleted = [g for g in given if g not in present]
    untouched = [g for g in given if g in present and g not in dirty and g not in rewritten]
    report.data.update(reused=len(untouched), rewritten=len(rewritten & set(given)))
    log_run(scope, hits=len(untouched), misses=len(dirty))
    mark_used(scope, [g for g in seen["unmarked"] if g in given and g not in dirty and (used is None or g in used)], given)
    if not dirty and not deleted and not written:
        return
    records = store_objects(scope, dirty)
    try:
        with scope_lock(scope, timeout) as waited:
            report.data["lock_wait_ms"] = waited
            generation = read_generation(scope)
            if spec.snapshot and generation != seen["generation"]:
                # The tool judges freshness by comparing timestamps between modules, so mixing
                # this run's entries with another run's could make a stale entry look fresh. Keep
                # the cache a sequence of whole runs instead: skip, the next run redoes the work.
                report.warn("another run committed to this cache meanwhile; this run's writes were skipped to keep it consistent")
                index = Index.load(scope, generation)
                if index is not None:  # count the objects stored for nothing, for the budget
                    index.garbage.update({o: n for fs in records.values() for o, n in fs.values() if o not in index.refs})
                    index.save(scope, generation)
                return
            fault("commit-locked")
            if policy.merges:
                merge_locked(scope, records, dirty, seen.get("merge_bases", {}), policy, report, spec.manifest)
            if spec.describe and not os.path.lexists(os.path.join(scope, "scope.json")):
                write_atomically(os.path.join(scope, "scope.json"), spec.describe.encode())
            update_locked(scope, generation, records, deleted, given, dirty, spec.max_size, report, written, set(links))
    except Busy:
        report.data["lock_wait_ms"] = int(timeout * 1000)
        report.warn(f"timed out after {timeout:g}s waiting for the cache lock; this run's cache writes were skipped")


def merge_locked(
    scope: str, records: Dict[str, Files], sources: Dict[str, Dict[str, str]], bases: Dict[str, str],
    policy: Policy, report: Report, work: str,
) -> None:
    """Under the lock (so that no commit lands between our read of the cache's copy and our
    write): replace each file the policy merges by merge(what this run was given, what it wrote,
    what the group's record holds now). A run that lost the race to another commit merges into
    that commit's content instead of overwriting it: with a three-way merge, each run applies only
    its own change. A group whose merge leaves the record's content as it is is not rewritten; one
    whose merge fails is not committed (the cache keeps what it had; a warning)."""
    for group in sorted(records):
        files = records[group]
        merged = sorted(rel for rel in files if policy.merged(rel))
        if not merged:
            continue
        try:
            current = current_contents(scope, group, policy)
            for i, rel in enumerate(merged):
                base = bases.get(rel)
                with open(sources[group][rel], "rb") as f:
                    mine = f.read()
                data = policy.merge(rel, base64.b64decode(base) if isinstance(base, str) else None, mine,
                                    current[rel][1] if rel in current else None)
                path = f"{work}.merged-{i}"
                write_atomically(path, data)
                sources[group][rel] = path  # what update_locked re-stores the object from if need be
                files[rel] = store_object(scope, path)
        except Exception as e:  # a failing policy must not cost what other runs committed
            report.warn(f"cache group {group!r} not committed: merging it failed: {type(e).__name__}: {e}")
            del records[group]
            continue
        if {rel: obj for rel, (obj, _) in files.items()} == {rel: obj for rel, (obj, _) in current.items()}:
            del records[group]  # the cache holds the merge already


def current_contents(scope: str, group: str, policy: Policy) -> Dict[str, Tuple[str, bytes]]:
    """{relpath: (object, content)} of the group's record as it is now; {} if there is none or it
    is bad (then the run's content is merged with nothing). Any other error reading it (EIO,
    EMFILE, ...) is raised: merged with nothing, the run's write would drop what every other run
    committed to the group."""
    path = entry_path(scope, group)
    if not os.path.lexists(path):
        return {}
    try:
        fault("read-current")
        _, files = load_entry(path, policy.group_of)
        return {rel: (obj, read_object(scope, obj, size)) for rel, (obj, size) in files.items()}
    except (ValueError, TypeError, KeyError):
        return {}  # bad or corrupt: never merged into what we write
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return {}  # gone (evicted, or its object is), or a planted symlink: nothing to merge with
        raise


def mark_used(scope: str, groups: List[str], inodes: Dict[str, int]) -> None:
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
    scope: str, generation: int, records: Dict[str, Files], deleted: List[str],
    deleted_inodes: Dict[str, int], sources: Dict[str, Dict[str, str]], max_size: int, report: Report,
    written: Optional[Dict[str, int]] = None, links: AbstractSet[str] = frozenset(),
) -> None:
    """Under the lock: write `records` ({group: {relpath: (object, size)}}, objects already
    stored), delete the `deleted` groups whose record is still the inode in `deleted_inodes`,
    update the index, evict down to the budget. `sources[group][relpath]` is a file to re-store
    an object from if it was collected between its write and now. `written`: objects a tool
    wrote through (see drop_written_through). `links`: files of `records` that are symlinks."""
    index = Index.load(scope, generation) or Index.rebuild(scope)
    # Bump the generation first: if we die before saving the index, the index is stale and says so.
    write_atomically(os.path.join(scope, "generation"), str(generation + 1).encode(), "write-generation")
    for group, files in records.items():
        for rel, (obj, _) in files.items():
            if not os.path.lexists(object_path(scope, obj)):  # evicted after we stored it
                store_object(scope, sources[group][rel])
        # Each object's stamp as it is now, under the lock: what setup may trust it by.
        stamps = {}
        for obj, _ in files.values():
            st = os.lstat(object_path(scope, obj))
            stamps[obj] = (st.st_ino, st.st_mtime_ns)
        data = record_bytes(scope, group, files, stamps, links)
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
    drop_written_through(scope, index, written or {})
    if max_size and index.bytes() > max_size:
        evict(scope, index, int(max_size * LOW_WATER), report)
    index.save(scope, generation + 1)
