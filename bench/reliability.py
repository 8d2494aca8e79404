"""The reliability suite at full size: prints what it tried and the failures it found.

    ./pants run bench/reliability.py -- [--quick] [--skip-pants]

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
    """R6: every bad option value fails `pants check` with an error naming option and allowed values."""
    out = reliability.Outcome(f"R6 bad option values ({len(reliability.BAD_OPTION_VALUES)} values)")
    repo = PantsRepo(tmp / "repo", backends=["pants.backend.python", "cacheplug.mypy"])
    repo.write({"BUILD": "python_sources()\n", "a.py": "X: int = 1\n"})
    for flag, expected in reliability.BAD_OPTION_VALUES:
        result = repo.run(flag, "check", "::")
        out.tried += 1
        out.expect(result.exit_code != 0, f"{flag}: exit 0")
        for text in expected:
            out.expect(text in result.stderr, f"{flag}: the error does not say {text!r}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the full size, to try it out")
    parser.add_argument("--skip-pants", action="store_true", help="skip R6 (runs a real Pants, ~1 min)")
    args = parser.parse_args()
    k = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="cacheplug-reliability-") as tmp_str:
        tmp = Path(tmp_str)
        scenarios = [
            lambda: reliability.load(tmp / "r1" / "cacheplug", writers=16, runs=100 // k),
            lambda: reliability.load(tmp / "r1-nolock" / "cacheplug", writers=16, runs=100 // k, lock=False),
            lambda: reliability.crashes(tmp / "r2" / "cacheplug", kills=500 // k),
            lambda: reliability.corruption(tmp / "r3", cases=130 // k),
            lambda: reliability.stuck_lock(tmp / "r4" / "cacheplug", runs=10 // k, timeout=1.0),
            lambda: reliability.disk_full_injected(tmp / "r5" / "cacheplug", cases=100 // k),
            lambda: reliability.security(tmp / "s1"),
        ]
        if os.geteuid() == 0:  # mounting a tmpfs needs root
            scenarios.append(lambda: reliability.disk_full_tmpfs(tmp / "r5-tmpfs", runs=30 // k))
        else:
            print("R5 on a real full filesystem: not run (mounting a tmpfs needs root); injected ENOSPC only")
        if not args.skip_pants:
            scenarios.append(lambda: option_errors(tmp / "r6"))
        failures = 0
        for scenario in scenarios:
            start = time.monotonic()
            outcome = scenario()
            failures += len(outcome.failures)
            print(f"{outcome.scenario}: tried {outcome.tried}, failures {len(outcome.failures)}, "
                  f"{time.monotonic() - start:.0f} s  {json.dumps(outcome.figures) if outcome.figures else ''}", flush=True)
            for failure in outcome.failures[:20]:
                print(f"    FAILURE: {failure}")
    print(f"total failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
