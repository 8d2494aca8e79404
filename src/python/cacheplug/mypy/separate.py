"""Separate compilation for mypy: hermetic, cacheable mypy processes over parts of the import graph.

`[mypy].separate_compilation = true` replaces a partition's one big mypy run with:
  - a base unit, per partition (resolve, interpreter, mypy version, args, config, plugins): mypy on
    one generated file that imports every module the partition's code imports from outside
    itself, so typeshed and the third-party requirements are analysed once;
  - units over mypy's own import graph (an import cycle is in one unit; modules consecutive in a
    dependency order joined, about `[mypy].separate_compilation_unit_size` files: unit_graph.py),
    in dependency order, independent units concurrently: mypy on the unit's own files, given the
    base unit's cache and the cache outputs of the modules its files import, transitively, with a
    placeholder for the source of each that has a cache (the real source for each that has none).
    Its output: its own modules' cache files only, without the source's identity (cutoff.py). Pants' process
    cache (local, and remote) then reuses each unit whose inputs did not change, also after a
    body-only edit of a module it imports (early cutoff).

mypy runs with `--bazel`: cache files go to the working directory as `<module path>.meta.json`
(`.meta.ff` in 2.x, plus `.meta_ex.*` from 1.20), with relative first-party paths and zero
mtimes; the base unit then rewrites the absolute paths it recorded for typeshed and third-party
modules to sandbox-relative ones (`cache_paths.py`). So the same inputs give byte-identical
outputs in any sandbox or checkout (mypy 1.1.1's indirect dependencies excepted), and no unit's
inputs or outputs name a directory of the machine: a remote cache serves other machines (the
base unit's interface hashes still depend on where the named caches are: see cache_paths.py).
A dependency's cache is trusted as given (no source mtime/size/hash check): Pants' input digests
are what keep it valid.
mypy exits 1 for type errors: a unit's process exits 0 for mypy's 0 and 1 and records mypy's
code in a file, so results with type errors are cached too (Pants caches successful processes
only); a crash (exit 2, a signal) fails the process and is never cached.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pkgutil
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Iterable, Optional

from packaging.version import Version  # pants: no-infer-dep (ships with Pants)
from pants.backend.python.dependency_inference.parse_python_dependencies import (
    ParsedPythonDependencies,
    ParsePythonDependenciesRequest,
)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import InterpreterConstraintsField, PythonSourceField
from pants.backend.python.typecheck.mypy.rules import MyPyPartition, determine_python_files
from pants.backend.python.typecheck.mypy.subsystem import MyPy
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import VenvPex, VenvPexProcess
from pants.core.goals.check import CheckResult
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.internals.session import RunId
from pants.engine.process import FallibleProcessResult, Process, ProcessResultMetadata
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import Dependencies, DependenciesRequest, Targets
from pants.option.global_options import GlobalOptions
from pants.source.source_root import SourceRootsRequest, SourceRootsResult
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import pluralize

from cacheplug.mypy.cutoff import CACHE_SUFFIXES
from cacheplug.mypy.subsystem import checked_unit_size
from cacheplug.mypy.unit_graph import UnitGraph, batch, import_edges, module_name, prefixes, unit_graph

EXIT_CODE_FILE = "__cacheplug_mypy_exit_code"
BASE_DIR = "__cacheplug_base"
BASE_MODULE = "__cacheplug_base__"
# Programs run by mypy's own Python in the sandbox, beside each other (cutoff.py imports cache_paths).
PROGRAMS_DIR = "__cacheplug"
CACHE_PATHS = f"{PROGRAMS_DIR}/cache_paths.py"
CUTOFF = f"{PROGRAMS_DIR}/cutoff.py"
STARTED = "__cacheplug_started"  # created just before mypy starts (cutoff.py)
PLACEHOLDERS = "__cacheplug_placeholders"  # the cache path prefix of each module given as a placeholder
OUT_DIR = "__cacheplug_out"  # where cutoff.py moves the unit's own cache files: its output
MYPY_STDERR = "__cacheplug_mypy_stderr"
# In place of the source of a module whose cache a unit is given: a syntax error, so that a mypy
# that reads it (the cache was not enough) stops with exit 2 instead of seeing an empty module.
PLACEHOLDER = b"<cacheplug: this module's cache was given instead of its source; mypy read it, so the unit re-runs with sources>\n"
# Exits 0 for mypy's 0 (clean) and 1 (type errors), recording which: both results are cacheable.
# An exit 1 with a Python traceback is a crash (an uncaught exception, e.g. in mypy 1.19 given a
# meta without its data): 2. Then cutoff.py, by mypy's own Python `$PYTHON`, checks that no
# placeholder was read (exit 3), normalizes the unit's metas listed in $OWN_METAS and moves the
# unit's cache files to OUT_DIR; any other failure of it is a crash too (2), never an exit 1 that
# would read as type errors. Bash builtins only: the check must not depend on what the sandbox's
# PATH has.
UNIT_WRAPPER = (
    f': > {STARTED}; "$@" 2> {MYPY_STDERR}; rc=$?; err=$(< {MYPY_STDERR}); [ -z "$err" ] || printf "%s\\n" "$err" >&2; '
    f'[ $rc -ne 1 ] || [[ $err != *"Traceback (most recent call last)"* ]] || rc=2; '
    f'echo $rc > {EXIT_CODE_FILE}; [ $rc -le 1 ] || exit $rc; '
    f'"$PYTHON" {CUTOFF} {STARTED} {PLACEHOLDERS} {OUT_DIR} $OWN_METAS || {{ [ $? -eq 3 ] && exit 3; exit 2; }}'
)
# The base unit's: mypy in BASE_DIR, then its cache's paths made sandbox-relative by mypy's own
# Python (which can read mypy's fixed cache format); `$PYTHON` is that Python, `..` the sandbox
# root. The `cd` is the wrapper's, not the process's working directory: Pants 2.17 loses an
# output directory "." of a process with a working directory when it goes through a remote cache.
BASE_WRAPPER = (
    f'cd {BASE_DIR} || exit 2; "$@"; rc=$?; echo $rc > {EXIT_CODE_FILE}; [ $rc -le 1 ] || exit $rc; '
    f'exec "$PYTHON" ../{CACHE_PATHS} ..'
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MyPyTool:
    """What every mypy process of one partition shares (both modes)."""

    pex: VenvPex
    version: str
    python_version: Optional[str]
    flags: tuple[str, ...]  # user args, --python-version; not the config, the cache or the files
    config_file: Optional[str]  # relative to the sandbox root
    digest: Digest  # config, first-party plugins, requirements venv, the stable-python script
    python_executable: str  # relative to the sandbox root
    plugin_roots: tuple[str, ...]
    env: FrozenDict[str, str]

    def argv(self, root: str = "") -> tuple[str, ...]:
        """mypy's flags, for a process whose working directory is `root` below the sandbox."""
        config = (f"--config-file={root}{self.config_file}",) if self.config_file else ()
        return (*self.flags, *config, f"--python-executable={root}{self.python_executable}")


