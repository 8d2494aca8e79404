"""The tool-backend contract: run a tool's `Process` with a persistent, shared cache.

A tool backend (e.g. `cacheplug.mypy`):
  - adds `SharedCacheOptions` to its tool's options (`register_plugin_options`);
  - registers a `CacheTool` union member naming its tool, so that the lifecycle goals know it;
  - keeps its policy (grouping, what counts as no change, what to withhold) in a module of its
    own, standard library only, which runs in the sandbox next to the store (`store/policy.py`);
  - runs its process with one request:

        cached = await Get(CachedProcessResult, CachedProcessRequest(process, spec, label))

    which wraps the process (unless the cache is off), runs it, reads what the cache did, logs
    one line (`mypy cache [label]: ...`) and any warnings, and returns the result and report.

The wrapped process runs a small shell shim in the sandbox, with the tool's argv as its own
arguments ("$@": Pants' argv templates such as `{pants_concurrency}` keep working):
  1. setup: the store gives the tool a private copy of the shared cache at `spec.sandbox_dir`
     (hardlinks of immutable objects);
  2. the tool's own argv, whose exit code the shim returns exactly (128+N for a signal);
  3. teardown, only for `spec.commit_exit_codes`: the store merges what the tool wrote back
     into the shared cache (see `store/` for the protocol and the races it defends against).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pkgutil
from dataclasses import dataclass
from typing import ClassVar, Iterable, Optional

from pants.base.build_root import BuildRoot
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.fs import (
    EMPTY_DIGEST, CreateDigest, Digest, DigestContents, DigestSubset, FileContent, MergeDigests, PathGlobs,
)
from pants.engine.internals.session import RunId
from pants.engine.process import FallibleProcessResult, Process, ProcessResultMetadata
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.unions import UnionRule, union
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import shell_quote

from cacheplug.store import SANDBOX_MODULES
from cacheplug.store.spec import Spec
from cacheplug.subsystem import CachePlug, SharedCache

logger = logging.getLogger(__name__)

NAMED_CACHE = "cacheplug"
NAMED_CACHE_SANDBOX_PATH = ".cache/cacheplug"
WORK_DIR = ".cacheplug"
REPORT_PATH = f"{WORK_DIR}/report.json"
POLICY_PATH = f"{WORK_DIR}/policy.py"
STORE_SPEC_PATH = f"{WORK_DIR}/store-spec.json"
SHIM_PATH = f"{WORK_DIR}/shim.sh"


@union
class CacheTool:
    """A tool with a cacheplug backend: members set `name` (the tool's directory in the named
    cache, `CacheSpec.tool`) and `policy` (its policy module, `CacheSpec.policy`). The lifecycle
    goals enumerate the members."""

    name: ClassVar[str]
    policy: ClassVar[Optional[str]] = None


@dataclass(frozen=True)
class CacheSpec:
    """How a tool uses its cache. Everything that changes what the tool writes belongs in
    `scope`; the buildroot is added unless `buildroot_in_scope` is False (then checkouts of one
    repo share a scope, and the process key names no checkout)."""

    tool: str
    scope: tuple[str, ...]
    mode: SharedCache = SharedCache.read_write
    sandbox_dir: str = f"{WORK_DIR}/cache"  # the tool's private copy; point the tool here
    commit_exit_codes: tuple[int, ...] = (0,)
    # The tool's cache policy: a module (standard library only) that the store runs in the
    # sandbox (see store/policy.py), and a JSON-able config its `prepare` gets.
    policy: Optional[str] = None
    policy_config: FrozenDict[str, object] = FrozenDict()
    # True if the tool judges freshness by timestamps across entries, so entries from different
    # runs must not mix: a commit is skipped if another one landed since this run's setup.
    snapshot_consistency: bool = False
    buildroot_in_scope: bool = True


@dataclass(frozen=True)
class CachedProcessRequest:
    process: Process
    spec: CacheSpec
    label: str  # how the log line names this run, e.g. "python-default, py3.11"


@dataclass(frozen=True)
class CacheReport:
    given: int  # entries given to the tool
    reused: int  # of those, the ones it left untouched (read-only: all given)
    written: int
    rewritten: int  # given, then rewritten with no change
    withheld: int  # not given: the tool's policy
    skipped: int  # bad or vanished entries
    lock_wait_ms: int
    warnings: tuple[str, ...]
    from_process_cache: bool
    # Where the process's time went: the store's setup and commit, and the whole process (shim,
    # tool, Python start-ups); None when Pants does not know it.
    setup_ms: int = 0
    commit_ms: int = 0
    process_ms: Optional[int] = None

    def summary(self) -> str:
        text = (
            f"{self.given} given, {self.reused} reused, {self.written} written, {self.rewritten} rewritten unchanged, "
            f"{self.withheld} withheld, {self.skipped} skipped, lock wait {self.lock_wait_ms} ms"
        )
        if self.from_process_cache:
            return text + " (replayed from Pants' process cache)"
        process = f" of a {self.process_ms} ms process" if self.process_ms is not None else ""
        return text + f"; setup {self.setup_ms} ms, commit {self.commit_ms} ms{process}"


@dataclass(frozen=True)
class CachedProcessResult:
    result: FallibleProcessResult
    report: Optional[CacheReport]  # None if the shared cache is off


def scope_id(build_root: str, tool: str, parts: Iterable[str]) -> str:
    """A scope's directory name. From its description alone, so a snapshot made in one checkout
    can be imported into another (see snapshot.py)."""
    return hashlib.sha256(json.dumps([build_root, tool, *parts]).encode()).hexdigest()[:24]


def scope_build_root(spec: CacheSpec, build_root: str) -> str:
    return build_root if spec.buildroot_in_scope else ""


def scope_descriptor(spec: CacheSpec, build_root: str) -> str:
    """What the scope is for, saved as its scope.json: read by cache-info and snapshot import."""
    return json.dumps(
        {"tool": spec.tool, "parts": list(spec.scope), "buildroot": scope_build_root(spec, build_root), "policy": spec.policy},
        sort_keys=True,
    )


def sandbox_scope_dir(spec: CacheSpec, build_root: str) -> str:
    """Where the spec's cache scope is, relative to the sandbox."""
    return f"{NAMED_CACHE_SANDBOX_PATH}/{spec.tool}/{scope_id(scope_build_root(spec, build_root), spec.tool, spec.scope)}"


