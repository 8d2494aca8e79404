"""What one run of the store did, written as JSON for the Pants rule to read and log."""

from __future__ import annotations

import json

from .layout import write_atomically

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Dict

MAX_ENTRY_WARNINGS = 5  # per run; the rest are counted


class Report:
    def __init__(self) -> None:
        self.data: Dict[str, Any] = {
            "given": 0,  # groups given to the tool (setup)
            "reused": 0,  # of those, left as they were by the tool (commit; setup's "given" until then)
            "written": 0,
            "rewritten": 0,  # given, then rewritten by the tool with the same content
            "withheld": 0,  # not given: the tool's policy
            "deleted": 0,
            "skipped": 0,  # bad or vanished entries: misses
            "lock_wait_ms": 0,
            "setup_ms": 0,  # the store's own time in setup and in commit (cli.py)
            "commit_ms": 0,
            "warnings": [],
        }

    def warn(self, message: str) -> None:
        self.data["warnings"].append(message)

    def warn_entry(self, message: str) -> None:
        """A warning about one cache entry: a cache damaged throughout (or written by an older
        cacheplug) would give one per entry, so only the first few are kept, the rest counted."""
        self.data["entry_warnings"] = self.data.get("entry_warnings", 0) + 1
        if self.data["entry_warnings"] <= MAX_ENTRY_WARNINGS:
            self.warn(message)
        else:
            self.data["warnings_dropped"] = self.data.get("warnings_dropped", 0) + 1

    def load(self, path: str) -> None:
        """Continue the report setup left (commit adds to it)."""
        try:
            with open(path) as f:
                self.data.update(json.load(f))
        except (OSError, ValueError):
            pass

    def save(self, path: str) -> None:
        write_atomically(path, json.dumps(self.data).encode())  # killed midway: the old report