# Early cutoff (placeholders for imported modules' sources): mypy's caches are deterministic from
# 1.19 (see cache_paths.py), and record modules with errors too.
CUTOFF_SINCE = Version("1.19")
# Cache files at the working directory, relative paths, zero mtimes (see the module docstring).
SEPARATE_FLAGS = ("--bazel", "--no-sqlite-cache")
# mypy 1.1.1 writes some lists of a meta (e.g. contextlib's) in set order, which string hash
# randomization changes from process to process: a fixed seed makes outputs byte-identical.
SEPARATE_ENV = {"PYTHONHASHSEED": "0"}


def partition_label(partition: MyPyPartition, tool: MyPyTool) -> str:
    """How log lines name a partition, e.g. `python-default, py3.11`."""
    py = f"py{tool.python_version}" if tool.python_version else ""
    return ", ".join(filter(None, [partition.resolve_description, py])) or partition.description()


@dataclass(frozen=True)
class SeparateCheckRequest:
    partition: MyPyPartition
    tool: MyPyTool


@dataclass(frozen=True)
class BaseUnitRequest:
    tool: MyPyTool
    imports: tuple[str, ...]


@dataclass(frozen=True)
class BaseUnit:
    cache: Digest
    result: FallibleProcessResult


@dataclass(frozen=True)
class UnitRequest:
    graph: UnitGraph
    index: int  # of the unit in `graph`
    tool: MyPyTool
    base: Digest  # the base unit's cache
    sources: Digest  # every first-party source file of the partition (its closure)
    search_path: str  # MYPYPATH: the source roots, as in whole-repo mode