def store_spec(spec: CacheSpec, build_root: str, lock_timeout: float, max_size: int) -> Spec:
    """What the store is told (store/spec.py)."""
    return Spec(
        scope=sandbox_scope_dir(spec, build_root),
        dest=spec.sandbox_dir,
        manifest=f"{WORK_DIR}/manifest.json",
        report=REPORT_PATH,
        policy=POLICY_PATH if spec.policy else None,
        policy_config=dict(spec.policy_config),
        lock_timeout=lock_timeout,
        max_size=max_size,
        snapshot=spec.snapshot_consistency,
        describe=scope_descriptor(spec, build_root),
    )


def shim_script(spec: CacheSpec, python: str) -> str:
    """The shell shim: `store setup`, the tool (`"$@"`), `store commit`; exits with the tool's code."""
    def store(command: str) -> str:
        # -I: no user site or environment; the store's package is imported from the sandbox.
        program = "import sys; sys.path.insert(0, '.cacheplug'); from store.cli import main; sys.exit(main(sys.argv[1:]))"
        return " ".join(shell_quote(a) for a in [python, "-I", "-S", "-c", program, command, STORE_SPEC_PATH])

    commit = (
        # `|| true`: the cache never fails the build.
        f'case " {" ".join(map(str, spec.commit_exit_codes))} " in *" $rc "*) {{ {store("commit")}; }} 2>/dev/null || true ;; esac'
        if spec.mode == SharedCache.read_write
        else "# read-only: nothing is committed"
    )
    return "\n".join(
        [
            "# cacheplug shim: seed the tool's cache, run the tool (\"$@\"), commit; exit with the tool's code.",
            # The store exits 0 unless it died (killed, no interpreter): then a group may be half
            # seeded, so the tool runs cold, and commit finds no manifest and commits nothing.
            f"{{ {store('setup')}; }} 2>/dev/null || rm -rf -- {shell_quote(spec.sandbox_dir)}",
            # The `{ } 3>&2 2>/dev/null` dance keeps the tool's stderr and drops bash's own
            # "Killed" / "Segmentation fault" notices, which the tool alone would not print.
            '{ "$@" 2>&3 3>&-; } 3>&2 2>/dev/null',
            "rc=$?",
            commit,
            "exit $rc",
            "",
        ]
    )


def _module_source(module: str) -> bytes:
    package, _, name = module.rpartition(".")
    data = pkgutil.get_data(package, f"{name}.py")
    assert data is not None, module
    return data


def store_sources() -> list[FileContent]:
    return [FileContent(f"{WORK_DIR}/store/{m}.py", _module_source(f"cacheplug.store.{m}")) for m in SANDBOX_MODULES]


def sandbox_files(spec: CacheSpec, python: str, build_root: str, lock_timeout: float, max_size: int) -> list[FileContent]:
    """Everything the shim needs in the sandbox: itself, the store's package, the tool's policy,
    the store's spec."""
    return [
        FileContent(SHIM_PATH, shim_script(spec, python).encode(), is_executable=True),
        *store_sources(),
        *([FileContent(POLICY_PATH, _module_source(spec.policy))] if spec.policy else []),
        FileContent(STORE_SPEC_PATH, store_spec(spec, build_root, lock_timeout, max_size).dumps()),
    ]


