"""Separate compilation for mypy: one hermetic, cacheable mypy process per coarsened target.

`[mypy].separate_compilation = true` replaces a partition's one big mypy run with:
  - a base unit, per partition (resolve, interpreter, mypy version, args, config, plugins): mypy on
    one generated file that imports every module the partition's code imports from outside
    itself, so typeshed and the third-party requirements are analysed once;
  - a unit per coarsened target (an import cycle is one unit), in dependency order, independent
    units concurrently: mypy on the target's own files, given the base unit's cache, the cache
    outputs of its transitive dependencies and their sources. Its output: its own modules' cache
    files only. Pants' process cache (local, and remote) then reuses each unit whose inputs did
    not change.

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
import logging
import pkgutil
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Iterable, Optional

from pants.backend.python.dependency_inference.parse_python_dependencies import (
    ParsedPythonDependencies,
    ParsePythonDependenciesRequest,
)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import InterpreterConstraintsField, PythonSourceField
from pants.backend.python.typecheck.mypy.rules import MyPyPartition, determine_python_files
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import VenvPex, VenvPexProcess
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
)
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
from pants.engine.target import CoarsenedTarget, CoarsenedTargets, CoarsenedTargetsRequest
from pants.option.global_options import GlobalOptions
from pants.source.source_root import SourceRootsRequest, SourceRootsResult
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import pluralize

# A module's cache files, by its path prefix (`pkg/mod`, `pkg/__init__`): JSON in 1.x, fixed
# format in 2.x, and the `meta_ex` file that mypy 1.20+ writes beside the meta.
CACHE_SUFFIXES = (".meta.json", ".data.json", ".meta_ex.json", ".meta.ff", ".data.ff", ".meta_ex.ff")
EXIT_CODE_FILE = "__cacheplug_mypy_exit_code"
BASE_DIR = "__cacheplug_base"
BASE_MODULE = "__cacheplug_base__"
CACHE_PATHS = "__cacheplug_cache_paths.py"
# Exits 0 for mypy's 0 (clean) and 1 (type errors), recording which: both results are cacheable.
UNIT_WRAPPER = f'"$@"; rc=$?; echo $rc > {EXIT_CODE_FILE}; [ $rc -le 1 ] && exit 0; exit $rc'
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
    target: CoarsenedTarget
    tool: MyPyTool
    base: Digest


@dataclass(frozen=True)
class UnitReport:
    description: str
    files: tuple[str, ...]
    exit_code: int  # mypy's: 0, 1, or a crash
    output: str  # this unit's own diagnostics (or everything, for a crash)
    source: ProcessResultMetadata.Source  # RAN, or where Pants' process cache had it


@dataclass(frozen=True)
class Unit:
    closure_cache: Digest  # own modules' cache + the dependencies' closures
    report: Optional[UnitReport]  # None: no files for mypy (a requirement, resources, ...)


def module_prefix(path: str, source_root: str) -> str:
    """`src/python/pkg/mod.py` under root `src/python` -> `pkg/mod`: where mypy --bazel puts the
    module's cache files."""
    rel = path if source_root in ("", ".") else path[len(source_root) + 1:]
    return rel.rsplit(".", 1)[0]


def first_party_modules(files: Iterable[str], roots: dict[str, str]) -> set[str]:
    return {module_prefix(f, roots[f]).replace("/", ".").removesuffix(".__init__") for f in files}


def external_imports(imports: Iterable[str], first_party: set[str]) -> list[str]:
    """The imports that no first-party module provides: `a.b.c` is first-party if `a.b.c`, `a.b`
    or `a` is a first-party module (`from pkg.mod import name` parses as `pkg.mod.name`)."""
    def provided(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in first_party for i in range(1, len(parts) + 1))
    return sorted({i for i in imports if not provided(i)})


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


