"""cacheplug.python on a real project's own test suite (click 8.1.7's, from PyPI): with a bug
introduced, the same results as Pants' own Python backend, and the shared record of failures
exactly the failures pytest reported across all test files; fixed, `pants test :: -- --lf` runs
only those and keeps only those that still fail."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cacheplug_tests import realcode
from cacheplug_tests.pytestkit import LASTFAILED, plain_then_ours, results, shared

# A bug: integer options and arguments convert with float().
BUG = ("src/click/types.py", "    _number_class = int\n", "    _number_class = float\n")


def failed_ids(output: str) -> set[str]:
    """The node ids of pytest's short summary (`FAILED tests/test_x.py::test_y - reason`)."""
    return set(re.findall(r"^FAILED (.+?)(?: - .*)?$", output, re.M))


def test_click_suite_with_a_bug_then_fixed(tmp_path: Path) -> None:
    sdist = realcode.SDISTS["click"]
    files = {
        **realcode.fetch(sdist),
        **{rel: text for rel, text in realcode.fetch_tests(sdist).items() if not rel.startswith("tests/typing/")},
        "src/click/BUILD": "python_sources()\n",
        "tests/BUILD": "python_tests()\npython_test_utils(name='utils')\n",
    }
    path, good, bad = BUG
    assert files[path].count(good) == 1
    buggy = {**files, path: files[path].replace(good, bad)}
    plain, repo = plain_then_ours(tmp_path, buggy)
    try:
        ours = repo.run("test", "::", pantsd=True)
        record = set(json.loads(shared(repo)[LASTFAILED]))
        repo.write({path: files[path]})
        rerun = repo.run("--test-output=all", "test", "::", "--", "--lf", pantsd=True)
    finally:
        repo.stop_pantsd()
    assert results(ours.stderr) == results(plain.stderr), (plain.stderr[-5000:], ours.stderr[-5000:])
    failed_files = [a for a, outcome in results(ours.stderr).items() if outcome != "succeeded"]
    assert len(failed_files) >= 2 and len(results(ours.stderr)) == 20, results(ours.stderr)
    # What each file's pytest reported failing, and nothing else, is in the shared record.
    assert record == failed_ids(ours.stderr) == failed_ids(plain.stderr) and record, record
    # Fixed: --lf runs, in each file, only its recorded failures; the record keeps exactly those
    # that still fail (in a sandbox, some of click's tests fail without the bug too).
    assert sum(int(n) for n in re.findall(r"rerun previous (\d+) failures?", rerun.stderr)) == len(record)
    still = failed_ids(rerun.stderr)
    assert set(json.loads(shared(repo)[LASTFAILED])) == still < record, still
    assert rerun.exit_code == (1 if still else 0), rerun.stderr[-5000:]
