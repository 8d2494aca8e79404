"""mypy's cache policy: run by the store in the sandbox (standard library only; see
cacheplug/store/policy.py for the contract).

Groups: a module's files (`<module>.meta.json` + `.data.json`, `.meta.ff` + `.data.ff` +
`.meta_ex.ff` in 2.x) travel together: mypy trusts a meta and reads the data beside it.

No change: a JSON meta rewritten with only a new `mtime` (mypy 1.x re-hashes a source whose mtime
is new, as every sandbox's is, and rewrites the meta if the hash matches; the quickstart file
below spares that, but a commit must not depend on it).

Which cached modules a run must not be given, decided after setup has verified the groups and
before mypy starts:

A module withheld from mypy is loaded from its source, as a cold run loads it; its dependents
keep their cache when its interface did not change. Each rule below is a case where incremental
mypy, given the module's cache, reports something else than a cold run; each was found by the
differential tests (cached == cold, generated and real code) and costs re-checking only the
modules it names:

1. Import errors (mypy >= 1.19; cf. mypy#20800). mypy reports that it cannot find (or analyse) an
   imported module while it loads the import graph from the module's source. A module loaded from
   its cache lists the import as "suppressed" and reports nothing for it: 1.19+ replays a fresh
   module's errors from its meta, but when the module is re-checked because a dependency changed,
   the error is lost (and the once-per-run "See ...#missing-imports" note moves); likewise when
   one of its missing imports appears (the others' errors go). So a module whose recorded errors
   hold an import error is withheld when mypy may re-check it this run: when a module it depends
   on, transitively, is not given with an unchanged source (its source's size or hash differs
   from its meta's, a third-party file's size or mtime, it has no cache or is withheld), or when
   one of those modules' suppressed imports now resolves (a first-party root, or the
   requirements' site-packages as `--python-executable` lists them). Typeshed's modules are not
   followed: the scope holds mypy's version. Where the metas do not tell (2.x's fixed format) or
   site-packages cannot be listed, it is withheld always. (Withheld always, Django's two modules
   importing yaml and docutils cost 0.4 s of a 0.3 s warm run with mypy 1.19.1.)
   A suppressed import without one was
   silenced (`ignore_missing_imports` for that module, `# type: ignore`, a disabled error code) and
   stays silenced until the config (part of the cache scope) or the module's source (then mypy
   parses it afresh) changes: withholding those, as cacheplug once did, re-checked every module
   with an optional third-party import, and its import cycle, on every run. mypy < 1.19 writes no
   cache for a module with errors, so this rule never matches there.
   Likewise `Module "pkg" has no attribute "mod"`: `from pkg import mod` before `pkg/mod.py`
   existed. mypy records no dependency on a module that was not there, so the importer stays
   fresh, with that error, after the module is added (1.19.1 and 2.4.1 alone do this; a cold run
   finds the module). Withheld only if a source `pkg/mod.py` (or `.pyi`, or a package) is now
   there: beside pkg's source where a 1.x meta tells where that is, else under each first-party
   root mypy searches (`MYPYPATH`, which Pants sets to the source roots, and the sandbox root);
   where neither can be told, always. (Withholding every module with such an error on 2.x cost
   Django 4 modules re-checked every run, over `ctypes`/`email` attributes typeshed lacks, and
   with them their import cycles: 152 modules.)
2. Deleted modules (mypy 1.x). `from pkg import mod` where `pkg/mod.py` was deleted: cold mypy
   reports `Module "pkg" has no attribute "mod"`; an importer whose meta lists `pkg.mod` as a
   dependency reports `Cannot find implementation or library stub for module named "pkg.mod"`
   instead. So when a first-party module's source is gone, its cache and its importers' are
   withheld. (2.x reports the same either way; its metas are not JSON.)

And one thing to spare mypy work a cold run does not do either: the sandbox's sources are new
files, so their mtimes differ from those the metas record; mypy then hashes each source and, when
the hash matches, rewrites its meta with the new mtime (0.8 s of a 1.2 s warm run on Django's 879
modules with mypy 1.19.1; and with 2.x, whose `.meta.ff` no commit can tell from a real change,
a commit of every module). `prepare` writes mypy's quickstart file (`--quickstart-file`, read by
mypy 1.1 to 2.x): each source's mtime, size and hash as mypy computes it, so mypy takes a meta
whose hash matches as fresh without hashing or rewriting it. The hashes are computed here from
the files themselves, so the quickstart file is true by construction.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
from typing import Any, Dict, List, Optional, Set, Tuple

# mypy writes `<cache_dir>/missing_stubs` (for `--install-types`) with open("w"), in place: a
# hardlink would let it write into the store's object (or fail on its read-only mode).
COPIES = ("missing_stubs",)

# The files whose contents `withhold` reads: metas (1.x JSON, 2.x fixed format) and 2.x/1.20+'s
# meta_ex, which holds the module's errors there.
READS = ("*.meta.json", "*.meta_ex.*")

# mypy's messages for an import it could not follow (mypy/modulefinder.py), and for a name a
# module lacks (`from pkg import mod` before pkg/mod.py exists), as a meta (1.19 JSON, quotes
# escaped) or meta_ex (2.x fixed format, 1.20+ JSON) records them.
IMPORT_ERRORS = re.compile(
    rb"Cannot find implementation or library stub for module named"
    rb"|module is installed, but missing library stubs or py\.typed marker"
    rb"|Library stubs not installed for"
)
MISSING_ATTRIBUTE = re.compile(rb'Module \\?"([^"\\]+)\\?" has no attribute \\?"([^"\\]+)\\?"')
# Top-level keys of a 1.x JSON meta (mypy writes plain paths and module names, no escapes).
JSON_PATH = re.compile(rb'"path":\s*"([^"\\]*)"')
JSON_ID = re.compile(rb'"id":\s*"([^"\\]*)"')


JSON_MTIME = re.compile(rb'"mtime":\s*-?[0-9.eE+-]+')


def group_of(relpath: str) -> str:
    """`3.11/pkg/mod.meta.json` -> `3.11/pkg/mod`."""
    head, base = os.path.split(relpath)
    return os.path.join(head, base.split(".")[0] or base)


def unchanged(relpath: str, new: bytes, old: bytes) -> bool:
    """A JSON meta equal to the one given but for its `mtime`."""
    if not relpath.endswith(".meta.json"):
        return False
    # Fast path, no parsing: equal once `"mtime": <number>` is blanked ("data_mtime" does not
    # match: the key must start at a quote).
    if JSON_MTIME.sub(b'"mtime":0', new) == JSON_MTIME.sub(b'"mtime":0', old):
        return True
    try:
        a, b = json.loads(new), json.loads(old)
    except ValueError:
        return False
    return isinstance(a, dict) and isinstance(b, dict) and (
        {k: v for k, v in a.items() if k != "mtime"} == {k: v for k, v in b.items() if k != "mtime"})


def withhold(groups: Dict[str, Dict[str, bytes]], config: Optional[Dict[str, Any]] = None) -> Set[str]:
    """The groups ({group: {relpath: content of the files matching READS}}) not to give mypy.
    Runs in the sandbox root, where first-party paths recorded by whole-repo mypy are relative.
    `config`: the rule's policy config (the sources' list and hash; the requirements' Python)."""
    metas: Dict[bytes, Tuple[str, bytes]] = {}  # module id -> (group, its JSON meta): 1.x
    sources: Dict[bytes, str] = {}  # module id -> its first-party source path (1.x JSON metas)
    gone = {}  # module id -> group, for first-party modules whose source was deleted
    for group, files in groups.items():
        for rel, content in files.items():
            if not fnmatch.fnmatch(rel, "*.meta.json"):
                continue
            path, module = JSON_PATH.search(content), JSON_ID.search(content)
            if module:
                metas[module.group(1)] = (group, content)
            source = path.group(1).decode() if path else ""
            if module and source and not os.path.isabs(source):
                sources[module.group(1)] = source
                if not os.path.exists(source):
                    gone[b'"%s"' % module.group(1)] = group
    withheld = {
        group for group, files in groups.items()
        if any(_submodule_appeared(m, sources) for c in files.values() for m in MISSING_ATTRIBUTE.finditer(c))
    }
    if gone:
        withheld.update(gone.values())
        withheld.update(
            group for group, files in groups.items()
            if any(name in content for content in files.values() for name in gone)
        )
    import_errors = {
        group for group, files in groups.items() if any(IMPORT_ERRORS.search(content) for content in files.values())
    }
    return withheld | _rechecked(import_errors - withheld, metas, withheld, config or {})


