"""Separate-compilation units executed on a real REAPI remote execution engine: buildbox-casd with
buildbox-run in bubblewrap, on loopback (bench/remote_exec.sh), real Pants, real mypy.

Checkout R checks with every process on the engine; its diagnostics must be those of a local
separate check and of cold whole-repo mypy. Checkout B — another path, its own empty local store,
as on another machine with the same configuration — then gets every unit from the engine's
action cache: nothing of the check runs again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from cacheplug_tests.pants_repo import PantsRepo, PantsResult
from cacheplug_tests.remotekit import EngineUnavailable, remote_engine, remote_execution_flags
from cacheplug_tests.separatekit import MYPY_VERSIONS, SEPARATE, counter, diagnostics, project, project_repo, ran

ENGINE_SCRIPT = "bench/remote_exec.sh"  # in this test's sandbox: a `files` dependency
VERSION = "2.4.1"
UNITS = (SEPARATE, "--mypy-separate-compilation-unit-size=5")  # several units, some in parallel


def check(repo: PantsRepo, *args: str) -> PantsResult:
    result = repo.run(*MYPY_VERSIONS[VERSION], *args, "--stats-log", "check", "::")
    assert result.exit_code == 1, result.stderr[-3000:]  # the project has type errors
    return result


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The engine's options for Pants; started before anything else, so a skip costs nothing."""
    try:
        with remote_engine(ENGINE_SCRIPT, tmp_path / "engine") as options:
            yield options
    except EngineUnavailable as e:
        pytest.skip(str(e))


def test_every_unit_runs_on_the_engine_and_reports_what_local_mypy_does(tmp_path: Path, engine: dict[str, str]) -> None:
    generated = project()
    local = project_repo(tmp_path / "local", generated)
    cold = check(local, "--mypy-shared-cache=off")  # whole-repo mypy, no cache
    separate = check(local, *UNITS)
    units, _ = ran(separate)
    executed = check(project_repo(tmp_path / "r", generated), *UNITS, *remote_execution_flags(engine))
    elsewhere = check(project_repo(tmp_path / "elsewhere" / "b", generated, own_pex_root=True), *UNITS, *remote_execution_flags(engine))

    assert ran(executed) == (units, units)
    # Every unit, the base unit and the PEXes they run ran on the engine; nothing here.
    assert counter(executed, "remote_execution_success") > units
    assert counter(executed, "remote_execution_errors") == 0
    assert counter(executed, "local_execution_requests") == 0
    assert diagnostics(executed) == diagnostics(separate) == diagnostics(cold)

    # What the engine ran is in its cache for every other machine.
    assert ran(elsewhere) == (units, 0)
    assert f"({units} from the remote cache," in elsewhere.stderr
    assert counter(elsewhere, "local_execution_requests") == 0
    # What still executes is Pants' uncacheable work (finding interpreters), not mypy.
    assert counter(elsewhere, "remote_execution_success") < counter(executed, "remote_execution_success") - units
    assert diagnostics(elsewhere) == diagnostics(cold)