@dataclass(frozen=True)
class UnitReport:
    description: str
    files: tuple[str, ...]
    exit_code: int  # mypy's: 0, 1, or a crash
    output: str  # this unit's own diagnostics (or everything, for a crash)
    source: ProcessResultMetadata.Source  # RAN, or where Pants' process cache had it
    recovered: bool = False  # re-ran with real sources: a placeholder was not enough (cutoff.py)
    unnormalized: int = 0  # metas cutoff.py could not normalize (no early cutoff for them)
    elapsed_ms: int | None = None  # the process's run time as Pants measured it (None: unknown)


@dataclass(frozen=True)
class Unit:
    caches: FrozenDict[str, tuple[FileEntry, ...]]  # each of the unit's files -> its module's cache files
    report: UnitReport


def module_prefix(path: str, source_root: str) -> str:
    """`src/python/pkg/mod.py` under root `src/python` -> `pkg/mod`: where mypy --bazel puts the
    module's cache files."""
    rel = path if source_root in ("", ".") else path[len(source_root) + 1:]
    return rel.rsplit(".", 1)[0]


def external_imports(imports: Iterable[str], first_party: set[str]) -> list[str]:
    """The imports that no first-party module provides: `a.b.c` is first-party if `a.b.c`, `a.b`
    or `a` is a first-party module (`from pkg.mod import name` parses as `pkg.mod.name`)."""
    return sorted({i for i in imports if not any(p in first_party for p in prefixes(i))})


def own_lines(output: str, files: Iterable[str]) -> list[str]:
    """mypy's lines about `files` (with their indented continuations): a unit that re-analyses a
    dependency (mypy 1.x writes no cache for a module with errors) reports its errors again, and
    the unit that owns the dependency reports them already. The summary line goes too."""
    prefixes = tuple(f"{f}:" for f in files)
    kept, keep = [], False
    for line in output.splitlines():
        plain = ANSI.sub("", line)
        if not plain[:1].isspace():
            keep = plain.startswith(prefixes)
        if keep:
            kept.append(line)
    return kept


def summary(reports: Iterable[UnitReport]) -> tuple[int, str]:
    """Exit code and output of the whole partition, as one mypy run would give them."""
    reports = list(reports)
    lines = [line for r in reports for line in r.output.splitlines()]
    errors = [ANSI.sub("", line) for line in lines if ": error:" in ANSI.sub("", line)]
    files = sum(len(r.files) for r in reports)
    crashed = [r for r in reports if r.exit_code not in (0, 1)]
    if crashed:
        return max(r.exit_code for r in crashed), "\n".join(lines) + "\n"
    if errors:
        n_files = len({e.split(":", 1)[0] for e in errors})
        tail = (f"Found {pluralize(len(errors), 'error')} in {pluralize(n_files, 'file')} "
                f"(checked {pluralize(files, 'source file')})")
        return 1, "\n".join([*lines, tail]) + "\n"
    return 0, "\n".join([*lines, f"Success: no issues found in {pluralize(files, 'source file')}"]) + "\n"


def cutoff_counts(graph: UnitGraph, reports: list[UnitReport]) -> tuple[int, int]:
    """(units reused although a unit they import from ran: cut off; units re-run with sources)."""
    ran = [r.source == ProcessResultMetadata.Source.RAN for r in reports]
    cut_off = sum(
        1 for i in range(len(reports))
        if not ran[i] and any(ran[graph.unit_of[f]] for f in graph.closure(i))
    )
    return cut_off, sum(r.recovered for r in reports)