def _rechecked(candidates: Set[str], metas: Dict[bytes, Tuple[str, bytes]], withheld: Set[str], config: Dict[str, Any]) -> Set[str]:
    """Of `candidates` (groups), those mypy may re-check this run although given their cache (rule
    1). mypy 1.19 re-checks a module loaded from its cache when, in its dependency closure (cycles
    included), a module's meta is not valid now (no cache given, withheld, its source changed or
    gone, or a new file may now be found for it), a module recorded an interface hash for a
    dependency other than that dependency's, or a suppressed import now resolves. Each is
    checked here on the closure's metas, erring towards "re-checked"."""
    if not candidates:
        return set()
    module_of = {group: module for module, (group, _) in metas.items()}
    search = _search_dirs(config)
    if search is None or "hash" not in config or "sources" not in config or any(g not in module_of for g in candidates):
        return candidates  # cannot tell: as if each were re-checked
    first_party, site_packages = search
    new_names = _new_module_names(config["sources"], metas)
    deps: Dict[bytes, List[bytes]] = {}  # the explored part of the import graph
    changed: Set[bytes] = set()
    todo = [module_of[group] for group in candidates]
    while todo:
        module = todo.pop()
        if module in deps:
            continue
        deps[module] = []
        if module not in metas or module in new_names:  # no cache given, or a new file may now be found for it
            changed.add(module)
            continue
        group, content = metas[module]
        recorded = JSON_PATH.search(content)
        if recorded and b"/mypy/typeshed/" in recorded.group(1):
            continue  # typeshed's sources are fixed by mypy's version, which the scope holds
        meta = json.loads(content)
        path, dependencies = meta["path"], [d.encode() for d in meta.get("dependencies", ())]
        if group in withheld or _source_changed(path, meta, config["hash"], site_packages) or any(
                h != _interface_hash(d, metas) for d, h in zip(dependencies, meta.get("dep_hashes", ()))) or any(
                name.encode() in new_names or _resolves(name, first_party + site_packages) for name in meta.get("suppressed", ())):
            changed.add(module)
        parts = module.split(b".")  # its packages too: mypy loads a module's ancestors with it
        deps[module] = dependencies + [b".".join(parts[:i]) for i in range(1, len(parts))]
        todo.extend(deps[module])
    # Re-checked: whatever reaches a changed module.
    users: Dict[bytes, List[bytes]] = {}
    for module, ds in deps.items():
        for d in ds:
            users.setdefault(d, []).append(module)
    tainted: Set[bytes] = set()
    todo = list(changed)
    while todo:
        module = todo.pop()
        if module not in tainted:
            tainted.add(module)
            todo.extend(users.get(module, ()))
    return {group for group in candidates if module_of[group] in tainted}


