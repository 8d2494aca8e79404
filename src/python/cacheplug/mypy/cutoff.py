"""In-sandbox program: early cutoff for a separate-compilation unit, run after its mypy.

    python cutoff.py STARTED PLACEHOLDERS OUT [META...]   (in the unit's sandbox, by mypy's own Python)

A unit is given, for each module its files import that has a cache, that cache and a placeholder
in place of the module's source (see separate.py). mypy --bazel trusts a given cache without
reading the source (the path must exist) and without comparing the meta's source `hash`, `size`
or `mtime` with anything, so a dependency's source is not needed, and its identity need not be in
the meta either. This program does three things:

1. Checks that mypy used every placeholder's cache. The placeholder is a syntax error, so a mypy
   that parses one stops with exit 2 (also under `ignore_errors`: checked with 1.1.1 to 2.4.1),
   and separate.py re-runs the unit with real sources. This is the second line of defence, for
   whatever a mypy does with a module it checks anew: it writes or deletes its cache files. If the
   meta of a module listed in PLACEHOLDERS (one cache path prefix per line) was written after
   STARTED was created (just before mypy started), or its meta or data is missing, mypy checked
   that module from its placeholder: exit 3, naming it. Nothing is cached then, and the
   unit re-runs with real sources. A cache file mypy writes is a new file with a new mtime (mypy
   writes by rename), later than STARTED by at least mypy's start-up; the given ones were written
   into the sandbox before STARTED.

2. Normalizes the unit's own metas (META: the unit's `.meta.json`/`.meta.ff` paths, missing ones
   skipped): the source's `hash` and `size` become "" and 0, and `error_lines` (in the meta up to
   1.19, in `.meta_ex.*` from 1.20) empty. After a body-only edit, mypy's data file is unchanged
   and its meta differs in those fields only (unless an import moved: `dep_lines` holds every
   import's line, so then importers re-run), so the normalized outputs are byte-identical and
   every unit that imports the edited module gets identical inputs: Pants' process cache reuses
   them (the cutoff). An interface edit changes the data and `interface_hash`: importers re-run.
   Errors are not lost: the unit that owns a module reports its errors from its own run (importers
   drop lines about other files anyway). Before 1.19, chance indirect dependencies are dropped too
   (cache_paths.py). A meta this cannot read is left as mypy wrote it (no cutoff for that module,
   results unaffected), and the count printed says so.

3. Moves the unit's own cache files (those of the modules of META) into the directory OUT, at
   the same relative paths: the unit's one output. Pants captures an output directory in one
   walk, where a list of output files costs it a scan of the sandbox per file (seconds for a
   unit of a few hundred modules among the thousands of cache files it was given).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

try:  # in the sandbox, where it is beside this file
    from cache_paths import _replace_file, drop_reached_indirect, dump_json  # type: ignore[import-not-found]  # pants: no-infer-dep
except ImportError:  # as part of cacheplug (pantsd, tests)
    from cacheplug.mypy.cache_paths import _replace_file, drop_reached_indirect, dump_json

# A module's cache files, by its path prefix (`pkg/mod`, `pkg/__init__`): JSON in 1.x, fixed
# format in 2.x, and the `meta_ex` file that mypy 1.20+ writes beside the meta.
CACHE_SUFFIXES = (".meta.json", ".data.json", ".meta_ex.json", ".meta.ff", ".data.ff", ".meta_ex.ff")
PLACEHOLDER_READ = 3


def placeholders_read(started: str, placeholders: str) -> List[str]:
    """Modules of PLACEHOLDERS whose cache mypy wrote or deleted after `started` was created (or
    whose meta or data was missing: then mypy had to read the source)."""
    since = os.stat(started).st_mtime_ns
    with open(placeholders) as f:
        prefixes = [line for line in f.read().splitlines() if line]
    read = []
    for prefix in prefixes:
        present: Set[str] = set()
        latest = 0
        for suffix in CACHE_SUFFIXES:
            try:
                st = os.stat(prefix + suffix)
            except FileNotFoundError:
                continue
            kind = suffix.split(".")[1]  # meta, data or meta_ex
            present.add(kind)
            # mypy writes a module's meta last. Not the data file's mtime: a big input file may be
            # a hardlink into Pants' store, whose mtime Pants moves.
            if kind != "data":
                latest = max(latest, st.st_mtime_ns)
        if not {"meta", "data"} <= present or latest > since:
            read.append(prefix)
    return read


def normalized_json(meta: Dict[str, Any]) -> bytes:
    meta["hash"], meta["size"] = "", 0
    if "error_lines" in meta:
        meta["error_lines"] = []
    return dump_json(meta)


def _encode(parts: List[Tuple[str, Any]]) -> bytes:
    """mypy's fixed format, by mypy's own encoder (librt.internal): each part a tag, an unsigned
    int, a str or bytes, untagged ("bare"), as mypy.cache's helpers put them after their tags."""
    from librt.internal import WriteBuffer, write_bytes, write_int, write_str, write_tag  # pants: no-infer-dep

    writers: Dict[str, Callable[[Any, Any], None]] = {"tag": write_tag, "int": write_int, "str": write_str, "bytes": write_bytes}
    buffer = WriteBuffer()
    for kind, value in parts:
        writers[kind](buffer, value)
    return bytes(buffer.getvalue())


