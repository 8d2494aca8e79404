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
   the error is lost (and the once-per-run "See ...#missing-imports" note moves). So a module
   whose recorded errors hold an import error is withheld. A suppressed import without one was
   silenced (`ignore_missing_imports` for that module, `# type: ignore`, a disabled error code) and
   stays silenced until the config (part of the cache scope) or the module's source (then mypy
   parses it afresh) changes: withholding those, as cacheplug once did, re-checked every module
   with an optional third-party import, and its import cycle, on every run. mypy < 1.19 writes no
   cache for a module with errors, so this rule never matches there.
   Likewise `Module "pkg" has no attribute "mod"`: `from pkg import mod` before `pkg/mod.py`
   existed. mypy records no dependency on a module that was not there, so the importer stays
   fresh, with that error, after the module is added (1.19.1 and 2.4.1 alone do this; a cold run
   finds the module). Withheld only if a source `pkg/mod.py` (or `.pyi`, or a package) is now
   there: beside pkg's source where a 1.x meta tells where that is, else if any first-party file
   (listed for mypy, or under a root in `MYPYPATH`, which Pants sets to the source roots) may be
   module `pkg.mod` from some base directory; where neither can be told, always. (Withholding
   every module with such an error on 2.x re-checked Django's modules that name attributes
   typeshed lacks, `ctypes.WinDLL` on Linux, and their import cycles: 152 modules every run.)
