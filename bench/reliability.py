"""The reliability suite at full size: prints what it tried and the failures it found.

    ./pants run bench/reliability.py -- [--quick] [--skip-pants] [--only r1,r2,...]

(`./pants run` so that this runs with Pants importable and the launcher's environment.) The
scenarios live in tests/python/cacheplug_tests/reliability.py (reliability_test.py runs them small
in `./pants test ::`); docs/RELIABILITY.md records the figures. Exits 1 if any failure was found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from cacheplug_tests import reliability
from cacheplug_tests.pants_repo import PantsRepo


def option_errors(tmp: Path) -> reliability.Outcome:
    """R6: every bad option value fails `pants check test` with an error naming option and allowed values."""
    values = [*reliability.BAD_OPTION_VALUES, *reliability.PYTEST_BAD_OPTION_VALUES]
    out = reliability.Outcome(f"R6 bad option values ({len(values)} values)")
    repo = PantsRepo(tmp / "repo", backends=["cacheplug.python", "cacheplug.mypy"],
                     extra_toml='[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n')
    repo.write({"BUILD": "python_sources()\npython_tests(name='t')\n", "a.py": "X: int = 1\n", "a_test.py": "def test_a():\n    pass\n"})
    for flag, expected in values:
        result = repo.run(flag, "check", "test", "::")
        out.tried += 1
        out.expect(result.exit_code != 0, f"{flag}: exit 0")
        for text in expected:
            out.expect(text in result.stderr, f"{flag}: the error does not say {text!r}: {result.stderr[-3000:]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the full size, to try it out")
    parser.add_argument("--skip-pants", action="store_true", help="skip r6 (runs a real Pants, ~1 min)")
    parser.add_argument("--only", help="comma-separated scenarios: r1,r1-nolock,r2,r3,r4,r5,s1,r5-tmpfs,r7,r6")
    args = parser.parse_args()
    k = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="cacheplug-reliability-") as tmp_str:
        tmp = Path(tmp_str)
        scenarios = {
            "r1": lambda: reliability.load(tmp / "r1" / "cacheplug", writers=16, runs=100 // k),
            "r1-nolock": lambda: reliability.load(tmp / "r1-nolock" / "cacheplug", writers=16, runs=100 // k, lock=False),
            "r2": lambda: reliability.crashes(tmp / "r2" / "cacheplug", kills=500 // k),
            "r3": lambda: reliability.corruption(tmp / "r3", cases=130 // k),
            "r4": lambda: reliability.stuck_lock(tmp / "r4" / "cacheplug", runs=10 // k, timeout=1.0),
            "r5": lambda: reliability.disk_full_injected(tmp / "r5" / "cacheplug", cases=100 // k),
            "s1": lambda: reliability.security(tmp / "s1"),
            "r5-tmpfs": lambda: reliability.disk_full_tmpfs(tmp / "r5-tmpfs", runs=30 // k),
            "r7": lambda: reliability.merged_file(tmp / "r7" / "cacheplug", writers=16, runs=60 // k),
            "r6": lambda: option_errors(tmp / "r6"),
        }
        chosen = args.only.split(",") if args.only else list(scenarios)
        unknown = [name for name in chosen if name not in scenarios]
        if unknown:
            parser.error(f"--only: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(scenarios)}")
        if args.skip_pants and "r6" in chosen:
            chosen.remove("r6")
        if "r5-tmpfs" in chosen and os.geteuid() != 0:  # mounting a tmpfs needs root
            chosen.remove("r5-tmpfs")
            print("R5 on a real full filesystem: not run (mounting a tmpfs needs root); injected ENOSPC only")
        failures = 0
        for name in chosen:
            start = time.monotonic()
            outcome = scenarios[name]()
            failures += len(outcome.failures)
            print(f"{outcome.scenario}: tried {outcome.tried}, failures {len(outcome.failures)}, "
                  f"{time.monotonic() - start:.0f} s  {json.dumps(outcome.figures) if outcome.figures else ''}", flush=True)
            for failure in outcome.failures[:20]:
                print(f"    FAILURE: {failure}")
    print(f"total failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
