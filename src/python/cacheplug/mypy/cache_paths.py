"""In-sandbox program: take the machine's paths, and chance, out of a mypy --bazel cache.

    python cache_paths.py SANDBOX_ROOT [META...]   (in the cache directory, by mypy's own Python)

Run after mypy in the base unit (every meta) and in units of mypy < 1.19 (their own metas).

mypy records each module's source path in its cache (the meta's `path`, and the data file's tree
`path`). Under `--bazel`, first-party paths are relative, but typeshed's (mypy 2.x makes it
absolute even for a relative `--custom-typeshed-dir`) and third-party ones are absolute, inside
Pants' named caches dir (`~/.cache/pants/named_caches/pex_root/...`): a user's home directory
would travel in the separate-compilation base unit's cache, an input of every unit.

This rewrites each such path to the same file's path relative to the sandbox root, through its
`.cache/pex_root` link (`.cache/pex_root/installed_wheels/<hash>/...`), a path that names the file
in every sandbox of every machine that installed the same wheels. mypy --bazel never reads a path
back from a cache it is given (it validates a meta by stat-ing the path it found itself), so the
rewrite changes no result.

mypy hashed each module's data, path included, before this runs (the meta's `interface_hash`,
which mypy >= 1.19 also copies into each importer's `dep_hashes`). So the hash is recomputed
from the rewritten data, as mypy computes it (with mypy's own functions: `hash_digest` of the
data before 1.19; `hash_digest_bytes` of the data and the plugins' JSON from 1.19), and every
copy of the old hash in the cache's metas is replaced by the new one: the base unit is then
byte-identical on machines whose named caches, homes and sandboxes are at different paths, and
the order in which they fill a remote cache does not matter. The formula is checked on each
module before its data changes (it must give the hash mypy recorded); where it does not, the
module keeps its path and hash, and the counts printed say so.

How, without re-serializing mypy's data: the path is a string that occurs once in the meta and
once in the data file, so its encoding (JSON, or mypy's fixed format through mypy's own
encoder) is replaced by the new string's. A module whose files do not show the path exactly
once each is left as it is. A hash is a hex string in JSON metas and 20 raw bytes in the fixed
format: either way, replacing every occurrence of the old one cannot hit anything else.

Chance: mypy before 1.19 records some "indirect" dependencies (priority 30: modules whose types a
module met while it was checked) by chance: a cache of type lookups shared across modules, keyed
by types some of which hash by identity, decides which a module sees first. The same base unit run
six times gave 4 different caches with 1.1.1 and 3 with 1.11.2 (1.19.1, 2.4.1: one), differing in
those alone (contextlib -> os, importlib.abc -> array/ctypes/mmap/pickle). mypy does not load a
module's indirect dependencies (load_graph skips them); they only make a module stale when one of
them changes. One that the module's direct imports reach anyway (followed through direct imports
only, which come from the source and are stable) adds nothing: it is dropped, so that the cache
is the same on every run and machine (a unit's cache key holds its dependencies' caches).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

PEX_ROOT = ".cache/pex_root"


def canonical(path: str, pex_root: str) -> Optional[str]:
    """`path` as the same file below the sandbox's `.cache/pex_root` link, or None if it is not
    there. By its real path: pex runs a venv through a short link whose name depends on where the
    pex root is (`venvs/s/<hash>`), and links site-packages files into `installed_wheels/<hash>`;
    the real path depends only on what is installed."""
    real = os.path.realpath(path)
    if not real.startswith(pex_root + "/"):
        return None
    return PEX_ROOT + real[len(pex_root):]


def json_meta(meta: bytes, data: bytes) -> tuple[str, bytes, bytes]:
    """(path, interface hash as the meta encodes it, that hash recomputed from `data`)."""
    record = json.loads(meta)
    if "dep_hashes" in record:  # mypy >= 1.19: hex of the data's and the plugins' hash
        new = _hash_19(data, record.get("plugin_data")).hex()
    else:
        new = mypy_module("mypy.util").hash_digest(data)
    return str(record["path"]), json.dumps(record["interface_hash"]).encode(), json.dumps(new).encode()


def _hash_19(data: bytes, plugin_data: object) -> bytes:
    util = mypy_module("mypy.util")
    return bytes(util.hash_digest_bytes(data + util.json_dumps(plugin_data)))


def mypy_module(name: str) -> Any:
    """A module of the mypy that wrote the cache: this runs with mypy's own Python."""
    return importlib.import_module(name)


def json_encode(path: str) -> bytes:
    return json.dumps(path).encode()


def ff_meta(meta: bytes, data: bytes) -> tuple[str, bytes, bytes]:
    # mypy's own reader (the fixed format is mypy >= 1.20's): this runs in mypy's venv.
    from librt.internal import ReadBuffer  # pants: no-infer-dep
    from mypy.cache import CacheMeta  # type: ignore[import-not-found]  # pants: no-infer-dep

    record = CacheMeta.read(ReadBuffer(meta[2:]), "")  # after the two cache-version bytes
    return str(record.path), bytes(record.interface_hash), _hash_19(data, record.plugin_data)


def ff_encode(path: str) -> bytes:
    from librt.internal import WriteBuffer  # pants: no-infer-dep
    from mypy.cache import write_str  # pants: no-infer-dep

    buffer = WriteBuffer()
    write_str(buffer, path)
    return bytes(buffer.getvalue())


Reader = Callable[[bytes, bytes], Tuple[str, bytes, bytes]]
# meta suffix -> data suffix, the meta's reader, how a string is encoded.
FORMATS: Dict[str, Tuple[str, Reader, Callable[[str], bytes]]] = {
    ".meta.json": (".data.json", json_meta, json_encode),
    ".meta.ff": (".data.ff", ff_meta, ff_encode),
}