def base_source(imports: Iterable[str]) -> str:
    """The base unit's file: `from a.b import c` for each imported name `a.b.c`, `import a` for `a`.

    Pants lists both `import a.b.c` and `from a.b import c` as `a.b.c`, a module or a name in one.
    `import a.b.c` of a name that is no module would make mypy record `a.b.c` as a missing module
    for the whole process, and every later `from a.b import c` of it, typeshed's own included
    (`typing` does `from abc import abstractmethod`), would then bind `c` to Any: the base cache
    would hold a typeshed with Any where its types are, and every unit would inherit it (wrong
    `no-any-return`, `has-type` errors). `from a.b import c` imports `a.b`, and `a.b.c` too if it
    is a module, and records nothing missing when `c` is a name; where it is neither, the error is
    this file's, which nobody reads."""
    lines = []
    for name in imports:
        package, _, last = name.rpartition(".")
        lines.append(f"from {package} import {last}\n" if package else f"import {name}\n")
    return "".join(lines)


def first_wins(entry_lists: Iterable[Iterable[FileEntry]]) -> tuple[FileEntry, ...]:
    """The union of cache files. A module is in one unit, so its files come from one process and
    never conflict; only two files of one module (`mod.py` and `mod.pyi`, in two units) can write
    one path. Then the stated rule: the list given first wins the path; callers list the
    dependencies' files in path order, then the base unit."""
    merged: dict[str, FileEntry] = {}
    for entries in entry_lists:
        for entry in entries:
            merged.setdefault(entry.path, entry)
    return tuple(merged.values())


def file_entries(entries: DigestEntries) -> dict[str, FileEntry]:
    return {e.path: e for e in entries if isinstance(e, FileEntry)}


def cache_prefix(graph: UnitGraph, file: str) -> str:
    """Where mypy --bazel writes the cache files of `file`, without their suffixes."""
    return graph.modules[file].replace(".", "/") + ("/__init__" if file.endswith(("__init__.py", "__init__.pyi")) else "")


def cache_files(graph: UnitGraph, files: Iterable[str]) -> list[str]:
    """Where mypy --bazel writes the cache files of `files` (those it writes: some of them)."""
    return [cache_prefix(graph, f) + suffix for f in files for suffix in CACHE_SUFFIXES]


def programs(*paths: str) -> list[FileContent]:
    """The in-sandbox programs, by their sandbox paths (`PROGRAMS_DIR/<name>.py`)."""
    contents = []
    for path in paths:
        program = pkgutil.get_data("cacheplug.mypy", PurePath(path).name)
        assert program is not None
        contents.append(FileContent(path, program))
    return contents


def wrap_unit(process: Process, bash: BashBinary) -> Process:
    return dataclasses.replace(
        process,
        argv=(bash.path, "-c", UNIT_WRAPPER, "mypy-unit", *process.argv),
        output_files=(*process.output_files, EXIT_CODE_FILE),
    )


@dataclass(frozen=True)
class ExitCodeRequest:
    result: FallibleProcessResult


@dataclass(frozen=True)
class ExitCode:
    code: int


@rule
async def mypy_exit_code(request: ExitCodeRequest) -> ExitCode:
    """mypy's own exit code, from a process wrapped by `wrap_unit`."""
    if request.result.exit_code:
        return ExitCode(request.result.exit_code)
    contents = await Get(
        DigestContents, DigestSubset(request.result.output_digest, PathGlobs([f"**/{EXIT_CODE_FILE}"]))
    )
    return ExitCode(int(contents[0].content) if contents else 2)


def cache_globs(*excluded: str) -> PathGlobs:
    return PathGlobs([*(f"**/*{s}" for s in CACHE_SUFFIXES), *(f"!{e}" for e in excluded)])


