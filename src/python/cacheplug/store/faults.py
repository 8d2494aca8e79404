"""Fault injection for the reliability tests, off unless CACHEPLUG_FAULT is set:

    "kill:<point>:<n>"    SIGKILL this process the n-th time it reaches fault(<point>);
    "enospc:<point>:<n>"  fail with ENOSPC (disk full) there instead;
    "wait:<point>:<n>"    wait there until the file $CACHEPLUG_FAULT_GATE exists (to stage a race);
    "nolock"              skip flock entirely, to prove correctness does not depend on the lock;
    "euid:<n>"            act as user n, to test caches owned by another user without root.

CACHEPLUG_FAULT_LOG=path: append "<point>" there when a kill, enospc or wait fault fires.
"""

from __future__ import annotations

import errno
import os
import signal
import time

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Dict

FAULT = os.environ.get("CACHEPLUG_FAULT", "")
NO_LOCK = FAULT == "nolock"
EUID = int(FAULT[5:]) if FAULT.startswith("euid:") else os.geteuid()
_hits: Dict[str, int] = {}


def fault(point: str) -> None:
    kind, _, rest = FAULT.partition(":")
    if kind in ("kill", "enospc", "wait") and rest.rpartition(":")[0] == point:
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] == int(rest.rpartition(":")[2]):
            if os.environ.get("CACHEPLUG_FAULT_LOG"):
                with open(os.environ["CACHEPLUG_FAULT_LOG"], "a") as log:
                    log.write(f"{point}\n")
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "wait":
                while not os.path.exists(os.environ["CACHEPLUG_FAULT_GATE"]):
                    time.sleep(0.01)
                return
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (injected at {point})")
