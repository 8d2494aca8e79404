"""The rule-level API: wrap a tool's `Process` so that it runs with a persistent, shared cache.

    cached = await Get(CachedProcess, CachedProcessRequest(process, spec))
    result = await Get(FallibleProcessResult, Process, cached.process)
    report = await Get(CacheReport, CacheReportRequest(result, spec))

The wrapped process runs a small shell shim in the sandbox:
  1. setup: `store.py setup` gives the tool a private copy of the shared cache at
     `spec.sandbox_dir` (hardlinks of immutable objects; copies for `spec.copy_globs`);
  2. the tool's own argv, whose exit code the shim returns exactly (128+N for a signal);
  3. teardown, only for `spec.commit_exit_codes`: `store.py commit` merges what the tool wrote
     back into the shared cache (see store.py for the protocol and the races it defends against).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pkgutil
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Optional

from pants.base.build_root import BuildRoot
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
)
from pants.engine.internals.session import RunId
from pants.engine.process import FallibleProcessResult, Process, ProcessResultMetadata
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.strutil import shell_quote

from cacheplug.subsystem import CachePlug

NAMED_CACHE = "cacheplug"
NAMED_CACHE_SANDBOX_PATH = ".cache/cacheplug"
WORK_DIR = ".cacheplug"
REPORT_PATH = f"{WORK_DIR}/report.json"
POLICY_PATH = f"{WORK_DIR}/policy.py"


class CacheMode(Enum):
    READ_WRITE = "read-write"
    READ_ONLY = "read-only"


@dataclass(frozen=True)
class CacheSpec:
    """How a tool uses its cache. Everything here that changes what the tool writes belongs in
    `scope`; the buildroot is always added."""

    tool: str
    scope: tuple[str, ...]
    sandbox_dir: str = f"{WORK_DIR}/cache"  # the tool's private copy; point the tool here
    env_var: Optional[str] = None  # if set, the tool finds `sandbox_dir` through this env var
    commit_exit_codes: tuple[int, ...] = (0,)
    group_by_stem: bool = False  # files sharing a stem travel together (mypy: meta + data)
    copy_globs: tuple[str, ...] = ()  # files the tool changes in place: copied, never hardlinked
    # True if the tool judges freshness by timestamps across entries, so entries from different
    # runs must not mix: a commit is skipped if another one landed since this run's setup.
    snapshot_consistency: bool = False
    # The tool's cache policy: a module (standard library only) that store.py runs in the sandbox
    # to choose the groups not to give the tool, e.g. "cacheplug.mypy.cache_policy" (see there).
    policy: Optional[str] = None
    policy_config: str = ""  # JSON, given to the policy's `prepare`
    # (glob, keys): a rewritten JSON file matching glob that differs from what the tool was given
    # only in these keys is not committed (e.g. mypy's meta, rewritten for a new source mtime).
    volatile_json: tuple[tuple[str, tuple[str, ...]], ...] = ()
    mode: CacheMode = CacheMode.READ_WRITE


@dataclass(frozen=True)
class CachedProcessRequest:
    process: Process
    spec: CacheSpec


@dataclass(frozen=True)
class CachedProcess:
    process: Process


@dataclass(frozen=True)
class CacheReportRequest:
    result: FallibleProcessResult
    spec: CacheSpec


@dataclass(frozen=True)
class CacheReport:
    reused: int
    written: int
    skipped: int
    lock_wait_ms: int
    warnings: tuple[str, ...]
    from_process_cache: bool

    def summary(self) -> str:
        text = (
            f"{self.reused} reused, {self.written} written, {self.skipped} skipped, "
            f"lock wait {self.lock_wait_ms} ms"
        )
        return text + (" (replayed from Pants' process cache)" if self.from_process_cache else "")


def scope_hash(spec: CacheSpec, build_root: str) -> str:
    return scope_id(build_root, spec.tool, spec.scope)


def scope_id(build_root: str, tool: str, parts: Iterable[str]) -> str:
    """A scope's directory name. From its description alone, so a snapshot made in one checkout
    can be imported into another (see snapshot.py)."""
    return hashlib.sha256(json.dumps([build_root, tool, *parts]).encode()).hexdigest()[:24]


def scope_descriptor(spec: CacheSpec, build_root: str) -> str:
    """What the scope is for, saved as its scope.json: read by cache-info and snapshot import."""
    return json.dumps(
        {"tool": spec.tool, "parts": list(spec.scope), "buildroot": build_root, "by_stem": spec.group_by_stem},
        sort_keys=True,
    )


def sandbox_scope_dir(spec: CacheSpec, build_root: str) -> str:
    """Where the spec's cache scope is, relative to the sandbox."""
    return f"{NAMED_CACHE_SANDBOX_PATH}/{spec.tool}/{scope_hash(spec, build_root)}"