def wrap(process: Process, spec: CacheSpec, bash: str, files_digest: Digest) -> Process:
    """`process` run by the shim (its argv passed on as the shim's arguments)."""
    return dataclasses.replace(
        process,
        argv=(bash, SHIM_PATH, *process.argv),
        input_digest=files_digest,
        append_only_caches=FrozenDict(
            {
                **process.append_only_caches,
                **PythonBuildStandaloneBinary.APPEND_ONLY_CACHES,
                NAMED_CACHE: NAMED_CACHE_SANDBOX_PATH,
            }
        ),
        output_files=(*process.output_files, REPORT_PATH),
    )


@dataclass(frozen=True)
class StoreBytecode:
    """The store's modules compiled by the interpreter that runs them, for the sandbox: each of
    the two store processes of a run would otherwise compile them again (~20 ms of start-up)."""

    digest: Digest


def compile_store_argv(python: str, store_dir: str) -> tuple[str, ...]:
    # unchecked-hash: used whatever the sources' mtimes (new in every sandbox). Safe because the
    # pycs are made from those very sources (compile_store's cache key); an interpreter of another
    # version ignores them.
    return (python, "-I", "-S", "-m", "compileall", "-q", "--invalidation-mode=unchecked-hash", store_dir)


@rule
async def compile_store(python: PythonBuildStandaloneBinary) -> StoreBytecode:
    result = await Get(
        FallibleProcessResult,
        Process(
            argv=compile_store_argv(python.path, f"{WORK_DIR}/store"),
            input_digest=await Get(Digest, CreateDigest(store_sources())),
            output_directories=(f"{WORK_DIR}/store/__pycache__",),
            append_only_caches=PythonBuildStandaloneBinary.APPEND_ONLY_CACHES,
            description="Compile cacheplug's store",
            level=LogLevel.DEBUG,
        ),
    )
    if result.exit_code != 0:  # the cache never fails the build: the store compiles its sources itself
        logger.debug(f"compiling cacheplug's store failed: {result.stderr.decode(errors='replace')}")
        return StoreBytecode(EMPTY_DIGEST)
    return StoreBytecode(result.output_digest)


@rule
async def run_cached_process(
    request: CachedProcessRequest,
    cacheplug: CachePlug,
    bash: BashBinary,
    python: PythonBuildStandaloneBinary,
    build_root: BuildRoot,
    run_id: RunId,
) -> CachedProcessResult:
    process, spec = request.process, request.spec
    if spec.mode == SharedCache.off:
        return CachedProcessResult(await Get(FallibleProcessResult, Process, process), None)
    cacheplug.validate()
    files = await Get(
        Digest, CreateDigest(sandbox_files(spec, python.path, build_root.path, cacheplug.lock_timeout, cacheplug.max_size_bytes))
    )
    bytecode = await Get(StoreBytecode, PythonBuildStandaloneBinary, python)
    input_digest = await Get(Digest, MergeDigests([process.input_digest, files, bytecode.digest]))
    result = await Get(FallibleProcessResult, Process, wrap(process, spec, bash.path, input_digest))
    contents = await Get(DigestContents, DigestSubset(result.output_digest, PathGlobs([REPORT_PATH])))
    report = parse_report(contents[0].content if contents else None, result.metadata.source(run_id))
    report = dataclasses.replace(report, process_ms=result.metadata.total_elapsed_ms)
    for warning in report.warnings:
        logger.warning(f"{spec.tool} cache [{request.label}]: {warning}")
    logger.info(f"{spec.tool} cache [{request.label}]: {report.summary()}")
    return CachedProcessResult(result, report)


def parse_report(content: Optional[bytes], source: ProcessResultMetadata.Source) -> CacheReport:
    try:
        data = json.loads(content) if content is not None else {"warnings": ["the cache shim left no report"]}
    except ValueError:  # the store writes it atomically; still, never fail the build over it
        data = {"warnings": ["the cache shim's report is unreadable"]}
    warnings = [str(w) for w in data.get("warnings", ())]
    if data.get("warnings_dropped"):
        warnings.append(f"... and {data['warnings_dropped']} more warnings like these")
    return CacheReport(
        given=int(data.get("given", 0)),
        reused=int(data.get("reused", 0)),
        written=int(data.get("written", 0)),
        rewritten=int(data.get("rewritten", 0)),
        withheld=int(data.get("withheld", 0)),
        skipped=int(data.get("skipped", 0)),
        lock_wait_ms=int(data.get("lock_wait_ms", 0)),
        warnings=tuple(warnings),
        from_process_cache=source != ProcessResultMetadata.Source.RAN,
        setup_ms=int(data.get("setup_ms", 0)),
        commit_ms=int(data.get("commit_ms", 0)),
    )


def rules() -> Iterable[Rule | UnionRule]:
    return collect_rules()
