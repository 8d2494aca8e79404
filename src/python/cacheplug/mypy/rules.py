"""`pants check` with mypy, running each partition through cacheplug's shared cache.

Everything but the per-partition run is Pants' own mypy backend (partitioning by resolve and
interpreter constraints, the `[mypy]` subsystem, lockfiles, export: `REUSED_PANTS_RULES` and the
backend's register.py); this replaces Pants' run. Pants 2.17.1's own run names a cache it never
reuses (its script copies mypy's SQLite cache out of a named cache that is never created, so
every run is cold; bench/RESULTS.md).

Cache layout choice: mypy's per-module files (`--no-sqlite-cache`; JSON in 1.x, fixed-format
`.ff` by default in 2.x). mypy writes each of them to a temp file and renames it over the old one,
so the sandbox copy can be hardlinks, and a module's files commit as one group. Passed last,
`--no-sqlite-cache` overrides a user's `sqlite_cache = True`.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from typing import Iterable

from packaging.version import Version  # pants: no-infer-dep (ships with Pants)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.typecheck.mypy import rules as pants_mypy_rules
from pants.backend.python.typecheck.mypy.rules import MyPyPartition, MyPyRequest, determine_python_files
from pants.backend.python.typecheck.mypy.subsystem import (
    MyPy,
    MyPyConfigFile,
    MyPyFirstPartyPlugins,
)
from pants.backend.python.util_rules import pex_from_targets
from pants.backend.python.util_rules.pex import (
    Pex,
    PexRequest,
    PexResolveInfo,
    VenvPex,
    VenvPexProcess,
)
from pants.backend.python.util_rules.pex_from_targets import RequirementsPexRequest
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
)
from pants.core.goals.check import REPORT_DIR, CheckRequest, CheckResult
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import Process
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.option.global_options import GlobalOptions
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import pluralize

from cacheplug.engine import CachedProcessRequest, CachedProcessResult, CacheSpec, CacheTool
from cacheplug.mypy import separate
from cacheplug.mypy.separate import MyPyTool, SeparateCheckRequest, partition_label
from cacheplug.mypy.subsystem import checked_unit_size
from cacheplug.subsystem import SharedCache

logger = logging.getLogger(__name__)

# Pants' own mypy rules this backend keeps (partitioning, and the `check` entry point that runs
# each partition); its per-partition run is replaced by `mypy_typecheck_partition` below.
REUSED_PANTS_RULES = (pants_mypy_rules.mypy_determine_partitions, pants_mypy_rules.mypy_typecheck)


class MyPyCacheTool(CacheTool):
    name = "mypy"
    policy = "cacheplug.mypy.cache_policy"

# mypy >= 1.19 records each dependency's interface hash in a module's meta and re-checks the module
# when one differs, so modules committed by different runs can be mixed safely. Older mypy compares
# timestamps across modules instead, so its cache is kept a sequence of whole runs.
MIXABLE_ENTRIES_SINCE = Version("1.19")
# mypy's exit codes: 0 clean, 1 type errors (its cache is valid), 2 crash or usage error.
COMMIT_EXIT_CODES = (0, 1)
# mypy's hash of a source file (`hash_digest`, recorded in metas) is sha1 from 1.14, sha256 before.
SHA1_SINCE = Version("1.14")
FILE_LIST = "__files.txt"  # the files to check, one per line (mypy reads `@FILE_LIST`)
QUICKSTART = "__cacheplug_quickstart.json"  # written by cache_policy.prepare in the sandbox


STABLE_PYTHON = "./__cacheplug_stable_python.sh"


def mypy_cache_spec(scope: tuple[str, ...], mypy_version: Version, shared_cache: SharedCache) -> CacheSpec:
    """The cache spec of one mypy partition; `scope` holds what else changes mypy's cache."""
    return CacheSpec(
        tool=MyPyCacheTool.name,
        scope=(f"mypy=={mypy_version}", *scope),
        mode=shared_cache,
        commit_exit_codes=COMMIT_EXIT_CODES,
        # Groups, rewrites that are no change, modules whose cache incremental mypy would
        # misread, and mypy's quickstart file: see there.
        policy=MyPyCacheTool.policy,
        policy_config=FrozenDict(
            {"sources": FILE_LIST, "quickstart": QUICKSTART, "hash": "sha1" if mypy_version >= SHA1_SINCE else "sha256"}
        ),
        snapshot_consistency=mypy_version < MIXABLE_ENTRIES_SINCE,
    )


