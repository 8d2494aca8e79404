"""setup: give the tool a private copy of the shared cache in its sandbox, and record what it got
(the manifest, which commit compares the tool's files with)."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import stat
import time

from .faults import fault
from .layout import (
    confined_link, iter_entries, load_entry, open_scope, own_dir, read_generation, read_object,
    unlink_quietly, write_atomically,
)
from .policy import Policy
from .report import Report
from .spec import Spec

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple

    from .layout import Stamp

    Given = Tuple[Dict[str, Tuple[str, int]], Dict[str, os.stat_result], os.stat_result]

TOUCH_AFTER = 600  # seconds: LRU resolution; a record reused more often is not marked used again


def materialize(
    src: str, dest: str, obj: str, size: int, stamp: Optional[Stamp], read: bool, copy: bool,
    made: Set[str], checked: Set[str],
) -> Tuple[Optional[bytes], os.stat_result]:
    """Hardlink a verified object to `dest`; return its content (if `read`, or if it had to be
    hashed) and dest's lstat. Tools replace cache files by rename, so the link is safe; a file
    the policy says the tool writes in place (`copy`), or any file across filesystems, is copied.

    Verified means: its inode, size and mtime are those the commit that named it recorded
    (`stamp`), or else its content hashes to its name. The shortcut relies on objects being
    written only by rename into place (a new inode) and never in place: a tool writing through a
    hardlink, or any program writing to the file, moves its mtime, and so makes it hashed again
    (and a miss, if its content no longer matches). A flipped bit on the disk that leaves the
    mtime alone is the filesystem's to catch; `pants cache-prune` rebuilds from and checks the
    records, not the content."""
    own_dir(src[:src.rindex("/")], create=False, checked=checked)
    if stamp is not None and not read and not copy:
        # Link first, then check what was linked: the stamp is checked on the very inode the tool
        # gets, whatever replaced `src` meanwhile (one lstat per file, not two). Not followed: a
        # planted symlink links as a symlink, which is never a match. Nothing reads `dest` before
        # setup ends.
        linked = _link(src, dest, made)
        if linked is not None:
            if stat.S_ISREG(linked.st_mode) and linked.st_size == size and (linked.st_ino, linked.st_mtime_ns) == stamp:
                return None, linked
            os.unlink(dest)  # not the inode its commit recorded: verify it the long way
    return _verified_link(src, dest, obj, size, stamp, made, copy)


def make_link(scope: str, obj: str, size: int, rel: str, dest: str, policy: Policy, made: Set[str]) -> os.stat_result:
    """Recreate a symlink the cache kept: its object holds the target. Verified like any object,
    and checked again (a record or object planted in the cache must not make a link that points
    outside the sandbox's copy of the cache)."""
    target = read_object(scope, obj, size).decode("utf-8", "replace")
    if not (policy.linked(rel) and confined_link(rel, target)):
        raise ValueError(f"a symlink to {target!r:.80} is not one this tool's cache keeps")
    _make_parent(dest, made)
    os.symlink(target, dest)
    return os.lstat(dest)


def _make_parent(dest: str, made: Set[str]) -> None:
    directory = dest[:dest.rindex("/")]  # dest is always under the sandbox's cache directory
    if directory not in made:
        os.makedirs(directory, exist_ok=True)
        made.add(directory)


def _link(src: str, dest: str, made: Set[str]) -> Optional[os.stat_result]:
    _make_parent(dest, made)
    try:
        os.link(src, dest, follow_symlinks=False)
        return os.lstat(dest)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.ENOENT):
            raise
        if e.errno == errno.ENOENT:
            raise  # the object vanished (evicted, replaced): a miss
        return None


def _verified_link(
    src: str, dest: str, obj: str, size: int, stamp: Optional[Stamp], made: Set[str], copy: bool,
) -> Tuple[bytes, os.stat_result]:
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
    # The open file is the inode its commit recorded (see materialize): no need to hash it.
    trusted = (st.st_ino, st.st_mtime_ns) == stamp
    if len(content) != size or not trusted and hashlib.sha256(content).hexdigest() != obj:
        raise ValueError(f"object {obj[:12]} is corrupt (content does not match its hash)")
    linked = None
    if not copy:
        try:
            linked = _link(src, dest, made)
        except FileNotFoundError:
            pass  # gone since we read it: copy what we verified
    if linked is not None:
        if linked.st_ino == st.st_ino:
            return content, linked
        os.unlink(dest)  # the path was replaced after we verified it: copy what we verified
    _make_parent(dest, made)
    with open(dest, "xb") as fdst:
        fdst.write(content)
    return content, os.lstat(dest)