@rule(desc="Typecheck typeshed and requirements with MyPy (separate compilation)", level=LogLevel.DEBUG)
async def mypy_base_unit(request: BaseUnitRequest, bash: BashBinary) -> BaseUnit:
    """mypy on one file importing every module the partition imports from outside itself. Runs
    in a subdirectory, so that the cache it writes (mypy --bazel: the working directory) is the
    directory's contents (VenvPexProcess makes the argv for it, `BASE_WRAPPER` goes there); the
    type errors of that file (see `base_source`) are nobody's and are dropped. The paths its cache records are then made sandbox-relative (`cache_paths.py`)."""
    tool = request.tool
    source = base_source(request.imports)
    source_digest = await Get(
        Digest, CreateDigest([FileContent(f"{BASE_DIR}/{BASE_MODULE}.py", source.encode()), *programs(CACHE_PATHS)])
    )
    process = await Get(
        Process,
        VenvPexProcess(
            tool.pex,
            argv=(*tool.argv(root="../"), *SEPARATE_FLAGS, f"{BASE_MODULE}.py"),
            input_digest=await Get(Digest, MergeDigests([tool.digest, source_digest])),
            working_directory=BASE_DIR,
            extra_env={
                **tool.env,
                **SEPARATE_ENV,
                "PEX_EXTRA_SYS_PATH": ":".join(f"../{r}" for r in tool.plugin_roots),
                "PYTHON": f"../{tool.pex.python.path}",
            },
            description=f"Run MyPy on typeshed and {pluralize(len(request.imports), 'imported module')}",
            level=LogLevel.DEBUG,
        ),
    )
    process = dataclasses.replace(
        process,
        argv=(bash.path, "-c", BASE_WRAPPER, "mypy-base-unit", *process.argv),
        working_directory=None,
        output_directories=(BASE_DIR,),
    )
    result = await Get(FallibleProcessResult, Process, process)
    output = await Get(Digest, RemovePrefix(result.output_digest, BASE_DIR))
    cache = await Get(Digest, DigestSubset(output, cache_globs(f"{BASE_MODULE}.*")))
    return BaseUnit(cache, dataclasses.replace(result, output_digest=output))


async def _run_unit(request: UnitRequest, closure: tuple[str, ...], cached: tuple[str, ...],
                    given_cache: tuple[FileEntry, ...], sources: dict[str, FileEntry],
                    bash: BashBinary) -> FallibleProcessResult:
    """mypy on the unit's files, given `given_cache`, the real sources of its own files and of the
    modules of `closure` it has no cache for, and a placeholder for each of `cached`."""
    graph, tool = request.graph, request.tool
    files = graph.units[request.index]
    # One CreateDigest of file entries (digests the store has already): per-file DigestSubsets and
    # MergeDigests cost the engine a scan of the partition's sources per file, for every unit
    # after every edit (seconds per unit at 1000 modules).
    given_as_cache = set(cached)
    real = [sources[f] for f in (*files, *closure) if f not in given_as_cache]
    listing = "".join(f"{cache_prefix(graph, f)}\n" for f in cached).encode()
    inputs = await Get(Digest, CreateDigest([
        *given_cache, *real, *(FileContent(f, PLACEHOLDER) for f in cached),
        *programs(CACHE_PATHS, CUTOFF), FileContent(PLACEHOLDERS, listing),
    ]))
    input_digest = await Get(Digest, MergeDigests([tool.digest, inputs]))
    # A unit that no unit imports keeps no cache (mypy writes one; it stays in the sandbox): only
    # importers would read it, and it would cost a capture and space in the local and remote cache.
    keeps_cache = request.index in graph.imported
    metas = [o for o in cache_files(graph, files) if o.endswith((".meta.json", ".meta.ff"))] if keeps_cache else []
    # `$PYTHON` with a slash: bash would look a bare name up in PATH (or, without one, in `.`),
    # and Pants' python shim finds the sandbox by the path it was started as.
    process = await Get(
        Process,
        VenvPexProcess(
            tool.pex,
            argv=(*tool.argv(), *SEPARATE_FLAGS, *files),
            input_digest=input_digest,
            extra_env={**tool.env, **SEPARATE_ENV, "PEX_EXTRA_SYS_PATH": request.search_path,
                       "MYPYPATH": request.search_path, "PYTHON": os.path.join(".", tool.pex.python.path),
                       "OWN_METAS": " ".join(metas)},
            output_directories=(OUT_DIR,) if keeps_cache else (),
            description=f"Run MyPy on {files[0]}" + (f" and {pluralize(len(files) - 1, 'more file')}" if len(files) > 1 else ""),
            level=LogLevel.DEBUG,
        ),
    )
    return await Get(FallibleProcessResult, Process, wrap_unit(process, bash))


