"""The store as the shim runs it in the sandbox:

    python -I -S -c '<import this package from .cacheplug>' setup|commit CONFIG

CONFIG is the rule's spec (spec.py), which the engine writes. Always exits 0: the cache never
fails the build; what went wrong is in the report's warnings (or, for a spec that does not
validate, on stderr, and the rule then finds no report).
"""

from __future__ import annotations

import sys
import time

from . import policy as policies
from .commit import commit
from .report import Report
from .seed import setup
from .spec import Spec

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import List


def main(argv: List[str]) -> int:
    start = time.monotonic()  # the store's own time (after Python's start-up), for the log line
    command, spec_file = argv
    try:
        with open(spec_file, "rb") as f:
            spec = Spec.loads(f.read())
    except (OSError, ValueError) as e:
        print(f"cacheplug store: {e}", file=sys.stderr)
        return 0
    report = Report()
    report.load(spec.report)  # setup's report, which commit adds to
    try:
        policy = policies.load(spec.policy, spec.policy_config)
        if command == "setup":
            setup(spec, policy, report)
        elif command == "commit":
            commit(spec, policy, report)
        else:
            report.warn(f"unknown store command {command!r}")
    except Exception as e:  # the cache never fails the build
        report.warn(f"cache {command} failed, results unaffected: {type(e).__name__}: {e}")
    report.data[f"{command}_ms"] = int((time.monotonic() - start) * 1000)
    report.save(spec.report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