def normalized_ff_meta(meta: bytes) -> Optional[bytes]:
    """The fixed-format meta (two version bytes, then id, path, mtime, size, hash, ... each a tag
    and a value, as mypy.cache.CacheMeta.write puts them) with size 0 and hash "", or None if it
    does not read as that. Only these leading fields are decoded and re-encoded (librt.internal
    alone: importing mypy.cache would cost every unit most of a mypy start-up); the rest is kept
    as it is."""
    from librt.internal import ReadBuffer, read_int, read_str, read_tag  # pants: no-infer-dep

    try:
        buffer = ReadBuffer(meta[2:])
        parts: List[Tuple[str, Any]] = []
        for kind in ("str", "str", "int", "int", "str"):  # id, path, mtime, size, hash
            parts += [("tag", read_tag(buffer)), (kind, (read_str if kind == "str" else read_int)(buffer))]
        head = _encode(parts)
        tags = [value for kind, value in parts if kind == "tag"]
        if not meta[2:].startswith(head) or len({tags[0], tags[1], tags[4]}) != 1 or tags[2] != tags[3]:
            return None
        new_head = _encode([*parts[:7], ("int", 0), parts[8], ("str", "")])
    except Exception:
        return None
    return meta[:2] + new_head + meta[2 + len(head):]


def normalized_ff_meta_ex(meta_ex: bytes) -> Optional[bytes]:
    """The fixed-format meta_ex (dependencies, suppressed, dep_hashes, then error_lines, each a
    tag, a count and bare items, as mypy.cache.CacheMetaEx.write puts them) with no error lines,
    or None if it does not read as that."""
    from librt.internal import ReadBuffer, read_bytes, read_int, read_str, read_tag  # pants: no-infer-dep

    try:
        buffer = ReadBuffer(meta_ex)
        parts: List[Tuple[str, Any]] = []
        for kind, read in (("str", read_str), ("str", read_str), ("bytes", read_bytes)):
            parts.append(("tag", read_tag(buffer)))
            count = read_int(buffer)
            parts += [("int", count), *((kind, read(buffer)) for _ in range(count))]
        head = _encode(parts)
        errors_tag = read_tag(buffer)
        if not meta_ex.startswith(head):
            return None
        return head + _encode([("tag", errors_tag), ("int", 0)])
    except Exception:
        return None


FF_NORMALIZERS = {".meta.ff": normalized_ff_meta, ".meta_ex.ff": normalized_ff_meta_ex}


def normalize(meta_file: str, cache: Dict[str, Optional[dict]]) -> bool:
    """Normalize one of the unit's metas (and its meta_ex, if any) in place; False if it could
    not be read as a meta of a known format (then it stays as mypy wrote it)."""
    if meta_file.endswith(".meta.json"):
        drop_reached_indirect(meta_file, cache)  # mypy < 1.19's chance dependencies
        with open(meta_file, "rb") as f:
            try:
                meta = json.loads(f.read())
            except ValueError:
                return False
        if not isinstance(meta, dict) or "hash" not in meta or "size" not in meta:
            return False
        _replace_file(meta_file, normalized_json(meta))
        ex_file = meta_file[: -len(".meta.json")] + ".meta_ex.json"
        if os.path.exists(ex_file):  # mypy 1.20+ with JSON: the error lines are there
            with open(ex_file, "rb") as f:
                meta_ex = json.loads(f.read())
            meta_ex["error_lines"] = []
            _replace_file(ex_file, dump_json(meta_ex))
        return True
    if meta_file.endswith(".meta.ff"):
        new = {}
        for suffix, normalizer in FF_NORMALIZERS.items():
            name = meta_file[: -len(".meta.ff")] + suffix
            if suffix == ".meta_ex.ff" and not os.path.exists(name):
                continue
            with open(name, "rb") as f:
                content = normalizer(f.read())
            if content is None:
                return False
            new[name] = content
        for name, content in new.items():  # both or neither
            _replace_file(name, content)
        return True
    return False


def move_outputs(out: str, metas: List[str]) -> None:
    for meta in metas:
        prefix = meta.rsplit(".meta.", 1)[0]
        for suffix in CACHE_SUFFIXES:
            if os.path.exists(prefix + suffix):
                os.makedirs(os.path.dirname(os.path.join(out, prefix)), exist_ok=True)
                os.replace(prefix + suffix, os.path.join(out, prefix + suffix))


def main(started: str, placeholders: str, out: str, metas: List[str]) -> int:
    read = placeholders_read(started, placeholders)
    if read:
        print(f"cacheplug: mypy checked {len(read)} module(s) from the placeholder it was given for its source "
              f"(its cache was not enough: e.g. {', '.join(read[:3])}); the unit re-runs with real sources",
              file=sys.stderr)
        return PLACEHOLDER_READ
    cache: Dict[str, Optional[dict]] = {}
    present = [m for m in metas if os.path.exists(m)]
    done = sum(normalize(m, cache) for m in present)
    print(f"cacheplug: early cutoff: normalized {done} metas, left {len(present) - done} as mypy wrote them",
          file=sys.stderr)
    move_outputs(out, present)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