def mypy_cache_args(spec: CacheSpec) -> list[str]:
    """mypy's flags for the cache, after the user's own (later flags win)."""
    if spec.mode == SharedCache.off:
        return ["--cache-dir=/dev/null"]  # mypy writes no cache there
    # Sandbox files get fresh mtimes every run: mypy's hash check stays on (fed by the quickstart
    # file), its check of the data file's mtime goes.
    return [
        "--skip-cache-mtime-checks", "--no-sqlite-cache", f"--cache-dir={spec.sandbox_dir}", f"--quickstart-file={QUICKSTART}",
    ]


def mypy_inputs(python_files: Iterable[str]) -> list[FileContent]:
    """The file list mypy checks (`@FILE_LIST`), and an empty quickstart file, which the cache
    policy replaces (mypy warns if the file is missing, e.g. when setup died)."""
    return [FileContent(FILE_LIST, "\n".join(python_files).encode()), FileContent(QUICKSTART, b"{}")]


def _stable_python(venv: VenvPex, bash: BashBinary) -> FileContent:
    """The requirements venv's Python, run by its real path.

    mypy records each module's path in its cache and re-hashes the source (then rewrites the
    module's meta) when the path differs. Run through the sandbox's `.cache/pex_root` symlink, the
    venv's site-packages would have a new path in every sandbox; by its real path it is stable.
    Paths are relative to the script (the sandbox root), whatever mypy's working directory. The
    venv is made on first use (its pex build, when it came from a cache, did not make it) from the
    sandbox root: pex resolves the requirements PEX it layers on relative to the working directory.
    """
    venv_dir = f'"$root"/{shlex.quote(f".cache/pex_root/{venv.venv_rel_dir}")}'
    script = f"""\
#!{bash.path}
root="${{0%/*}}"
[ -e {venv_dir} ] || (cd "$root" && {shlex.quote(venv.python.argv0)} -c '') || exit
exec "$(cd {venv_dir} && pwd -P)/bin/python" "$@"
"""
    return FileContent(STABLE_PYTHON[2:], script.encode(), is_executable=True)


# mypy's own order of preference among the config files Pants discovers.
CONFIG_FILES = ("mypy.ini", ".mypy.ini", "pyproject.toml", "setup.cfg")


@dataclass(frozen=True)
class MyPyToolRequest:
    partition: MyPyPartition


@rule
async def mypy_tool(
    request: MyPyToolRequest,
    config_file: MyPyConfigFile,
    first_party_plugins: MyPyFirstPartyPlugins,
    mypy: MyPy,
    python_setup: PythonSetup,
    bash: BashBinary,
) -> MyPyTool:
    """The mypy, requirements and flags of a partition; the same for both modes."""
    partition = request.partition
    # As in Pants' backend: run mypy under the code's own interpreter constraints when they need
    # Python >= 3.8 and the user did not set mypy's.
    tool_interpreter_constraints = (
        partition.interpreter_constraints
        if (
            mypy.options.is_default("interpreter_constraints")
            and partition.interpreter_constraints.requires_python38_or_newer(
                python_setup.interpreter_versions_universe
            )
        )
        else mypy.interpreter_constraints
    )
    mypy_pex, extra_type_stubs_pex, requirements_pex, config_snapshot = await MultiGet(
        Get(
            VenvPex,
            PexRequest,
            mypy.to_pex_request(
                interpreter_constraints=tool_interpreter_constraints,
                extra_requirements=first_party_plugins.requirement_strings,
            ),
        ),
        Get(Pex, PexRequest, mypy.extra_type_stubs_pex_request(partition.interpreter_constraints)),
        Get(
            Pex,
            RequirementsPexRequest(
                (fs.address for fs in partition.field_sets),
                hardcoded_interpreter_constraints=partition.interpreter_constraints,
            ),
        ),
        Get(Snapshot, Digest, config_file.digest),
    )
    # The third-party requirements venv that mypy resolves imports in (`--python-executable`).
    requirements_venv_pex, mypy_info = await MultiGet(
        Get(
            VenvPex,
            PexRequest(
                output_filename="requirements_venv.pex",
                internal_only=True,
                pex_path=[requirements_pex, extra_type_stubs_pex],
                interpreter_constraints=partition.interpreter_constraints,
            ),
        ),
        Get(PexResolveInfo, VenvPex, mypy_pex),
    )
    mypy_dist = mypy_info.find("mypy")
    assert mypy_dist is not None
    py_version = config_file.python_version_to_autoset(
        partition.interpreter_constraints, python_setup.interpreter_versions_universe
    )
    # Named explicitly, so that a mypy run in a subdirectory of the sandbox finds it too.
    config = mypy.config or next((f for f in CONFIG_FILES if f in config_snapshot.files), None)
    digest = await Get(
        Digest,
        MergeDigests(
            [
                first_party_plugins.sources_digest,
                requirements_venv_pex.digest,
                config_file.digest,
                await Get(Digest, CreateDigest([_stable_python(requirements_venv_pex, bash)])),
            ]
        ),
    )
    return MyPyTool(
        pex=mypy_pex,
        version=str(mypy_dist.version),
        python_version=py_version,
        flags=(*mypy.args, *([f"--python-version={py_version}"] if py_version else [])),
        config_file=config,
        digest=digest,
        python_executable=STABLE_PYTHON,
        plugin_roots=tuple(first_party_plugins.source_roots),
        env=FrozenDict(
            {
                # As in Pants' backend: always color (post-processed), ansi escapes, no wrapping.
                "MYPY_FORCE_COLOR": "1",
                "TERM": "ansi",
                "MYPY_FORCE_TERMINAL_WIDTH": "642092230765939",
            }
        ),
    )