def setup(spec: Spec, policy: Policy, report: Report) -> None:
    """Give the tool a private copy of the cache at `spec.dest`, and record what it was given."""
    scope, dest = spec.scope, os.path.normpath(spec.dest)  # no trailing "/": paths are made by concatenation
    given: Dict[str, Given] = {}  # group -> (its record's files, their lstat in dest, the record's lstat)
    reads: Dict[str, Dict[str, bytes]] = {}  # group -> {relpath: content} of the files the policy reads
    bases: Dict[str, Dict[str, bytes]] = {}  # group -> {relpath: content} of the files commit merges
    generation = 0
    os.makedirs(dest, exist_ok=True)
    made = {dest}  # directories created in dest
    checked: Set[str] = set()  # object shard directories found ours
    try:
        open_scope(scope)
        objects = os.path.join(scope, "objects")
        generation = read_generation(scope)
        for path in iter_entries(scope):
            try:
                stamps: Dict[str, Stamp] = {}
                links: Set[str] = set()
                group, files = load_entry(path, policy.group_of, stamps=stamps, links=links)
                entry_st = os.lstat(path)
            except FileNotFoundError:
                continue  # replaced or deleted since listdir: a miss
            except (OSError, ValueError, TypeError, KeyError) as e:
                report.data["skipped"] += 1
                report.warn_entry(f"ignored a bad cache record {os.path.basename(path)[:12]}: {e}")
                continue
            contents: Dict[str, Optional[bytes]] = {}
            stats: Dict[str, os.stat_result] = {}
            try:
                for rel, (obj, size) in files.items():
                    if rel in links:
                        contents[rel] = None
                        stats[rel] = make_link(scope, obj, size, rel, os.path.join(dest, rel), policy, made)
                        continue
                    read = policy.read(rel) or policy.merged(rel)  # the policy needs it
                    # Plain concatenation (this runs per cached file): load_entry checked `obj`
                    # to be a hash and `rel` to be a safe relative path.
                    contents[rel], stats[rel] = materialize(f"{objects}/{obj[:2]}/{obj}", f"{dest}/{rel}", obj, size,
                                                            stamps.get(obj), read, policy.copied(rel), made, checked)
                    fault("setup-file")
            except (OSError, ValueError) as e:
                _unlink_group(dest, stats)  # all of a group or none of it
                report.data["skipped"] += 1
                if not isinstance(e, FileNotFoundError):  # vanished = evicted/replaced: a miss
                    report.warn_entry(f"ignored cache group {group!r}: {e}")
                continue
            given[group] = (files, stats, entry_st)
            if policy.reads:
                reads[group] = {r: c for r, c in contents.items() if c is not None and policy.read(r)}
            if policy.merges:
                bases[group] = {r: c for r, c in contents.items() if c is not None and policy.merged(r)}
    except OSError as e:
        report.warn(f"cache unavailable, running cold: {e}")
    try:
        withheld = policy.withhold(reads)
    except Exception as e:  # a policy that fails cannot say what is safe to give: nothing is
        report.warn(f"cache policy failed, running cold: {type(e).__name__}: {e}")
        withheld = set(given)
    for group in withheld & set(given):
        _unlink_group(dest, given.pop(group)[1])
        report.data["withheld"] += 1
    try:
        policy.prepare()
    except Exception as e:  # it only saves the tool work
        report.warn(f"cache policy's preparation failed, results unaffected: {type(e).__name__}: {e}")
    seeded: Dict[str, list] = {}  # relpath -> [ino, size, mtime_ns, object, atime_ns] as given to the tool
    for files, stats, _ in given.values():
        for rel, st in stats.items():
            seeded[rel] = [st.st_ino, st.st_size, st.st_mtime_ns, files[rel][0], st.st_atime_ns]
    report.data["given"] = report.data["reused"] = len(given)  # commit says how many stayed untouched
    stale = time.time() - TOUCH_AFTER
    write_atomically(spec.manifest, json.dumps({
        "generation": generation,
        "files": seeded,
        "groups": {group: entry_st.st_ino for group, (_, _, entry_st) in given.items()},  # the records they came from
        # groups whose record was last marked used over TOUCH_AFTER ago
        "unmarked": [group for group, (_, _, entry_st) in given.items() if entry_st.st_mtime < stale],
        # what the merged files were when given: the base of commit's three-way merge
        "merge_bases": {rel: base64.b64encode(c).decode() for g, fs in bases.items() if g in given for rel, c in fs.items()},
    }).encode(), "write-manifest")


def _unlink_group(dest: str, files: List[str] | Dict[str, os.stat_result]) -> None:
    for rel in files:
        unlink_quietly(os.path.join(dest, rel))