JSON_INTERFACE = re.compile(rb'"interface_hash":\s*"([^"\\]*)"')


def _interface_hash(module: bytes, metas: Dict[bytes, Tuple[str, bytes]]) -> Optional[str]:
    found = JSON_INTERFACE.search(metas[module][1]) if module in metas else None
    return found.group(1).decode() if found else None


def _source_changed(path: str, meta: Dict[str, Any], algorithm: str, site_packages: List[str]) -> bool:
    """Whether mypy will find `path` changed from its meta. A first-party source (relative: new
    in every sandbox) by its size and hash, as mypy does with the quickstart file; a third-party
    one by its size and mtime (mypy hashes it only when they differ: then count it changed), and
    it must be in the requirements' site-packages: Pants' venv for other requirements (added
    stubs, a package removed) is another directory."""
    try:
        if os.path.isabs(path):
            if not any(path.startswith(d.rstrip(os.sep) + os.sep) for d in site_packages):
                return True
            st = os.stat(path)
            return (st.st_size, int(st.st_mtime)) != (meta["size"], meta["mtime"])
        return _source_entry(path, algorithm)[1:] != (meta["size"], meta["hash"])
    except OSError:
        return True


def _new_module_names(sources_list: str, metas: Dict[bytes, Tuple[str, bytes]]) -> Set[bytes]:
    """Every name mypy might give a source file that no meta records (new to the cache): each
    dotted tail of its path (which directory is its base depends on `__init__.py` files, the
    source roots, the config), without `-stubs`. A module of that name in a dependency closure
    may now resolve to the new file (a `.pyi` beside a `.py`, `./colorsys.py` over typeshed's)."""
    known = set()
    for _, content in metas.values():
        recorded = JSON_PATH.search(content)
        if recorded:
            known.add(os.path.normpath(recorded.group(1).decode()))
    names: Set[bytes] = set()
    with open(sources_list) as f:
        for path in f.read().splitlines():
            if not path or os.path.normpath(path) in known:
                continue
            parts = os.path.normpath(path).rsplit(".", 1)[0].split(os.sep)
            parts = [p[: -len("-stubs")] if p.endswith("-stubs") else p for p in parts]
            if parts[-1] == "__init__":
                parts.pop()
            names.update(".".join(parts[i:]).encode() for i in range(len(parts)))
    return names