@rule(desc="Typecheck using MyPy (cacheplug)", level=LogLevel.DEBUG)
async def mypy_typecheck_partition(
    partition: MyPyPartition,
    config_file: MyPyConfigFile,
    first_party_plugins: MyPyFirstPartyPlugins,
    mypy: MyPy,
    global_options: GlobalOptions,
) -> CheckResult:
    checked_unit_size(mypy.options.separate_compilation_unit_size)  # a bad value fails either way
    tool = await Get(MyPyTool, MyPyToolRequest(partition))
    if mypy.options.separate_compilation:
        return await Get(CheckResult, SeparateCheckRequest(partition, tool))
    roots_sources, closure_sources = await MultiGet(
        Get(SourceFiles, SourceFilesRequest(fs.sources for fs in partition.field_sets)),
        Get(PythonSourceFiles, PythonSourceFilesRequest(partition.root_targets.closure())),
    )
    python_files = determine_python_files(roots_sources.snapshot.files)
    file_list_digest = await Get(Digest, CreateDigest(mypy_inputs(python_files)))
    spec = mypy_cache_spec(
        (
            partition.description(),
            f"python={tool.python_version}",
            *mypy.args,
            config_file.digest.fingerprint,
            first_party_plugins.sources_digest.fingerprint,
        ),
        Version(tool.version),
        mypy.options.shared_cache,
    )
    argv = [*tool.argv(), *mypy_cache_args(spec), f"@{FILE_LIST}"]
    input_digest = await Get(
        Digest,
        MergeDigests([file_list_digest, tool.digest, closure_sources.source_files.snapshot.digest]),
    )
    source_roots = ":".join(sorted({*tool.plugin_roots, *closure_sources.source_roots}))
    process = await Get(
        Process,
        VenvPexProcess(
            tool.pex,
            argv=argv,
            input_digest=input_digest,
            extra_env={**tool.env, "PEX_EXTRA_SYS_PATH": source_roots, "MYPYPATH": source_roots},
            output_directories=(REPORT_DIR,),
            description=f"Run MyPy on {pluralize(len(python_files), 'file')}.",
            level=LogLevel.DEBUG,
        ),
    )
    # Logs e.g. "mypy cache [python-default, py3.11]: 412 reused, 3 written, ..."
    cached = await Get(CachedProcessResult, CachedProcessRequest(process, spec, partition_label(partition, tool)))
    result = cached.result
    report_dir = await Get(Digest, DigestSubset(result.output_digest, PathGlobs([f"{REPORT_DIR}/**"])))
    report = await Get(Digest, RemovePrefix(report_dir, REPORT_DIR))
    return CheckResult.from_fallible_process_result(
        result,
        partition_description=partition.description(),
        report=report,
        strip_formatting=not global_options.colors,
    )


def rules() -> Iterable[Rule | UnionRule]:
    return [
        *collect_rules(),
        *collect_rules({r.__name__: r for r in REUSED_PANTS_RULES}),
        *separate.rules(),
        UnionRule(CheckRequest, MyPyRequest),
        UnionRule(CacheTool, MyPyCacheTool),
        *pex_from_targets.rules(),
    ]
