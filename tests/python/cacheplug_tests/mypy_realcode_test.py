"""mypy's shared cache on real code: `requests` (its sdist, fetched from PyPI), whose imports of
its requirements (not installed here) and of optional packages (`chardet`, `simplejson`,
`cryptography`, ...) mypy cannot follow. With `ignore_missing_imports` on globally, or only for
some of those packages, cached == cold after every random edit, for the mypy versions whose
incremental mode drops import errors (1.19) and those that cache no module with errors (1.1.1,
1.11); and a no-change run re-checks nothing: not every module with a silenced import, nor those
whose import errors are shown (the workaround's cost, issue 19). mypy runs as Pants runs it, with
the source root in MYPYPATH."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from cacheplug.subsystem import SharedCache
from cacheplug_tests.mypykit import CONFIG, diagnostics, run_mypy
from cacheplug_tests.realcode import SDISTS, Editor, fetch

VERSIONS = ["1.1.1", "1.11.2", "1.19.1"]  # Pants 2.17's default, before and after 1.19's error caching
CONFIGS = {
    "global": "[mypy]\nignore_missing_imports = True\n",
    # urllib3 and charset_normalizer silenced; idna, certifi, chardet, simplejson, ... reported.
    "per-module": "[mypy]\n[mypy-urllib3.*]\nignore_missing_imports = True\n"
                  "[mypy-charset_normalizer.*]\nignore_missing_imports = True\n",
}
IMPORT_ERROR = re.compile(r"^([^:]+):\d+: error: .*\[(import|import-not-found|import-untyped)\]$")


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("version", VERSIONS)
def test_real_code_cached_equals_cold(tmp_path: Path, version: str, config: str) -> None:
    named_cache = tmp_path / "named_caches" / "cacheplug"
    editor = Editor({**fetch(SDISTS["requests"]), CONFIG: CONFIGS[config]}, random.Random(f"{version} {config}"))
    history = []
    for step in range(7):
        history.append("initial" if step == 0 else "no change" if step == 1 else editor.edit())
        cached = run_mypy(named_cache, editor.files, version, env={"MYPYPATH": "src"})
        cold = run_mypy(None, editor.files, version, SharedCache.off, env={"MYPYPATH": "src"})
        assert (cached.exit_code, diagnostics(cached.stdout)) == (cold.exit_code, diagnostics(cold.stdout)), history
        assert cached.exit_code == 1 and cached.report["warnings"] == [], cached.report
        if step == 1:
            # Nothing changed: no module withheld (mypy re-checks none of those with an import
            # error shown, so it cannot drop their errors), none re-checked.
            shown = {m.group(1) for m in map(IMPORT_ERROR.match, cold.stdout.splitlines()) if m}
            assert shown or config == "global", cold.stdout  # per-module: idna, certifi, ... reported
            assert cached.report.get("withheld", 0) == 0 and cached.report["written"] == 0, cached.report
            # No meta rewritten for a source's new mtime (the quickstart file); mypy rewrites
            # @plugins_snapshot.json and missing_stubs every run.
            assert cached.report["rewritten"] <= 2, cached.report
            assert cached.report["reused"] > 50, cached.report
