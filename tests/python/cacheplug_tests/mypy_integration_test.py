"""`pants check ::` with the `cacheplug.mypy` backend, as a user runs it: a real Pants process in a
temp repo (private caches; no pantsd, but for the bad-option runs), Pants' default mypy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from cacheplug.store import SANDBOX_MODULES
from cacheplug_tests.pants_repo import PantsRepo
from cacheplug_tests.reliability import BAD_OPTION_VALUES

GOOD = "def double(x: int) -> int:\n    return x * 2\n"
BAD = 'from app.good import double\n\n\ndef name() -> int:\n    return "not an int" + str(double(1))\n'


def _cache_line(stderr: str) -> dict[str, int]:
    # e.g. "mypy cache [py3.9]: 415 given, 412 reused, 3 written, ..., 0 skipped, lock wait 2 ms"
    match = re.search(r"mypy cache \[[^\]]*\]: (\d+) given, (\d+) reused, (\d+) written, .* (\d+) skipped", stderr)
    assert match, stderr
    return dict(zip(["given", "reused", "written", "skipped"], map(int, match.groups())))


def _diagnostics(stdout: str) -> list[str]:
    return sorted(line for line in stdout.splitlines() if ": error:" in line or line.startswith("Found "))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PantsRepo]:
    repo = PantsRepo(
        tmp_path_factory.mktemp("mypy") / "repo",
        backends=["pants.backend.python", "cacheplug.mypy"],
        extra_toml='[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n',
    )
    repo.write({"src/app/BUILD": "python_sources()\n", "src/app/__init__.py": "", "src/app/good.py": GOOD,
                "src/app/bad.py": BAD})
    yield repo
    repo.stop_pantsd()  # the bad-option runs start one


def test_type_error_exit_1_then_edit_reuses_cache_and_matches_cold(repo: PantsRepo) -> None:
    first = repo.run("check", "::")
    assert first.exit_code == 1, first.stderr
    # Pants prints check results on stderr.
    assert 'Incompatible return value type (got "str", expected "int")' in first.stderr
    assert "src/app/bad.py:5: error:" in first.stderr
    written = _cache_line(first.stderr)["written"]
    assert written > 20  # the typeshed modules used, and the project's

    repo.write({"src/app/good.py": GOOD + "\n\ndef triple(x: int) -> int:\n    return x * 3\n"})
    second = repo.run("check", "::")
    assert second.exit_code == 1
    # Every entry was given; all but the edited module and the files mypy rewrites every run
    # (@plugins_snapshot.json) were reused as they were.
    again = _cache_line(second.stderr)
    assert again["given"] == written and again["reused"] >= written - 3 and again["written"] <= 2, second.stderr[-2000:]

    cold = repo.run("--mypy-shared-cache=off", "check", "::")
    assert cold.exit_code == 1
    assert "mypy cache" not in cold.stderr
    assert _diagnostics(cold.stderr) == _diagnostics(second.stderr) != []

    repo.write({"src/app/bad.py": BAD.replace("-> int", "-> str")})
    fixed = repo.run("check", "::")
    assert fixed.exit_code == 0, fixed.stderr
    assert "Success: no issues found" in fixed.stderr


def test_read_only_commits_nothing(repo: PantsRepo) -> None:
    repo.write({"src/app/extra.py": "X: int = 1\n"})
    result = repo.run("--mypy-shared-cache=read-only", "--keep-sandboxes=always", "check", "::")
    assert result.exit_code in (0, 1)
    assert _cache_line(result.stderr)["written"] == 0

    # The store ran on the bytecode the engine shipped: had its interpreter not used it, it would
    # have compiled the sources and written pycs of its own (timestamp-based: flags 0).
    sandboxes = [Path(d) for d, what in re.findall(r"Preserving local process execution dir (\S+) for (.*)", result.stderr)]
    mypy_runs = [d for d in sandboxes if (d / ".cacheplug/shim.sh").exists()]
    assert len(mypy_runs) == 1, result.stderr[-3000:]
    pycs = sorted((mypy_runs[0] / ".cacheplug/store/__pycache__").glob("*.pyc"))
    assert [p.name.split(".")[0] for p in pycs] == sorted(SANDBOX_MODULES)
    assert {int.from_bytes(p.read_bytes()[4:8], "little") for p in pycs} == {1}  # PEP 552: unchecked hash
    for sandbox in sandboxes:
        shutil.rmtree(sandbox, ignore_errors=True)


def test_mypy_2_no_change_run_commits_nothing(repo: PantsRepo) -> None:
    """mypy 2.x's `.meta.ff` files, rewritten for every source's new mtime, were committed by every
    run (issue 17, defect 1); the quickstart file spares the rewrites."""
    mypy2 = ["--mypy-version=mypy==2.4.1", "--mypy-lockfile=<none>", "--mypy-extra-requirements=[]"]
    first = repo.run(*mypy2, "check", "::")
    assert _cache_line(first.stderr)["written"] > 20, first.stderr[-3000:]
    repo.write({"src/app/nonce.py": "X = 1\n"})  # so that the process runs again (pantsd, process cache)
    again = _cache_line(repo.run(*mypy2, "check", "::").stderr)
    assert again["written"] == 1 and again["given"] > 20, again  # the new module, nothing else


@pytest.mark.parametrize("flag, expected", BAD_OPTION_VALUES)
def test_bad_option_values_name_the_option_and_what_is_allowed(repo: PantsRepo, flag: str, expected: list[str]) -> None:
    # pantsd: ~1 s a run instead of ~19 s of Pants' start-up; the value is rejected all the same.
    result = repo.run(flag, "check", "::", pantsd=True)
    assert result.exit_code != 0
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]
