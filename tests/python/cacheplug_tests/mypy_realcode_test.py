"""mypy's shared cache on real code: `requests` (its sdist, fetched from PyPI), whose imports of
its requirements (not installed here) and of optional packages (`chardet`, `simplejson`,
`cryptography`, ...) mypy cannot follow. With `ignore_missing_imports` on globally, or only for
some of those packages, cached == cold after every random edit, for the mypy versions whose
incremental mode drops import errors (1.19) and those that cache no module with errors (1.1.1,
1.11); and a no-change run re-checks only the modules whose import errors are shown, not every
module with a silenced import (the workaround's cost, issue 19)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from packaging.version import Version  # pants: no-infer-dep (ships with Pants)

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
        cached = run_mypy(named_cache, editor.files, version)
        cold = run_mypy(None, editor.files, version, SharedCache.off)
        assert (cached.exit_code, diagnostics(cached.stdout)) == (cold.exit_code, diagnostics(cold.stdout)), history
        assert cached.exit_code == 1 and cached.report["warnings"] == [], cached.report
        if step == 1:
            # Withheld: only modules with an import error shown (mypy >= 1.19 caches those); mypy
            # re-checks them and nothing else.
            shown = {m.group(1) for m in map(IMPORT_ERROR.match, cold.stdout.splitlines()) if m}
            assert cached.report.get("withheld", 0) == (len(shown) if Version(version) >= Version("1.19") else 0), cached.report
            assert cached.report["written"] == cached.report.get("withheld", 0), cached.report
            if not cached.report.get("withheld"):  # else mypy re-checks their import cycles too
                # No meta rewritten for a source's new mtime (the quickstart file); mypy rewrites
                # @plugins_snapshot.json and missing_stubs every run.
                assert cached.report["rewritten"] <= 2, cached.report
            assert cached.report["reused"] > 50, cached.report
