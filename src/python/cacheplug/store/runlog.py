"""runs.log: one line per run, the groups it reused untouched and wrote: cache-info's hit rate."""

from __future__ import annotations

import json
import os
import time

from .layout import read_nofollow, write_atomically
from .locking import Busy, scope_lock

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Dict, List

RUNS_KEPT = 50  # lines kept when the log is trimmed


def log_run(scope: str, hits: int, misses: int) -> None:
    """Append this run's counts to runs.log. One short write(2) with O_APPEND, so concurrent runs
    need no lock; it is trimmed (by whoever gets the lock without waiting) once it grows. A line
    appended to the old file while a trim replaces it is lost: statistics, not cache content."""
    path = os.path.join(scope, "runs.log")
    line = json.dumps({"t": int(time.time()), "hits": hits, "misses": misses}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line.encode())
            big = os.fstat(fd).st_size > RUNS_KEPT * 200
        finally:
            os.close(fd)
    except OSError:
        return  # statistics only: never worth failing the commit over (disk full, a symlink)
    if big:
        try:
            with scope_lock(scope, timeout=0):  # busy: someone else trims, or we do next time
                write_atomically(path, b"".join(read_nofollow(path).splitlines(True)[-RUNS_KEPT:]))
        except (Busy, OSError):
            pass


def read_runs(scope: str) -> List[Dict[str, int]]:
    runs: List[Dict[str, int]] = []
    try:
        lines = read_nofollow(os.path.join(scope, "runs.log")).splitlines()
    except OSError:
        return runs
    for line in lines[-RUNS_KEPT:]:
        try:
            run = json.loads(line)
            runs.append({k: int(run[k]) for k in ("t", "hits", "misses")})
        except (ValueError, TypeError, KeyError):
            continue  # a line torn by a crash
    return runs