def rewrite(meta_file: str, pex_root: str) -> Optional[Tuple[bytes, bytes]]:
    """Rewrite a module's path; return (old interface hash, new one) as the meta encodes them,
    None if there is nothing to rewrite. Raises Kept if the module must stay as it is."""
    for meta_suffix, (data_suffix, read_meta, encode) in FORMATS.items():
        if meta_file.endswith(meta_suffix):
            break
    else:
        return None
    data_file = meta_file[: -len(meta_suffix)] + data_suffix
    try:
        with open(meta_file, "rb") as f:
            meta = f.read()
        with open(data_file, "rb") as f:
            data = f.read()
        old, old_hash, recomputed = read_meta(meta, data)
    except Exception as e:
        raise Kept(f"unreadable: {e}")
    new = canonical(old, pex_root)
    if new is None:
        return None
    if recomputed != old_hash:
        raise Kept("mypy's interface hash is not the one this computes")
    old_bytes, new_bytes = encode(old), encode(new)
    if meta.count(old_bytes) != 1 or data.count(old_bytes) != 1:
        raise Kept("its path is not once in its meta and once in its data")
    data = data.replace(old_bytes, new_bytes)
    new_hash = read_meta(meta.replace(old_bytes, new_bytes), data)[2]
    # Each file is replaced by rename: a reader never sees half of one. The meta (and its
    # importers') get the new hash below.
    _replace_file(data_file, data)
    _replace_file(meta_file, meta.replace(old_bytes, new_bytes))
    return old_hash, new_hash


class Kept(Exception):
    """A module left with its absolute path."""


def _replace_file(name: str, content: bytes) -> None:
    tmp = f"{name}.cacheplug-tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, name)


PRI_INDIRECT = 30


def _direct_imports(module: str, cache: Dict[str, Optional[dict]]) -> List[str]:
    """A JSON meta's non-indirect dependencies (none if the module has no readable JSON meta)."""
    if module not in cache:
        try:
            with open(module.replace(".", "/") + ".meta.json", "rb") as f:
                cache[module] = json.loads(f.read())
        except (OSError, ValueError):
            try:
                with open(module.replace(".", "/") + "/__init__.meta.json", "rb") as f:
                    cache[module] = json.loads(f.read())
            except (OSError, ValueError):
                cache[module] = None
    meta = cache[module]
    if not meta:
        return []
    return [d for d, p in zip(meta["dependencies"], meta["dep_prios"]) if p != PRI_INDIRECT]


def drop_reached_indirect(meta_file: str, cache: Dict[str, Optional[dict]]) -> bool:
    """Drop a JSON meta's indirect dependencies that its direct imports reach; True if any."""
    if not meta_file.endswith(".meta.json"):
        return False
    with open(meta_file, "rb") as f:
        meta = json.loads(f.read())
    if "dep_hashes" in meta:  # mypy >= 1.19: its indirect dependencies are not left to chance
        return False
    deps, prios, lines = meta["dependencies"], meta["dep_prios"], meta["dep_lines"]
    indirect = {d for d, p in zip(deps, prios) if p == PRI_INDIRECT}
    if not indirect:
        return False
    reached: set = set()
    todo = [d for d, p in zip(deps, prios) if p != PRI_INDIRECT]
    while todo and not indirect <= reached:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(_direct_imports(module, cache))
    drop = indirect & reached
    if not drop:
        return False
    # `dep_prios` and `dep_lines` cover `dependencies` then `suppressed`: keep them aligned.
    keep = [i for i, d in enumerate(deps) if d not in drop] + list(range(len(deps), len(prios)))
    meta["dependencies"] = [deps[i] for i in keep if i < len(deps)]
    meta["dep_prios"] = [prios[i] for i in keep]
    meta["dep_lines"] = [lines[i] for i in keep]
    # Serialized as mypy < 1.19 writes it: a meta with nothing to drop keeps mypy's bytes, so
    # one with something dropped must be written the same way, or two runs would differ.
    _replace_file(meta_file, mypy_module("mypy.build").json_dumps(meta, False).encode())
    return True


def dump_json(meta: dict) -> bytes:
    """As mypy 1.x serializes a meta (mypy reads any JSON): one content, one byte string."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def main(sandbox_root: str, only: List[str]) -> int:
    pex_root = os.path.realpath(os.path.join(sandbox_root, PEX_ROOT))
    hashes: Dict[bytes, bytes] = {}  # old interface hash -> new, as encoded in metas
    metas = [m for m in only if os.path.exists(m)]
    kept = 0
    for dirpath, _, names in [] if only else os.walk("."):
        for name in names:
            path = os.path.join(dirpath, name)
            if ".meta" in name:
                metas.append(path)
    for path in metas:
        try:
            changed = rewrite(path, pex_root)
        except Kept:
            kept += 1
        else:
            if changed and changed[0] != changed[1]:
                hashes[changed[0]] = changed[1]
    # Every copy of a changed hash: the module's own `interface_hash`, its importers' `dep_hashes`
    # (in `.meta.*`, and `.meta_ex.*` in 2.x).
    for path in metas:
        with open(path, "rb") as f:
            content = f.read()
        updated = content
        for old, new in hashes.items():
            updated = updated.replace(old, new)
        if updated != content:
            _replace_file(path, updated)
    # A JSON meta names no interface hash of another module (before 1.19): the dependencies it
    # follows are unchanged by the rewrite above.
    cache: Dict[str, Optional[dict]] = {}
    dropped = sum(drop_reached_indirect(path, cache) for path in metas)
    print(f"cacheplug: made {len(hashes)} cache paths sandbox-relative (interface hashes recomputed), "
          f"left {kept} absolute; dropped reached indirect dependencies from {dropped} metas", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