2. Deleted modules (mypy 1.x). `from pkg import mod` where `pkg/mod.py` was deleted: cold mypy
   reports `Module "pkg" has no attribute "mod"`; an importer whose meta lists `pkg.mod` as a
   dependency reports `Cannot find implementation or library stub for module named "pkg.mod"`
   instead. So when a first-party module's source is gone, its cache and its importers' are
   withheld. (2.x reports the same either way; its metas are not JSON.) A module found through
   MYPYPATH (a partial check's dependency) is recorded by its absolute path in the sandbox that
   wrote it: that path is read as the same path in this sandbox.

And one thing to spare mypy work a cold run does not do either: the sandbox's sources are new
files, so their mtimes differ from those the metas record; mypy then hashes each source and, when
the hash matches, rewrites its meta with the new mtime (0.8 s of a 1.2 s warm run on Django's 879
modules with mypy 1.19.1; and with 2.x, whose `.meta.ff` no commit can tell from a real change,
a commit of every module). `prepare` writes mypy's quickstart file (`--quickstart-file`, read by
mypy 1.1 to 2.x): each source's mtime, size and hash as mypy computes it, so mypy takes a meta
whose hash matches as fresh without hashing or rewriting it. The hashes are computed here from
the files themselves, so the quickstart file is true by construction. It covers the files mypy
finds through MYPYPATH too (a partial check's dependencies), by the path mypy gives them.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set

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
    head, slash, base = relpath.rpartition("/")  # not os.path: this runs per cache file
    return head + slash + (base.split(".")[0] or base)


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
    `config`: the rule's policy config (`sources`: the file list mypy checks)."""
    withheld = {
        group for group, files in groups.items() if any(IMPORT_ERRORS.search(content) for content in files.values())
    }
    sources: Dict[bytes, str] = {}  # module id -> its first-party source path (1.x JSON metas)
    gone = {}  # module id -> group, for first-party modules whose source was deleted
    here = os.getcwd()
    for group, files in groups.items():
        for rel, content in files.items():
            if not fnmatch.fnmatch(rel, "*.meta.json"):
                continue
            path, module = JSON_PATH.search(content), JSON_ID.search(content)
            source = _in_this_sandbox(path.group(1).decode(), here) if path else ""
            if module and source and not os.path.isabs(source):
                sources[module.group(1)] = source
                if not os.path.exists(source):
                    gone[b'"%s"' % module.group(1)] = group
    names = functools.lru_cache(maxsize=None)(lambda: _first_party_names((config or {}).get("sources")))
    withheld.update(
        group for group, files in groups.items()
        if any(_submodule_appeared(m, sources, names) for c in files.values() for m in MISSING_ATTRIBUTE.finditer(c))
    )
    if gone:
        withheld.update(gone.values())
        withheld.update(
            group for group, files in groups.items()
            if any(name in content for content in files.values() for name in gone)
        )
    return withheld


def _in_this_sandbox(path: str, here: str) -> str:
    """`path` relative to the sandbox mypy ran in, if that is another sandbox beside this one
    (`here`): there mypy (1.19, not 1.1) records a module it found through MYPYPATH (a partial
    check's dependency) by its absolute path. Any other path as it is: a listed file's path is
    relative already; typeshed's and installed packages' are outside every sandbox."""
    parent, name = os.path.split(here)
    if os.path.isabs(path) and path.startswith(parent + os.sep):
        sandbox, _, rel = path[len(parent) + 1:].partition(os.sep)
        # Sandboxes are named alike (Pants': pants-sandbox-<random>): a directory beside this
        # one named otherwise (a named cache in the same temp dir) is no sandbox.
        if rel and sandbox.rsplit("-", 1)[0] == name.rsplit("-", 1)[0] and "-" in name:
            return rel
    return path


def _submodule_appeared(error: "re.Match[bytes]", sources: Dict[bytes, str], names: Callable[[], Optional[Set[str]]]) -> bool:
    """Whether `Module "pkg" has no attribute "name"` may now be wrong: a module `pkg.name` has a
    source beside pkg's, or some first-party file may be `pkg.name` (`names`). A third-party or
    typeshed pkg gets no new submodule without the scope changing; a first-party one could
    shadow it."""
    package, name = error.group(1), error.group(2).decode()
    if package in sources:  # a 1.x meta says where pkg's source is
        path = sources[package]
        if not path.endswith(("__init__.py", "__init__.pyi")):
            return False  # pkg is a plain module: it has no submodules
        directory = os.path.dirname(path)
        return any(os.path.exists(os.path.join(directory, p)) for p in (f"{name}.py", f"{name}.pyi")) or os.path.isdir(
            os.path.join(directory, name))  # a package, or a namespace package
    first_party = names()
    if first_party is not None:
        return f"{package.decode()}.{name}" in first_party
    # Where first-party code is cannot be told: any pkg that may be first party.
    return not sources or package.split(b".")[0] in {m.split(b".")[0] for m in sources}


def _first_party_names(file_list: Optional[str]) -> Optional[Set[str]]:
    """Every name mypy might give a first-party module or package now: the files it checks (the
    file list) and those under the `MYPYPATH` roots, each named from every possible base
    directory (which one mypy takes depends on `__init__.py` files and its flags), with every
    package above it (namespace packages too). None if there is no file list."""
    if not file_list:
        return None
    try:
        with open(file_list) as f:
            paths = [p for p in f.read().splitlines() if p]
    except OSError:
        return None
    paths.extend(_mypypath_files())
    names: Set[str] = set()
    for path in {os.path.normpath(p) for p in paths}:  # listed files are under the roots too
        parts = [p[: -len("-stubs")] if p.endswith("-stubs") else p
                 for p in path.rsplit(".", 1)[0].split(os.sep)]
        if parts[-1] == "__init__":
            parts.pop()
        for start in range(len(parts)):
            names.update(".".join(parts[start:end]) for end in range(start + 1, len(parts) + 1))
    return names


def _mypypath_files() -> List[str]:
    """The Python files under the roots in `MYPYPATH` (Pants sets it to the source roots), named
    as mypy names them: the root joined with the file's path below it."""
    found: List[str] = []
    for root in filter(None, os.environ.get("MYPYPATH", "").split(os.pathsep)):
        for directory, _, files in os.walk(root):
            found.extend(os.path.join(directory, f) for f in files if f.endswith((".py", ".pyi")))
    return found


def _quickstart_entry(path: str, hash_name: str) -> List[Any]:
    """[mtime, size, hash] of a source, as mypy's quickstart file holds them."""
    with open(path, "rb") as f:
        data = f.read()
        mtime = os.fstat(f.fileno()).st_mtime
    return [mtime, len(data), hashlib.new(hash_name, data).hexdigest()]


def prepare(config: Dict[str, Any]) -> None:
    """Write mypy's quickstart file (`config["quickstart"]`) for the sources listed one per line
    in `config["sources"]`, hashed with `config["hash"]` (mypy's `hash_digest`: sha256 before 1.14,
    sha1 since)."""
    with open(config["sources"]) as f:
        sources = [line for line in f.read().splitlines() if line]
    listed = {os.path.normpath(p) for p in sources}
    # Files mypy finds through MYPYPATH rather than the file list: a partial check's dependencies
    # (`pants check dir::` lists the partition's own files only). mypy names them by the root
    # joined with their path: absolute in 1.19 and 2.x, a path new in every sandbox, so without
    # an entry mypy re-hashed each one and rewrote its meta, and the commit stored every
    # rewritten meta again, on every run; normalized but relative in 1.1 (`./src` -> `src/...`).
    # A found file that cannot be read goes without an entry: mypy reads it itself if it must.
    entries = {}
    for path in sources:
        entries[path] = _quickstart_entry(path, config["hash"])
    for path in _mypypath_files():
        if os.path.normpath(path) not in listed:
            try:
                entry = _quickstart_entry(path, config["hash"])
            except OSError:
                continue
            for key in (path, os.path.normpath(path), os.path.abspath(path)):
                entries[key] = entry
    tmp = f"{config['quickstart']}.tmp"
    with open(tmp, "w") as f:
        json.dump(entries, f)
    os.replace(tmp, config["quickstart"])  # whole or not at all: mypy warns on a torn one
