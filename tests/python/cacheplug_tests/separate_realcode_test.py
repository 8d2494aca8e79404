"""Separate compilation on real code, through real Pants: `rich` (its sdist from PyPI; 78 modules,
one import cycle of 69), `strict = True`, against cold whole-repo mypy on the same files, cold and
after random edits. The fast slice of bench/separate_realcode_bench.py (more projects, all four
mypy versions, ten edits each).

Found here first: the base unit's `import abc.abstractmethod` (for `from abc import abstractmethod`)
made mypy 1.11 give typeshed `Any` where its types are, and every unit inherited it (`Returning
Any from function declared to return "bool"`, `Cannot determine type of "write"`).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cacheplug_tests.realcode import SDISTS, Editor, fetch
from cacheplug_tests.separatekit import SEPARATE, diagnostics, mypy_version_args, ran, realcode_repo, sync


@pytest.mark.parametrize("version", ["1.11.2", "2.4.1"])
def test_separate_equals_cold_whole_repo_on_real_code(tmp_path: Path, version: str) -> None:
    editor = Editor(fetch(SDISTS["rich"]), random.Random(f"separate {version}"))
    repo = realcode_repo(tmp_path / "repo", editor.files)
    mypy = mypy_version_args(version)
    history = ["cold"]
    try:
        for step in range(3):
            if step:
                before = dict(editor.files)
                history.append(editor.edit())
                sync(repo, before, editor.files)
            cold = repo.run(*mypy, "--mypy-shared-cache=off", "check", "::", pantsd=True)
            # Units of about 3 files: rich's 78 files in several units (one unit at the default
            # size), so that imports cross unit boundaries.
            separate = repo.run(*mypy, SEPARATE, "--mypy-separate-compilation-unit-size=3", "check", "::", pantsd=True)
            assert cold.exit_code in (0, 1), cold.stderr[-3000:]
            assert (separate.exit_code, diagnostics(separate)) == (cold.exit_code, diagnostics(cold)), history
            units, _ = ran(separate)
            assert 1 < units < len(editor.modules())  # the import cycle is one unit
            assert "import cycle" in separate.stderr  # and the log line says why
    finally:
        repo.stop_pantsd()