@rule(desc="Typecheck a unit with MyPy (separate compilation)", level=LogLevel.DEBUG)
async def mypy_unit(request: UnitRequest, bash: BashBinary, run_id: RunId) -> Unit:
    graph = request.graph
    files = graph.units[request.index]
    # The unit is given what the modules its files import, transitively, give it: not what
    # modules joined with them in other units do, so that an edit to one of those does not
    # change this unit's inputs (nor re-run it).
    closure = graph.closure(request.index)
    indexes = sorted({graph.unit_of[f] for f in closure})
    dep_units = dict(zip(indexes, await MultiGet(
        Get(Unit, UnitRequest(graph, d, request.tool, request.base, request.sources, request.search_path)) for d in indexes
    )))
    caches = {f: dep_units[graph.unit_of[f]].caches[f] for f in closure}
    sources, base = await MultiGet(  # the same two digests for every unit: the engine lists each once
        Get(DigestEntries, Digest, request.sources), Get(DigestEntries, Digest, request.base)
    )
    given_cache = first_wins([*(caches[f] for f in closure), file_entries(base).values()])
    # Early cutoff: a module that has a cache is given as its cache (normalized by its unit:
    # cutoff.py) and a placeholder source, so a body-only edit to it leaves this unit's inputs
    # as they were. mypy < 1.19 writes no cache for a module with errors or importing one: those
    # are given as sources (and re-analysed), as is everything if a placeholder was not enough.
    # Not before mypy 1.19: its metas record indirect dependencies by chance, and a given cache
    # whose chance dependency is re-checked in this unit makes mypy read the placeholder (then a
    # re-run with sources, whose outputs differ from another machine's: no sharing; seen in
    # remote_cache_integration_test with 1.1.1).
    cutoff = Version(request.tool.version) >= CUTOFF_SINCE
    cached = tuple(f for f in closure if cutoff and caches[f])
    source_entries = file_entries(sources)
    result = await _run_unit(request, closure, cached, given_cache, source_entries, bash)
    recovered = bool(cached) and result.exit_code != 0  # a placeholder was read, or mypy crashed
    elapsed: list[int | None] = [result.metadata.total_elapsed_ms]
    if recovered:
        result = await _run_unit(request, closure, (), given_cache, source_entries, bash)
        elapsed.append(result.metadata.total_elapsed_ms)
    outputs, exit_code = await MultiGet(
        Get(DigestEntries, Digest, result.output_digest),
        Get(ExitCode, ExitCodeRequest(result)),
    )
    stdout = result.stdout.decode(errors="replace")
    stderr = result.stderr.decode(errors="replace")
    output = "\n".join(own_lines(stdout, files)) if exit_code.code in (0, 1) else stdout + stderr
    unnormalized = re.search(r"early cutoff: normalized \d+ metas, left (\d+) as mypy wrote them", stderr)
    report = UnitReport(
        description=files[0],
        files=files,
        exit_code=exit_code.code,
        output=output,
        source=result.metadata.source(run_id),
        recovered=recovered,
        unnormalized=int(unnormalized.group(1)) if unnormalized else 0,
        elapsed_ms=None if None in elapsed else sum(e for e in elapsed if e is not None),
    )
    out = f"{OUT_DIR}/"
    written = {path[len(out):]: e for path, e in file_entries(outputs).items() if path.startswith(out)}
    own = {f: tuple(FileEntry(p, written[p].file_digest) for p in cache_files(graph, [f]) if p in written) for f in files}
    return Unit(FrozenDict(own), report)