def _search_dirs(config: Dict[str, Any]) -> Optional[Tuple[List[str], List[str]]]:
    """Where mypy looks for an import: the first-party roots (MYPYPATH, the sandbox root), and the
    requirements' sys.path, from the Python mypy runs as `--python-executable` (None: unknown)."""
    python, roots = config.get("python"), os.environ.get("MYPYPATH")
    if not python or roots is None:  # Pants sets both; elsewhere the first-party roots are unknown
        return None
    try:
        out = subprocess.run([python, "-c", "import sys, json; print(json.dumps(sys.path))"], capture_output=True,
                             timeout=60, check=True).stdout
        paths = [p for p in json.loads(out) if isinstance(p, str) and p and os.path.isdir(p)]
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return [".", *(r for r in roots.split(os.pathsep) if r)], paths


def _resolves(module: str, search: List[str]) -> bool:
    """Whether an import of `module` now finds something: a module, a package (namespace ones
    too) or stubs (`-stubs` of it or of any of its packages) in a search directory."""
    parts = module.split(".")
    for root in search:
        if _module_in(os.path.join(root, *parts[:-1]), parts[-1]) or any(
                os.path.isdir(os.path.join(root, *parts[:i], parts[i] + "-stubs")) for i in range(len(parts))):
            return True
    return False


def _submodule_appeared(error: "re.Match[bytes]", sources: Dict[bytes, str]) -> bool:
    """Whether `Module "pkg" has no attribute "name"` may now be wrong: a module `pkg.name` has a
    source beside pkg's, or under a first-party root. A third-party or typeshed pkg gets no new
    submodule without the scope changing; one only in a first-party root could shadow it."""
    package, name = error.group(1), error.group(2).decode()
    if package in sources:  # a 1.x meta says where pkg's source is
        path = sources[package]
        if not path.endswith(("__init__.py", "__init__.pyi")):
            return False  # pkg is a plain module: it has no submodules
        return _module_in(os.path.dirname(path), name)
    roots = os.environ.get("MYPYPATH")
    if roots is not None:  # Pants runs mypy with the source roots there
        parts = package.decode().split(".")
        return any(_module_in(os.path.join(root, *parts), name) for root in {*roots.split(os.pathsep), "."} if root)
    # Where first-party code is cannot be told: any pkg that may be first party.
    return not sources or package.split(b".")[0] in {m.split(b".")[0] for m in sources}


def _module_in(directory: str, name: str) -> bool:
    """A module `name` in `directory` as mypy finds one: a file, a package, or a namespace package
    (any directory; a directory that holds no module only costs a re-check)."""
    return any(os.path.exists(os.path.join(directory, p)) for p in (f"{name}.py", f"{name}.pyi")) or os.path.isdir(
        os.path.join(directory, name))


_ENTRIES: Dict[str, Tuple[float, int, str]] = {}  # path -> (mtime, size, hash): withhold and prepare both read them


def _source_entry(path: str, algorithm: str) -> Tuple[float, int, str]:
    """A source's mtime, size and hash as mypy computes it (`hash_digest`), read once per run."""
    if path not in _ENTRIES:
        with open(path, "rb") as f:
            data = f.read()
            mtime = os.fstat(f.fileno()).st_mtime
        _ENTRIES[path] = (mtime, len(data), hashlib.new(algorithm, data).hexdigest())
    return _ENTRIES[path]


def prepare(config: Dict[str, Any]) -> None:
    """Write mypy's quickstart file (`config["quickstart"]`) for the sources listed one per line
    in `config["sources"]`, hashed with `config["hash"]` (mypy's `hash_digest`: sha256 before 1.14,
    sha1 since)."""
    with open(config["sources"]) as f:
        sources = [line for line in f.read().splitlines() if line]
    entries = {path: list(_source_entry(path, config["hash"])) for path in sources}
    tmp = f"{config['quickstart']}.tmp"
    with open(tmp, "w") as f:
        json.dump(entries, f)
    os.replace(tmp, config["quickstart"])  # whole or not at all: mypy warns on a torn one
