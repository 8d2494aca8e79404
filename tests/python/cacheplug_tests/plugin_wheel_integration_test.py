"""The plugin as users install it: the wheel `./pants package src/python/cacheplug:dist` builds
(a runtime package of this test), through `[GLOBAL].plugins`, in a temp repo with no copy of the
source: `pants check` runs mypy through the cache, and the goals know the tool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cacheplug_tests.pants_repo import PantsRepo


def test_the_wheel_works_as_a_pants_plugin(tmp_path: Path) -> None:
    [wheel] = Path.cwd().glob("**/cacheplug-*.whl")
    version = wheel.name.split("-")[1]
    repo = PantsRepo(
        tmp_path / "repo",
        backends=["pants.backend.python", "cacheplug.mypy"],
        plugins=[f"cacheplug=={version}"],
        extra_toml=(f'[python-repos]\nfind_links = ["file://{wheel.parent}"]\n\n'
                    '[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n'),
    )
    repo.write({"src/BUILD": "python_sources()\n", "src/app.py": "def f(x: int) -> int:\n    return x\n\n\nf('a')\n"})
    # Nothing of the plugin's source is importable where that Pants runs.
    probe = subprocess.run([sys.executable, "-c", "import cacheplug"], cwd=repo.root, capture_output=True, env={})
    assert probe.returncode != 0

    # Through pantsd, as users run Pants (one start-up, with the plugin's resolve, for three runs).
    try:
        check = repo.run("check", "::", pantsd=True)
        assert check.exit_code == 1, check.stderr[-3000:]
        assert 'src/app.py:5: error: Argument 1 to "f" has incompatible type "str"' in check.stderr
        assert "mypy cache [" in check.stderr
        info = repo.run("cache-info", "--format=json", pantsd=True)
        assert info.exit_code == 0, info.stderr[-3000:]
        assert [s["tool"] for s in json.loads(info.stdout)["scopes"]] == ["mypy"]
        bad = repo.run("cache-info", "--tool=nonesuch", pantsd=True)
        assert bad.exit_code != 0 and "Allowed: mypy" in bad.stderr
    finally:
        repo.stop_pantsd()
