"""`pants check ::` with `[mypy].separate_compilation`, real Pants and real mypy (1.x and 2.x), on a
generated project with a dependency DAG (chains, diamonds), an import cycle, a typed third-party
requirement, and type errors at several depths.

Oracle: whole-repo mypy with no cache at all (`--mypy-shared-cache=off`) on the same files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cacheplug.mypy.separate import OUT_DIR
from cacheplug_tests.pants_repo import PantsResult
from cacheplug_tests.separatekit import (
    EXTRA_FILES,
    MYPY_VERSIONS,
    SEPARATE,
    counter,
    diagnostics,
    fingerprint,
    kept_cache_files,
    project,
    project_repo,
    ran,
)


@pytest.mark.parametrize("version", sorted(MYPY_VERSIONS))
def test_separate_compilation_equals_cold_whole_repo_and_reuses_units(
    tmp_path: Path, version: str, request: pytest.FixtureRequest,
) -> None:
    mypy = MYPY_VERSIONS[version]
    generated = project()
    repo = project_repo(tmp_path / "repo", generated)
    request.addfinalizer(repo.stop_pantsd)

    def check(*args: str, pantsd: bool = False) -> PantsResult:
        result = repo.run(*mypy, *args, "check", "::", pantsd=pantsd)
        assert result.exit_code == 1, result.stderr[-3000:]  # the project has type errors
        return result

    def assert_same_as_cold(separate: PantsResult) -> None:
        # Through pantsd (~16 s less of Pants' start-up per run after the first): the oracle's
        # result is the same if pantsd memoizes it. The checks under test run without pantsd,
        # which would memoize their units and hide which ones ran.
        cold = check("--mypy-shared-cache=off", pantsd=True)
        assert diagnostics(separate) == diagnostics(cold)
        assert len([l for l in diagnostics(cold) if ": error:" in l]) >= 8

    per_component = (SEPARATE, "--mypy-separate-compilation-unit-size=1")  # one unit per module or cycle
    exact = version != "1.1.1"  # see fingerprint
    first = check(*per_component, "--keep-sandboxes=always")
    first_caches = kept_cache_files(first, lambda _, p: fingerprint(p, exact))
    units, ran_first = ran(first)
    assert units == ran_first == len(generated.modules) + len(EXTRA_FILES) - 2  # the cycle is one unit; BUILD none
    assert len(first_caches) == units + 1  # and the base unit
    # A unit that no unit imports keeps no cache (nothing would read it); an imported one does.
    kept = {unit: [p for p in files if p.startswith(f"{OUT_DIR}/")] for unit, files in first_caches.items()}
    sinks = {f"Run MyPy on src/{n}.py" for n in generated.modules if not any(n in m.deps for m in generated.modules.values())}
    assert "Run MyPy on src/m39.py" in sinks and all(kept[unit] == [] for unit in sinks)
    assert any(files for unit, files in kept.items() if unit not in sinks)
    assert_same_as_cold(first)
    for expected in ("src/cyc_b.py:8: error:", "src/uses_cycle.py:3: error:", "src/third.py:10: error:",
                     "src/m0.py:", "src/m39.py:"):
        assert expected in first.stderr
    # mypy errors in the cycle come from one unit, reported once.
    assert first.stderr.count("src/cyc_b.py:8: error:") == 1

    # Incrementality: a leaf's body changes; only its unit runs. Pants' counters agree: one
    # process more than a run where nothing changed.
    unchanged = check(*per_component, "--stats-log")
    assert ran(unchanged)[1] == 0
    leaf = "m39"
    assert not any(leaf in m.deps for m in generated.modules.values())
    generated.modules[leaf].body += 1
    repo.write(generated.render())
    edited = check(*per_component, "--stats-log")
    assert ran(edited) == (units, 1)
    assert counter(edited, "local_execution_requests") == counter(unchanged, "local_execution_requests") + 1
    assert diagnostics(edited) == diagnostics(first)

    # Early cutoff: a body-only edit of the most imported module (which has an error)
    # re-runs its unit only: the others get byte-identical normalized caches. Not on 1.1.1, which
    # writes no cache for a module with errors nor for its importers (they get its source).
    core = "m0"
    generated.modules[core].body += 1
    repo.write(generated.render())
    edited = check(*per_component)
    assert ran(edited)[1] == 1 if version != "1.1.1" else ran(edited)[1] > 10
    assert_same_as_cold(edited)

    # An interface change deep down: its dependents re-run, and still agree with cold mypy.
    generated.modules["m1"].returns_int = not generated.modules["m1"].returns_int
    repo.write(generated.render())
    assert_same_as_cold(check(*per_component))

    # Determinism: back to the first files, every unit re-run without Pants' cache: each unit's
    # inputs and outputs are byte-identical to the first clean run's (1.1.1: see _fingerprint).
    generated.modules["m1"].returns_int = not generated.modules["m1"].returns_int
    generated.modules[leaf].body -= 1
    generated.modules[core].body -= 1
    # Not on 1.1.1, whose caches compare only loosely (see fingerprint): that units are the same
    # bytes in two checkouts is shown for 1.1.1 too, through the remote cache's keys
    # (remote_cache_integration_test), and CI's time is better spent there.
    repo.write(generated.render())
    if exact:
        again = check(*per_component, "--no-local-cache", "--keep-sandboxes=always")
        assert ran(again) == (units, units)
        again_caches = kept_cache_files(again, lambda _, p: fingerprint(p, exact))
        assert again_caches.keys() == first_caches.keys()
        differing = sorted(f"{unit}: {path}" for unit, files in first_caches.items() for path in
                           files.keys() | again_caches[unit].keys() if files.get(path) != again_caches[unit].get(path))
        assert differing == []
        assert diagnostics(again) == diagnostics(first)

    # Units of the default size: fewer processes, the same diagnostics; a leaf's edit re-runs its
    # unit alone.
    batched = check(SEPARATE)
    batched_units, _ = ran(batched)
    assert batched_units <= units / 2
    assert diagnostics(batched) == diagnostics(first)
    generated.modules[leaf].body += 1
    repo.write(generated.render())
    edited = check(SEPARATE)
    assert ran(edited) == (batched_units, 1)
    assert diagnostics(edited) == diagnostics(first)
