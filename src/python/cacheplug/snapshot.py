"""Snapshots: one tool's cache scopes as one archive file, to restore a pre-warmed cache on another
machine (CI runners, then `[mypy].shared_cache = "read-only"`). The work behind `pants
cache-export` and `pants cache-import`.

Archive: a gzipped tar, byte-for-byte reproducible for the same cache content (members in record order,
zero times and owners), holding `<n>/entries/<record name>`, `<n>/objects/<sha256>` for each scope
n, and `snapshot.json` last: {"format", "scopes": [{"dir", "tool", "parts", "per_checkout",
"entries", "objects"}]}. Records are checked with the grouping of the tool's registered policy (never one
an archive names).

A scope's id depends on the checkout's buildroot, which differs between machines; an imported scope
goes where this checkout's runs will look for it: the id of the same tool and parts under this
buildroot. Records name their scope, so they are rewritten on the way in.

Import is all-or-nothing for a bad archive: everything is unpacked into a temp dir and validated
(every object's sha256, every record as setup would check it, every count) before the first write
to the cache. Then, per scope, like a commit: objects first (each replaced, as a commit does: one
already on disk may be the corrupt copy that made runs miss), then, under the lock, records
renamed into place one by one (each group whole), then the index. A conflicting group takes the
archive's version. An import killed midway leaves a valid cache holding part of the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Dict, Optional, Set, Tuple

from cacheplug import lifecycle
from cacheplug.engine import scope_id
from cacheplug.store import layout
from cacheplug.store.commit import store_objects, update_locked
from cacheplug.store.locking import scope_lock
from cacheplug.store.report import Report

# The grouping of a tool's registered policy, by tool name (None: no check).
GroupingOf = Callable[[str], Optional[Callable[[str], str]]]  # (layout.GroupOf: a name for type checkers only)

FORMAT = 1
MANIFEST = "snapshot.json"
MEMBER = re.compile(r"([0-9]+)/(entries|objects)/([0-9a-f]{64})")


class BadSnapshot(Exception):
    """The archive is not a whole cacheplug snapshot; nothing was written."""


def export(scopes: list[Path], output: Path, lock_timeout: float, grouping: GroupingOf) -> Tuple[int, int]:
    """Write `scopes` to the archive `output` (renamed into place whole); return (entries, bytes
    of cache content)."""
    tmp = output.with_name(f"{layout.TMP_PREFIX}{output.name}.{os.getpid()}")
    described: list[dict] = []
    total_entries = total_bytes = 0
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for n, scope in enumerate(scopes):
                desc = lifecycle.describe(scope)
                entries, objects, size = _write_scope(tar, str(n), scope, grouping(scope.parent.name), lock_timeout)
                described.append({"dir": str(n), "tool": scope.parent.name, "parts": desc.get("parts", []),
                                  "per_checkout": desc.get("buildroot") != "", "entries": entries, "objects": objects})
                total_entries += entries
                total_bytes += size
            _add(tar, MANIFEST, json.dumps({"format": FORMAT, "scopes": described}, sort_keys=True).encode())
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return total_entries, total_bytes


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, 0
    tar.addfile(info, io.BytesIO(data))


def _write_scope(tar: tarfile.TarFile, n: str, scope: Path, group_of: Optional[layout.GroupOf], lock_timeout: float) -> Tuple[int, int, int]:
    """Add the scope's valid records and their verified objects (bad ones left out, as setup
    would) to `tar`, one group at a time, in the records' sorted order (so the archive is the same
    for the same cache); return (entries, objects, bytes). Under the scope's lock: one consistent
    generation, and nothing evicted under us."""
    entries = size = 0
    written: set = set()
    with scope_lock(str(scope), lock_timeout):
        for path in layout.iter_entries(str(scope)):
            try:
                data = layout.read_nofollow(path)
                _, files = layout.load_entry(path, group_of, data)
                contents = {obj: layout.read_nofollow(layout.object_path(str(scope), obj)) for obj, _ in files.values()}
            except (OSError, ValueError, TypeError, KeyError):
                continue
            if not all(hashlib.sha256(c).hexdigest() == obj for obj, c in contents.items()):
                continue
            _add(tar, f"{n}/entries/{os.path.basename(path)}", data)
            for obj, content in sorted(contents.items()):
                if obj not in written:  # shared by several groups: stored once
                    _add(tar, f"{n}/objects/{obj}", content)
                    written.add(obj)
                    size += len(content)
            entries += 1
            size += len(data)
    return entries, len(written), size


def import_(archive: Path, root: Path, build_root: str, max_size: int, lock_timeout: float,
            grouping: GroupingOf) -> list[Tuple[Path, int]]:
    """Merge the snapshot `archive` into the named cache `root` (…/named_caches/cacheplug) for
    the checkout at `build_root`; return [(scope dir, entries imported)]. Raises BadSnapshot,
    with nothing written, if the archive is not whole and valid."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stage = root / f"{layout.TMP_PREFIX}import.{os.getpid()}.{os.urandom(4).hex()}"
    stage.mkdir(mode=0o700)
    try:
        manifest = _unpack(archive, stage)
        plans = [_validate_scope(stage, s, root, build_root, grouping) for s in manifest["scopes"]]
        done = []
        for target, desc, records, sources, links in plans:  # nothing was written before this point
            layout.open_scope(str(target))
            records = store_objects(str(target), sources)  # the archive's, verified by _unpack
            with scope_lock(str(target), lock_timeout):
                layout.write_atomically(str(target / "scope.json"), json.dumps(desc, sort_keys=True).encode())
                generation = layout.read_generation(str(target))
                update_locked(str(target), generation, records, [], {}, sources, max_size, Report(), links=links)
            done.append((target, len(records)))
        return done
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _unpack(archive: Path, stage: Path) -> dict:
    """Unpack the archive's files (and nothing else) into `stage`, checking each object's hash."""
    manifest = None
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                if member.name == MANIFEST and member.isfile():
                    manifest = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                    continue
                match = MEMBER.fullmatch(member.name)
                if not match or not member.isfile():
                    raise BadSnapshot(f"unexpected member {member.name!r}: not a cacheplug snapshot")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if match.group(2) == "objects" and hashlib.sha256(data).hexdigest() != match.group(3):
                    raise BadSnapshot(f"object {match.group(3)[:12]} is corrupt (content does not match its hash)")
                dest = stage / match.group(1) / match.group(2) / match.group(3)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, OSError) as e:
        raise BadSnapshot(f"unreadable or truncated archive ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("scopes"), list):
        raise BadSnapshot(f"no {MANIFEST} of format {FORMAT}: truncated, or not a cacheplug snapshot of this version")
    return manifest


def _validate_scope(stage: Path, meta: object, root: Path, build_root: str, grouping: GroupingOf):  # type: ignore[no-untyped-def]
    """Check one scope of the archive as setup would; return where it goes and what to write."""
    try:
        assert isinstance(meta, dict)
        n, tool, parts = str(meta["dir"]), meta["tool"], meta["parts"]
        per_checkout = bool(meta.get("per_checkout", True))  # else one scope for every checkout
        assert isinstance(tool, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", tool) and not tool.startswith(".")
        assert isinstance(parts, list) and all(isinstance(p, str) for p in parts)
        expected = (int(meta["entries"]), int(meta["objects"]))
    except (AssertionError, KeyError, TypeError, ValueError):
        raise BadSnapshot(f"bad scope description in {MANIFEST}: {meta!r:.200}") from None
    target = root / tool / scope_id(build_root if per_checkout else "", tool, parts)
    entries_dir, objects_dir = stage / n / "entries", stage / n / "objects"
    names = sorted(p.name for p in entries_dir.iterdir()) if entries_dir.is_dir() else []
    objects = {p.name for p in objects_dir.iterdir()} if objects_dir.is_dir() else set()
    if (len(names), len(objects)) != expected:
        raise BadSnapshot(f"scope {n}: {len(names)} records and {len(objects)} objects, {MANIFEST} says {expected}: truncated?")
    records: Dict[str, Dict[str, Tuple[str, int]]] = {}
    sources: Dict[str, Dict[str, str]] = {}
    links: Set[str] = set()  # files that are symlinks (setup checks each again before making it)
    for name in names:
        try:
            record = json.loads((entries_dir / name).read_bytes())
            record["scope"] = target.name  # it named the exporting checkout's scope
            path = layout.entry_path(str(target), record["group"])
            if os.path.basename(path) != name:
                raise ValueError("record stored under the wrong name")
            group, files = layout.load_entry(path, grouping(tool), json.dumps(record).encode(), links=links)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise BadSnapshot(f"scope {n}: bad record {name[:12]}: {e}") from None
        for rel, (obj, size) in files.items():
            if obj not in objects or (objects_dir / obj).stat().st_size != size:
                raise BadSnapshot(f"scope {n}: record {name[:12]} names object {obj[:12]}, which is missing or of another size")
        records[group] = files
        sources[group] = {rel: str(objects_dir / obj) for rel, (obj, _) in files.items()}
    desc = {"tool": tool, "parts": parts, "buildroot": build_root if per_checkout else ""}
    return target, desc, records, sources, links
