"""`pants test` with pytest, each test process run through cacheplug's shared test caches.

Everything but the run of a batch of test files is Pants' own Python backend (register.py keeps
all its rules but `run_python_tests`); `run_python_tests_cached` below is Pants 2.17.1's
`run_python_tests` with the process wrapped. Pants' rule graph allows one rule per output type
and input, and its pytest plugin hook (`PytestPluginSetupRequest`) can add files only, no
environment and nothing after the run: replacing the rule is the one way in. `--debug` and
`--debug-adapter` build their own processes: they run unwrapped, with no shared cache.

The process key must not name the checkout or the sandbox, or Pants' test result cache (a
passing file is "cached locally") would stop working across checkouts: the scope leaves the
buildroot out, and every path given to the tool is `{chroot}/...`, which Pants expands when it
runs the process.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterable

from pants.backend.python.goals import pytest_runner
from pants.backend.python.goals.coverage_py import PytestCoverageData
from pants.backend.python.goals.pytest_runner import (
    _EXTRA_OUTPUT_DIR,
    PyTestRequest,
    TestMetadata,
    TestSetup,
    TestSetupRequest,
)
from pants.backend.python.subsystems.pytest import PyTest, PythonTestFieldSet
from pants.core.goals.test import TestResult, TestSubsystem
from pants.engine.fs import DigestSubset, PathGlobs, RemovePrefix, Snapshot
from pants.engine.process import Process
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from cacheplug.engine import CachedProcessRequest, CachedProcessResult, CacheSpec, CacheTool
from cacheplug.python.subsystem import HYPOTHESIS_ENV, LIBRARY_CACHES, checked_library_caches
from cacheplug.subsystem import SharedCache

logger = logging.getLogger(__name__)

# Pants' rule this backend replaces (register.py keeps the rest of Pants' Python backend), by
# name: a module global that is a rule would be collected by `collect_rules()` below.
REPLACED_PANTS_RULE = pytest_runner.run_python_tests.rule.canonical_name

# pytest exits 1 when tests failed: what it and Hypothesis saved then (the failures, the failing
# examples) is what the next run needs most. Not on 2-5 (interrupted, internal error, usage
# error, no tests collected) nor on a signal or Pants' timeout (the shim sees 128+N, or is
# killed itself).
COMMIT_EXIT_CODES = (0, 1)


class PyTestCacheTool(CacheTool):
    name = "pytest"
    policy = "cacheplug.python.cache_policy"


def shared_cache_spec(mode: SharedCache) -> CacheSpec:
    return CacheSpec(
        tool=PyTestCacheTool.name,
        # What the caches hold does not depend on the interpreter, resolve or pytest's version.
        scope=("test-caches",),
        mode=mode,
        commit_exit_codes=COMMIT_EXIT_CODES,
        policy=PyTestCacheTool.policy,
        buildroot_in_scope=False,
    )


def wrap_for_caches(process: Process, spec: CacheSpec, library_caches: tuple[str, ...]) -> Process:
    """Point pytest, Hypothesis and the chosen libraries at their directories in the private copy."""
    def where(name: str) -> str:
        return f"{{chroot}}/{spec.sandbox_dir}/{name}"

    env = {
        HYPOTHESIS_ENV: where("hypothesis"),
        **{LIBRARY_CACHES[name]: where(name) for name in library_caches},
    }
    return dataclasses.replace(
        process,
        # Last, so that it wins over a `cache_dir` in the user's pytest config or `[pytest].args`.
        argv=(*process.argv, "-o", f"cache_dir={where('pytest')}"),
        env=FrozenDict({**process.env, **env}),
    )


def batch_label(batch: PyTestRequest.Batch) -> str:
    label = batch.elements[0].address.spec
    if len(batch.elements) > 1:
        label = f"batch of {label} and {len(batch.elements) - 1} other files"
    return label


@rule(desc="Run Pytest", level=LogLevel.DEBUG)
async def run_python_tests_cached(
    batch: PyTestRequest.Batch[PythonTestFieldSet, TestMetadata],
    test_subsystem: TestSubsystem,
    pytest: PyTest,
) -> TestResult:
    library_caches = checked_library_caches(pytest.options.library_caches)
    setup = await Get(TestSetup, TestSetupRequest(batch.elements, batch.partition_metadata, is_debug=False))
    spec = shared_cache_spec(pytest.options.shared_cache)
    process = setup.process if spec.mode == SharedCache.off else wrap_for_caches(setup.process, spec, library_caches)
    cached = await Get(CachedProcessResult, CachedProcessRequest(process, spec, label=batch_label(batch)))
    result = cached.result

    # From here on, Pants 2.17.1's run_python_tests, unchanged.
    def warning_description() -> str:
        description = batch.elements[0].address.spec
        if len(batch.elements) > 1:
            description = f"batch containing {description} and {len(batch.elements)-1} other files"
        if batch.partition_metadata.description:
            description = f"{description} ({batch.partition_metadata.description})"
        return description

    coverage_data = None
    if test_subsystem.use_coverage:
        coverage_snapshot = await Get(Snapshot, DigestSubset(result.output_digest, PathGlobs([".coverage"])))
        if coverage_snapshot.files == (".coverage",):
            coverage_data = PytestCoverageData(
                tuple(field_set.address for field_set in batch.elements), coverage_snapshot.digest
            )
        else:
            logger.warning(f"Failed to generate coverage data for {warning_description()}.")

    xml_results_snapshot = None
    if setup.results_file_name:
        xml_results_snapshot = await Get(
            Snapshot, DigestSubset(result.output_digest, PathGlobs([setup.results_file_name]))
        )
        if xml_results_snapshot.files != (setup.results_file_name,):
            logger.warning(f"Failed to generate JUnit XML data for {warning_description()}.")
    extra_output_snapshot = await Get(
        Snapshot, DigestSubset(result.output_digest, PathGlobs([f"{_EXTRA_OUTPUT_DIR}/**"]))
    )
    extra_output_snapshot = await Get(Snapshot, RemovePrefix(extra_output_snapshot.digest, _EXTRA_OUTPUT_DIR))

    return TestResult.from_batched_fallible_process_result(
        result,
        batch=batch,
        output_setting=test_subsystem.output,
        coverage_data=coverage_data,
        xml_results=xml_results_snapshot,
        extra_output=extra_output_snapshot,
    )


def rules() -> Iterable[Rule | UnionRule]:
    return [*collect_rules(), UnionRule(CacheTool, PyTestCacheTool)]
