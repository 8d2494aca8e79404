"""A tool's cache policy: what the store needs to know of one tool, in code in the tool's own
backend (e.g. `cacheplug/mypy/cache_policy.py`), shipped beside the store into the sandbox and
loaded from there. Standard library only. A policy module may define, all optional:

    group_of(relpath) -> str
        the group a cache file belongs to: files of a group are given and committed together
        (default: each file alone);
    unchanged(relpath, new: bytes, old: bytes) -> bool
        True if the tool rewrote a file it was given with content that is no change (e.g. only a
        timestamp): not committed (default: only identical bytes);
    READS: tuple of globs, and withhold(groups) -> set of groups
        the groups not to give the tool this run, from the content of their files matching READS
        ({group: {relpath: bytes}}): the tool re-creates them (to work around its incremental
        bugs; default: none);
    COPIES: tuple of globs
        files the tool writes in place (opens for writing) rather than replacing by rename: given
        as private copies. Every other file is given as a hardlink to the store's object, which
        a write in place would corrupt (commit detects that, warns and repairs it);
    prepare(config) -> None
        run after setup, with the tool rule's `policy_config` (e.g. files that spare the tool
        work).

A policy that raises is not trusted: the run is given no cache (withhold), or its preparation is
skipped (prepare); results stay right either way.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any, Dict, Optional, Set, Tuple


class Policy:
    def __init__(self, module: Optional[ModuleType] = None, config: Optional[Dict[str, Any]] = None) -> None:
        self.module = module
        self.config = config or {}
        self.reads: Tuple[str, ...] = tuple(getattr(module, "READS", ()))
        self.copies: Tuple[str, ...] = tuple(getattr(module, "COPIES", ()))

    def group_of(self, relpath: str) -> str:
        group_of = getattr(self.module, "group_of", None)
        return str(group_of(relpath)) if group_of else relpath

    def unchanged(self, relpath: str, new: bytes, old: bytes) -> bool:
        unchanged = getattr(self.module, "unchanged", None)
        return new == old or bool(unchanged and unchanged(relpath, new, old))

    def withhold(self, groups: Dict[str, Dict[str, bytes]]) -> Set[str]:
        withhold = getattr(self.module, "withhold", None)
        return set(withhold(groups)) if withhold else set()

    def prepare(self) -> None:
        prepare = getattr(self.module, "prepare", None)
        if prepare:
            prepare(self.config)


def load(path: Optional[str], config: Optional[Dict[str, Any]] = None) -> Policy:
    """The policy in the file at `path` (None: the default policy)."""
    if path is None:
        return Policy(None, config)
    spec = importlib.util.spec_from_file_location("cacheplug_tool_policy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Policy(module, config)
