"""The scope's lock: flock(2) on its `lock` file, which excludes flock(1) and Python's filelock on
the same file (fcntl.lockf locks do not). It only orders commits; correctness does not depend on
it (see the package docstring). The file is opened with O_NOFOLLOW: a symlink planted as `lock`
is refused, never followed (filelock's own opener would follow it and truncate the target)."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager

from .faults import NO_LOCK

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Iterator


class Busy(Exception):
    """The scope's lock stayed taken (a commit running, or stuck) past the timeout."""


@contextmanager
def scope_lock(scope: str, timeout: float) -> Iterator[int]:
    """Hold the scope's lock, polling for it until `timeout` seconds (0: try once); yields the
    milliseconds waited. Raises Busy if it stayed taken."""
    fd = os.open(os.path.join(scope, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        start = time.monotonic()
        delay = 0.001
        while not NO_LOCK:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout:
                    raise Busy(f"{scope}: its lock stayed taken for {timeout:g}s") from None
                time.sleep(min(delay, timeout - waited))
                delay = min(delay * 2, 0.05)
        yield int((time.monotonic() - start) * 1000)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
