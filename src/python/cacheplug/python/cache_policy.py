"""The cache policy of `pants test` with cacheplug.python (see cacheplug/store/policy.py): how the
caches a test run keeps are grouped, merged and filtered. Shipped into the sandbox and run by the
store: standard library only.

The tool's cache directory holds one subdirectory per cache (`subsystem.py` says which, and how each
library is pointed there): `pytest/` (pytest's own cache, `-o cache_dir=`), `hypothesis/`
(Hypothesis' storage directory, whose `examples/` is its example database), and the library
caches a repo asks for. Per cache (docs/TOOL_CACHES.md says why):
- pytest's `v/cache/lastfailed` ({node id: true}) is one file that every test file's run
  rewrites, in place. Each run keeps the entries of tests it did not run (all other files'), so
  its change relative to what it was given touches its own tests only: a three-way merge applies
  that change to the cache's current copy. A union would keep fixed tests "failed"; keeping the
  last writer's file loses other files' failures (measured: 1-3 of 16 concurrent files' kept).
  `nodeids` (a list pytest only grows): union. `stepwise` (one session's position): not shared.
- Content-addressed files (Hypothesis examples, Hugging Face blobs, torch checkpoints): each
  file its own group, committed as written; these libraries write by rename, so hardlinks.
- A unit that is a directory (a Triton kernel, a datasets `<builder>/<config>/<version>/<hash>`):
  one group, committed whole or not at all.
- Files written in place (pytest's, matplotlib's font list): private copies.
- The Hugging Face hub's `snapshots/` symlinks: kept when relative and inside `hf-hub/`.
- Never committed: lock files, partial downloads.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Optional

# pytest writes its cache files in place (open "w"); matplotlib its font list.
COPIES = ("pytest/*", "matplotlib/*")

MERGES = ("pytest/v/cache/lastfailed", "pytest/v/cache/nodeids")

# The Hugging Face hub's snapshots: relative symlinks to its blobs (`../../blobs/<etag>`), which
# an offline load needs. Kept only while they stay inside `hf-hub/` (the store checks).
LINKS = ("hf-hub/*/snapshots/*",)

IGNORES = (
    "pytest/v/cache/stepwise",  # one session's position in a --stepwise run
    "*.lock", "*/.locks/*",  # filelock's files (Hugging Face, matplotlib, datasets)
    "*.incomplete", "*.incomplete/*", "*.partial", "*.tmp",  # downloads and writes under way
)

# Caches whose unit is a directory: {top directory: how many path components make one unit}.
DIRECTORY_UNITS = {
    "triton": 2,  # triton/<kernel hash>/...
    "hf-datasets": 5,  # hf-datasets/<builder>/<config>/<version>/<hash>/...
}


def group_of(relpath: str) -> str:
    parts = relpath.split("/")
    depth = DIRECTORY_UNITS.get(parts[0])
    if depth and len(parts) > depth:
        return "/".join(parts[:depth])
    return relpath


def merge(relpath: str, given: Optional[bytes], mine: bytes, current: Optional[bytes]) -> bytes:
    """Three-way merge of pytest's JSON files: this run's change (`mine` against `given`), applied
    to the cache's `current` copy. Raises ValueError on content that is not pytest's (then the
    store does not commit this file: what the cache holds stays)."""
    base, ours, theirs = (_load(relpath, c) for c in (given, mine, current))
    if relpath.endswith("/lastfailed"):
        merged = dict(theirs)
        for node, value in ours.items():
            if base.get(node, None) != value:
                merged[node] = value  # added or changed by this run
        for node in base:
            if node not in ours:
                merged.pop(node, None)  # removed by this run: the test passes now
        return _dump(merged)
    # nodeids: every node id pytest has seen
    return _dump(sorted(set(theirs) | set(ours)))


def _load(relpath: str, content: Optional[bytes]) -> Any:
    empty: Any = {} if relpath.endswith("/lastfailed") else []
    if content is None:
        return empty
    value = json.loads(content)
    if type(value) is not type(empty):
        raise ValueError(f"{os.path.basename(relpath)} is not pytest's: a JSON {type(value).__name__}")
    return value


def _dump(value: Any) -> bytes:
    # As pytest 7 writes them (`json.dumps(value, indent=2)`); sorted, so equal merges are equal bytes.
    return json.dumps(value, indent=2, sort_keys=True).encode()