@dataclass(frozen=True)
class PartitionGraphRequest:
    partition: MyPyPartition


@dataclass(frozen=True)
class PartitionGraph:
    graph: UnitGraph
    sources: Digest  # the partition's sources: the graph's files and any others (a .py hidden by its .pyi)
    search_path: str
    imports: tuple[str, ...]  # imported modules that no first-party file provides: the base unit's
    why: str  # why the units are what they are, for the log line


@rule(desc="Find mypy's import graph (separate compilation)", level=LogLevel.DEBUG)
async def partition_graph(request: PartitionGraphRequest, python_setup: PythonSetup, mypy: MyPy) -> PartitionGraph:
    """The unit graph of a partition's first-party files: every file whole-repo mypy would see
    (the partition's roots and their closure), from their imports (see unit_graph.py), batched
    to `[mypy].separate_compilation_unit_size`."""
    size = checked_unit_size(mypy.options.separate_compilation_unit_size)
    targets = [t for t in request.partition.root_targets.closure() if t.has_field(PythonSourceField)]
    sources = await Get(SourceFiles, SourceFilesRequest(t[PythonSourceField] for t in targets))
    py_files = determine_python_files(sources.snapshot.files)  # a .pyi hides its .py, as in whole-repo mode
    source_roots = await Get(SourceRootsResult, SourceRootsRequest.for_files(py_files))
    roots = {f: str(source_roots.path_to_root[PurePath(f)].path) for f in py_files}
    owners = {f: t for t in targets for f in [t[PythonSourceField].file_path] if f in roots}
    checked = sorted(owners)
    # The same requests as dependency inference's: already answered, from memory or Pants' cache.
    parsed = await MultiGet(
        Get(
            ParsedPythonDependencies,
            ParsePythonDependenciesRequest(
                owners[f][PythonSourceField],
                InterpreterConstraints.create_from_compatibility_fields([owners[f][InterpreterConstraintsField]], python_setup),
            ),
        )
        for f in checked
    )
    pants_deps = await MultiGet(Get(Targets, DependenciesRequest(owners[f][Dependencies])) for f in checked)
    modules = {f: module_name(module_prefix(f, roots[f])) for f in checked}
    imports = {f: list(p.imports) for f, p in zip(checked, parsed)}
    sccs = unit_graph(modules, imports)
    edges = import_edges(modules, imports, own_packages=False)
    missing = []
    for f, deps in zip(checked, pants_deps):
        listed = {t[PythonSourceField].file_path for t in deps if t.has_field(PythonSourceField)}
        missing += [(f, d) for d in sorted(edges[f] - listed)]
    # Pants' parser leaves `from __future__ import ...` out; without it in the base, every unit
    # that has one would analyse `__future__` again.
    external = external_imports([*(n for names in imports.values() for n in names), "__future__"], set(modules.values()))
    graph = batch(sccs, size)
    # All the sources, not a DigestSubset of the graph's: units look their files up by path, and a
    # subset by 1000 literal globs cost 0.24 s on every edit.
    return PartitionGraph(graph, sources.snapshot.digest, ":".join(sorted({*roots.values()})), tuple(external),
                          graph_summary(sccs, graph, size, missing))


def graph_summary(sccs: UnitGraph, graph: UnitGraph, size: int, missing: Iterable[tuple[str, str]]) -> str:
    """Why the units are what they are, for the log line."""
    cycles = [u for u in sccs.units if len(u) > 1]
    parts = []
    if graph is not sccs:
        parts.append(f"{len(sccs.units)} import-graph components joined into units of about {size} files")
    if cycles:
        largest = max(cycles, key=len)
        parts.append(f"{sum(map(len, cycles))} files in {pluralize(len(cycles), 'import cycle')}, each in one unit "
                     f"(largest: {largest[0]} and {len(largest) - 1} more)")
    missing = list(missing)
    if missing:
        examples = ", ".join(f"{a} imports {b}" for a, b in missing[:3])
        parts.append(f"{pluralize(len(missing), 'import')} that Pants' dependencies lack, followed as mypy does (e.g. {examples})")
    return "; ".join(parts)


