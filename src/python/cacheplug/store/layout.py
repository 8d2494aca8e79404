"""A cache scope on disk: the names of its files, its records, and the file primitives every
writer and reader uses (see the package docstring for the layout and the protocol)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat

from .faults import EUID, fault

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import AbstractSet, Callable, Dict, Iterator, List, Optional, Set, Tuple

    GroupOf = Callable[[str], str]
    Stamp = Tuple[int, int]  # an object file's (inode, mtime_ns) when a commit named it

FORMAT = 2  # of records; 2: records name their scope
TMP_PREFIX = ".cacheplug-tmp."
TMP_GRACE = 900  # seconds: a temp file older than this (ctime) belongs to a killed run
HEX64 = re.compile(r"[0-9a-f]{64}")  # an object's name, and a record's (sha256 of its group)


# --- names ---------------------------------------------------------------------------------------


def is_safe_relpath(relpath: str) -> bool:
    """A relative path that stays inside its root: no absolute paths, no `..`, nothing odd."""
    if not isinstance(relpath, str) or not relpath or relpath.startswith("/") or "\\" in relpath or "\0" in relpath:
        return False
    parts = relpath.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def confined_link(relpath: str, target: str) -> bool:
    """Whether a symlink at `relpath` pointing to `target` is one the cache may keep: a relative
    target that stays inside the top directory of its path (one cache of the tool's, e.g. a
    Hugging Face hub's `snapshots/` link to its `blobs/`), so that recreating it in a sandbox
    never points anywhere but into that sandbox's copy of the cache."""
    if not isinstance(target, str) or not target or target.startswith("/") or "\\" in target or "\0" in target:
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(relpath), target))
    return is_safe_relpath(resolved) and resolved.split("/")[0] == relpath.split("/")[0] and resolved != relpath


def checked_name(name: object) -> str:
    """`name`, if it can name an object or a record (64 hex digits); else ValueError. Every such
    name read from disk passes here before a path is made of it (os.path.join takes an absolute
    name as the whole path)."""
    if not isinstance(name, str) or not HEX64.fullmatch(name):
        raise ValueError(f"not a cache file name: {name!r:.80}")
    return name


def entry_name(group: str) -> str:
    return hashlib.sha256(group.encode()).hexdigest()


def entry_path(scope: str, group: str) -> str:
    return entry_file(scope, entry_name(group))


def entry_file(scope: str, name: str) -> str:
    name = checked_name(name)
    return os.path.join(scope, "entries", name[:2], name)


def object_path(scope: str, obj: str) -> str:
    obj = checked_name(obj)
    return os.path.join(scope, "objects", obj[:2], obj)


def unique_tmp(directory: str) -> str:
    return os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}.{os.urandom(6).hex()}")


# --- directories and files -----------------------------------------------------------------------


def own_dir(path: str, create: bool = True, checked: Optional[Set[str]] = None) -> str:
    """`path`, a real directory owned by us, made private (0700) if we create it. A symlink planted
    here (pointing outside the cache) is refused, never followed, for reads and writes alike.
    `checked`: directories already checked in this run (one run is short: none is swapped under
    it without also failing the reads that follow)."""
    if checked is None or path not in checked:
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
        if checked is not None:
            checked.add(path)
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
        return int(read_nofollow(os.path.join(scope, "generation")).strip() or 0)
    except (OSError, ValueError):
        return 0


def write_atomically(path: str, data: bytes, point: str = "") -> None:
    """Write `path` whole or not at all: a unique temp file in the same dir, then rename(2)."""
    tmp = unique_tmp(os.path.dirname(path))
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            fault(point)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_nofollow(path: str) -> bytes:
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


def read_object(scope: str, obj: str, size: int) -> bytes:
    """An object's content, verified (size and sha256: a flipped bit or a planted file is a
    ValueError, never content); not followed if a symlink."""
    content = read_nofollow(object_path(scope, obj))
    if len(content) != size or hashlib.sha256(content).hexdigest() != obj:
        raise ValueError(f"object {obj[:12]} is corrupt (content does not match its hash)")
    return content


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- records and objects -------------------------------------------------------------------------


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
                if HEX64.fullmatch(name):  # not a temp file, nor anything planted
                    yield os.path.join(shard_dir, name)


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


def load_entry(
    path: str, group_of: Optional[GroupOf], data: Optional[bytes] = None, stamps: Optional[Dict[str, Stamp]] = None,
    links: Optional[Set[str]] = None,
) -> Tuple[str, Dict[str, Tuple[str, int]]]:
    """Parse and validate one entry record (read from `path` unless `data` is given); raise
    ValueError if it is foreign or corrupt. `group_of=None`: do not check how files are grouped.
    `stamps`: filled with the record's object stamps (see seed.materialize). `links`: filled
    with the files that are symlinks (their object holds the link's target)."""
    record = json.loads(read_nofollow(path) if data is None else data)
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
        if not (is_safe_relpath(rel) and (group_of is None or group_of(rel) == group)):
            raise ValueError(f"file {rel!r} does not belong to group {group!r}")
        obj, size = value
        result[rel] = (checked_name(obj), int(size))
    named_links = record.get("links", [])
    if not isinstance(named_links, list) or not all(isinstance(r, str) and r in result for r in named_links):
        raise ValueError("bad list of links")
    if links is not None:
        links.update(named_links)
    if stamps is not None and isinstance(record.get("stamps"), dict):
        for obj, stamp in record["stamps"].items():
            if isinstance(obj, str) and isinstance(stamp, list) and len(stamp) == 2 and all(type(n) is int for n in stamp):
                stamps[obj] = (stamp[0], stamp[1])
    return group, result


def record_bytes(
    scope: str, group: str, files: Dict[str, Tuple[str, int]], stamps: Dict[str, Stamp], links: AbstractSet[str] = frozenset(),
) -> bytes:
    record = {"format": FORMAT, "scope": os.path.basename(scope), "group": group,
              "files": {rel: list(v) for rel, v in files.items()},
              "stamps": {obj: list(stamp) for obj, stamp in stamps.items()}}
    if links & files.keys():
        record["links"] = sorted(links & files.keys())  # a record without links reads as before
    return json.dumps(record, sort_keys=True).encode()