def first_wins(entry_lists: Iterable[Iterable[FileEntry]]) -> list[FileEntry]:
    """Merges entries, the first list holding a path winning it (see `merge_caches`)."""
    merged: dict[str, FileEntry] = {}
    for entries in entry_lists:
        for entry in entries:
            merged.setdefault(entry.path, entry)
    return list(merged.values())


@dataclass(frozen=True)
class CacheMergeRequest:
    digests: tuple[Digest, ...]


@rule
async def merge_caches(request: CacheMergeRequest) -> Digest:
    """The union of cache digests. A module is in one unit, so its files come from one process
    and never conflict; only a file owned by two targets (two units check it) can differ. Then the
    stated rule: the digest listed first wins; callers list a unit's own outputs first, then its
    dependencies ordered by address."""
    try:
        return await Get(Digest, MergeDigests(request.digests))
    except Exception:  # the engine refuses a merge of different files at one path
        entries = await MultiGet(Get(DigestEntries, Digest, d) for d in request.digests)
        files = first_wins([e for e in es if isinstance(e, FileEntry)] for es in entries)
        return await Get(Digest, CreateDigest(files))


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
    type errors of that file (`from pkg import name` is listed as `import pkg.name`) are nobody's
    and are dropped. The paths its cache records are then made sandbox-relative (`cache_paths.py`)."""
    tool = request.tool
    source = "".join(f"import {name}\n" for name in request.imports)
    cache_paths = pkgutil.get_data("cacheplug.mypy", "cache_paths.py")
    assert cache_paths is not None
    source_digest = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(f"{BASE_DIR}/{BASE_MODULE}.py", source.encode()),
                FileContent(CACHE_PATHS, cache_paths),
            ]
        ),
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


@rule(desc="Typecheck a target with MyPy (separate compilation)", level=LogLevel.DEBUG)
async def mypy_unit(request: UnitRequest, bash: BashBinary, run_id: RunId) -> Unit:
    ct, tool = request.target, request.tool
    dependencies = sorted(ct.dependencies, key=lambda d: d.representative.address)
    dep_units = await MultiGet(Get(Unit, UnitRequest(d, tool, request.base)) for d in dependencies)
    deps_cache = await Get(Digest, CacheMergeRequest(tuple(u.closure_cache for u in dep_units)))
    own = [t[PythonSourceField] for t in ct.members if t.has_field(PythonSourceField)]
    if not own:  # a requirement, resources, ...: passes its dependencies' caches on
        return Unit(deps_cache, None)
    own_sources, closure_sources = await MultiGet(
        Get(SourceFiles, SourceFilesRequest(own)),
        Get(PythonSourceFiles, PythonSourceFilesRequest(ct.closure())),
    )
    files = determine_python_files(own_sources.snapshot.files)
    if not files:
        return Unit(deps_cache, None)
    roots = await Get(SourceRootsResult, SourceRootsRequest.for_files(files))
    outputs = [
        module_prefix(f, str(roots.path_to_root[PurePath(f)].path)) + suffix
        for f in files
        for suffix in CACHE_SUFFIXES
    ]
    given_cache = await Get(Digest, CacheMergeRequest((deps_cache, request.base)))
    input_digest = await Get(
        Digest, MergeDigests([tool.digest, given_cache, closure_sources.source_files.snapshot.digest])
    )
    search_path = ":".join(sorted({*tool.plugin_roots, *closure_sources.source_roots}))
    process = await Get(
        Process,
        VenvPexProcess(
            tool.pex,
            argv=(*tool.argv(), *SEPARATE_FLAGS, *files),
            input_digest=input_digest,
            extra_env={**tool.env, **SEPARATE_ENV, "PEX_EXTRA_SYS_PATH": search_path, "MYPYPATH": search_path},
            output_files=tuple(outputs),
            description=f"Run MyPy on {ct.representative.address} ({pluralize(len(files), 'file')})",
            level=LogLevel.DEBUG,
        ),
    )
    result = await Get(FallibleProcessResult, Process, wrap_unit(process, bash))
    own_cache, exit_code = await MultiGet(
        Get(Digest, DigestSubset(result.output_digest, cache_globs())),
        Get(ExitCode, ExitCodeRequest(result)),
    )
    stdout = result.stdout.decode(errors="replace")
    output = (
        "\n".join(own_lines(stdout, files))
        if exit_code.code in (0, 1)
        else stdout + result.stderr.decode(errors="replace")
    )
    report = UnitReport(
        description=ct.representative.address.spec,
        files=files,
        exit_code=exit_code.code,
        output=output,
        source=result.metadata.source(run_id),
    )
    return Unit(await Get(Digest, CacheMergeRequest((own_cache, deps_cache))), report)


def _closure(roots: Iterable[CoarsenedTarget]) -> list[CoarsenedTarget]:
    seen: dict[CoarsenedTarget, None] = {}
    for root in roots:
        for ct in root.coarsened_closure():
            seen.setdefault(ct, None)
    return sorted(seen, key=lambda ct: ct.representative.address)


@rule(desc="Typecheck using MyPy (separate compilation)", level=LogLevel.DEBUG)
async def mypy_separate_check(
    request: SeparateCheckRequest, python_setup: PythonSetup, global_options: GlobalOptions
) -> CheckResult:
    partition, tool = request.partition, request.tool
    roots = await Get(CoarsenedTargets, CoarsenedTargetsRequest(fs.address for fs in partition.field_sets))
    units = _closure(roots)
    targets = [t for ct in units for t in ct.members if t.has_field(PythonSourceField)]
    sources = await Get(SourceFiles, SourceFilesRequest(t[PythonSourceField] for t in targets))
    py_files = [f for f in sources.snapshot.files if f.endswith((".py", ".pyi"))]
    source_roots = await Get(SourceRootsResult, SourceRootsRequest.for_files(py_files))
    # The same requests as dependency inference's: already answered, from memory or Pants' cache.
    parsed = await MultiGet(
        Get(
            ParsedPythonDependencies,
            ParsePythonDependenciesRequest(
                t[PythonSourceField],
                InterpreterConstraints.create_from_compatibility_fields(
                    [t[InterpreterConstraintsField]], python_setup
                ),
            ),
        )
        for t in targets
    )
    first_party = first_party_modules(
        py_files, {f: str(source_roots.path_to_root[PurePath(f)].path) for f in py_files}
    )
    # Pants' parser leaves `from __future__ import ...` out; without it in the base, every unit
    # that has one would analyse `__future__` again.
    imports = external_imports([*(name for p in parsed for name in p.imports), "__future__"], first_party)
    base = await Get(BaseUnit, BaseUnitRequest(tool, tuple(imports)))
    base_exit = await Get(ExitCode, ExitCodeRequest(base.result))
    results = await MultiGet(Get(Unit, UnitRequest(ct, tool, base.cache)) for ct in units)
    reports = [u.report for u in results if u.report]
    if base_exit.code not in (0, 1):  # a crash: say so; the units re-analyse what it lacks
        reports.insert(0, UnitReport("base unit", (), base_exit.code,
                                     (base.result.stdout + base.result.stderr).decode(errors="replace"),
                                     ProcessResultMetadata.Source.RAN))
    exit_code, stdout = summary(reports)
    ran = sum(r.source == ProcessResultMetadata.Source.RAN for r in reports)
    remote = sum(r.source == ProcessResultMetadata.Source.HIT_REMOTELY for r in reports)
    logger.info(
        f"mypy separate compilation [{partition_label(partition, tool)}]: {pluralize(len(reports), 'unit')}, "
        f"{ran} ran, {len(reports) - ran} reused from Pants' process cache ({remote} from the remote cache)"
    )
    return CheckResult(
        exit_code=exit_code,
        stdout=stdout if global_options.colors else ANSI.sub("", stdout),
        stderr="",
        partition_description=partition.description(),
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