def shim_script(
    process: Process, spec: CacheSpec, scope_dir: str, python: str, lock_timeout: float,
    max_size: int = 0, describe: str = "",
) -> str:
    """The shell shim that runs `process.argv` between `store.py setup` and `store.py commit`."""
    def store(command: str, *flags: str) -> str:
        argv = [python, "-I", "-S", f"{WORK_DIR}/store.py", command, scope_dir, spec.sandbox_dir,
                f"{WORK_DIR}/manifest.json", REPORT_PATH, *flags]
        return " ".join(shell_quote(a) for a in argv)

    flags = ["--by-stem"] if spec.group_by_stem else []
    for glob in spec.copy_globs:
        flags += ["--copy", glob]
    setup_flags = [*flags, *(["--policy", POLICY_PATH] if spec.policy else [])]
    if spec.policy_config:
        setup_flags += ["--policy-config", spec.policy_config]
    commit_flags = [*flags, "--timeout", str(lock_timeout), "--max-size", str(max_size)]
    if describe:
        commit_flags += ["--describe", describe]
    for glob, keys in spec.volatile_json:
        commit_flags += ["--volatile", f"{glob}:{','.join(keys)}"]
    if spec.snapshot_consistency:
        commit_flags.append("--snapshot")
    commit = (
        # `|| true`: the cache never fails the build.
        f'case " {" ".join(map(str, spec.commit_exit_codes))} " in *" $rc "*) {{ {store("commit", *commit_flags)}; }} 2>/dev/null || true ;; esac'
        if spec.mode == CacheMode.READ_WRITE
        else "# read-only: nothing is committed"
    )
    return "\n".join(
        [
            "# cacheplug shim: seed the tool's cache, run the tool, commit; exit with the tool's code.",
            # store.py exits 0 unless it died (killed, no interpreter): then a group may be half
            # seeded, so the tool runs cold, and commit finds no manifest and commits nothing.
            f"{{ {store('setup', *setup_flags)}; }} 2>/dev/null || rm -rf -- {shell_quote(spec.sandbox_dir)}",
            # The `{ } 3>&2 2>/dev/null` dance keeps the tool's stderr and drops bash's own
            # "Killed" / "Segmentation fault" notices, which the tool alone would not print.
            f"{{ {' '.join(shell_quote(a) for a in process.argv)} 2>&3 3>&-; }} 3>&2 2>/dev/null",
            "rc=$?",
            commit,
            "exit $rc",
            "",
        ]
    )


def sandbox_programs(spec: CacheSpec) -> list[FileContent]:
    """store.py and the tool's policy module, as the shim runs them in the sandbox."""
    def source(module: str) -> bytes:
        package, _, name = module.rpartition(".")
        data = pkgutil.get_data(package, f"{name}.py")
        assert data is not None, module
        return data

    return [
        FileContent(f"{WORK_DIR}/store.py", source("cacheplug.store")),
        *([FileContent(POLICY_PATH, source(spec.policy))] if spec.policy else []),
    ]


@rule
async def wrap_process(
    request: CachedProcessRequest,
    cacheplug: CachePlug,
    bash: BashBinary,
    python: PythonBuildStandaloneBinary,
    build_root: BuildRoot,
) -> CachedProcess:
    cacheplug.validate()
    process, spec = request.process, request.spec
    scope_dir = sandbox_scope_dir(spec, build_root.path)
    shim = shim_script(
        process, spec, scope_dir, python.path, cacheplug.lock_timeout, cacheplug.max_size_bytes,
        scope_descriptor(spec, build_root.path),
    )
    files = await Get(
        Digest,
        CreateDigest([*sandbox_programs(spec), FileContent(f"{WORK_DIR}/shim.sh", shim.encode(), is_executable=True)]),
    )
    input_digest = await Get(Digest, MergeDigests([process.input_digest, files]))
    env = dict(process.env)
    if spec.env_var:
        env[spec.env_var] = spec.sandbox_dir
    return CachedProcess(
        dataclasses.replace(
            process,
            argv=(bash.path, f"{WORK_DIR}/shim.sh"),
            input_digest=input_digest,
            env=FrozenDict(env),
            append_only_caches=FrozenDict(
                {
                    **process.append_only_caches,
                    **PythonBuildStandaloneBinary.APPEND_ONLY_CACHES,
                    NAMED_CACHE: NAMED_CACHE_SANDBOX_PATH,
                }
            ),
            output_files=(*process.output_files, REPORT_PATH),
        )
    )


@rule
async def read_cache_report(request: CacheReportRequest, run_id: RunId) -> CacheReport:
    contents = await Get(
        DigestContents, DigestSubset(request.result.output_digest, PathGlobs([REPORT_PATH]))
    )
    try:
        data = json.loads(contents[0].content) if contents else {"warnings": ["the cache shim left no report"]}
    except ValueError:  # store.py writes it atomically; still, never fail the build over it
        data = {"warnings": ["the cache shim's report is unreadable"]}
    warnings = [str(w) for w in data.get("warnings", ())]
    if data.get("warnings_dropped"):
        warnings.append(f"... and {data['warnings_dropped']} more warnings like these")
    source = request.result.metadata.source(run_id)
    return CacheReport(
        reused=int(data.get("reused", 0)),
        written=int(data.get("written", 0)),
        skipped=int(data.get("skipped", 0)),
        lock_wait_ms=int(data.get("lock_wait_ms", 0)),
        warnings=tuple(warnings),
        from_process_cache=source != ProcessResultMetadata.Source.RAN,
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