def timeline(graph: UnitGraph, base_ms: int | None, reports: list[UnitReport]) -> str:
    """The units' DAG with each unit's process time, as one JSON object: what a cold check's
    critical path and its time on more machines follow from (bench/remote_exec_bench.py). A unit
    waits for the units of every module in its closure (see mypy_unit), and all for the base."""
    return json.dumps({
        "base_ms": base_ms,
        "units": [
            {"first": r.description, "files": len(r.files), "ms": r.elapsed_ms, "source": r.source.value,
             "after": sorted({graph.unit_of[f] for f in graph.closure(i)})}
            for i, r in enumerate(reports)
        ],
    })


@rule(desc="Typecheck using MyPy (separate compilation)", level=LogLevel.DEBUG)
async def mypy_separate_check(request: SeparateCheckRequest, global_options: GlobalOptions) -> CheckResult:
    partition, tool = request.partition, request.tool
    found = await Get(PartitionGraph, PartitionGraphRequest(partition))
    graph = found.graph
    base = await Get(BaseUnit, BaseUnitRequest(tool, found.imports))
    base_exit = await Get(ExitCode, ExitCodeRequest(base.result))
    results = await MultiGet(
        Get(Unit, UnitRequest(graph, i, tool, base.cache, found.sources, found.search_path))
        for i in range(len(graph.units))
    )
    reports = [u.report for u in results]
    if logger.isEnabledFor(logging.DEBUG):  # e.g. --log-levels-by-target="{'cacheplug.mypy.separate': 'debug'}"
        logger.debug(f"mypy separate compilation timeline: {timeline(graph, base.result.metadata.total_elapsed_ms, reports)}")
    cut_off, recovered = cutoff_counts(graph, reports)
    unnormalized = sum(r.unnormalized for r in reports)
    if unnormalized:  # results stay right; only edits re-run more than they need to
        logger.warning(
            f"mypy separate compilation [{partition_label(partition, tool)}]: mypy {tool.version}'s cache of "
            f"{pluralize(unnormalized, 'module')} could not be normalized (see cutoff.py): no early cutoff for them"
        )
    kept = re.search(rb"left ([1-9][0-9]*) absolute", base.result.stderr)
    if kept:  # results stay right; only other machines will not share this base unit's units
        logger.warning(
            f"mypy separate compilation [{partition_label(partition, tool)}]: {kept.group(1).decode()} modules of the "
            "base unit keep an absolute path in their cache (see cache_paths.py): units are not shared with "
            "machines whose named caches are elsewhere"
        )
    if base_exit.code not in (0, 1):  # a crash: say so; the units re-analyse what it lacks
        reports.insert(0, UnitReport("base unit", (), base_exit.code,
                                     (base.result.stdout + base.result.stderr).decode(errors="replace"),
                                     ProcessResultMetadata.Source.RAN))
    exit_code, stdout = summary(reports)
    ran = sum(r.source == ProcessResultMetadata.Source.RAN for r in reports)
    remote = sum(r.source == ProcessResultMetadata.Source.HIT_REMOTELY for r in reports)
    why = found.why
    logger.info(
        f"mypy separate compilation [{partition_label(partition, tool)}]: {pluralize(len(reports), 'unit')}, "
        f"{ran} ran, {len(reports) - ran} reused from Pants' process cache ({remote} from the remote cache, "
        f"{cut_off} of them although a unit they import from ran: early cutoff)"
        + (f", {recovered} re-ran with sources (a dependency's cache was not enough, or mypy crashed)" if recovered else "")
        + (f"; {why}" if why else "")
    )
    return CheckResult(
        exit_code=exit_code,
        stdout=stdout if global_options.colors else ANSI.sub("", stdout),
        stderr="",
        partition_description=partition.description(),
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
