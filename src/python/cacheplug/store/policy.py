"""A tool's cache policy: what the store needs to know of one tool, in code in the tool's own
backend (e.g. `cacheplug/mypy/cache_policy.py`), shipped beside the store into the sandbox and
loaded from there. Standard library only. A policy module may define, all optional:

    group_of(relpath) -> str
        the group a cache file belongs to: files of a group are given and committed together
        (default: each file alone);
    unchanged(relpath, new: bytes, old: bytes) -> bool
        True if the tool rewrote a file it was given with content that is no change (e.g. only a
        timestamp): not committed (default: only identical bytes);
    READS: tuple of globs, and withhold(groups[, config]) -> set of groups
        the groups not to give the tool this run, from the content of their files matching READS
        ({group: {relpath: bytes}}): the tool re-creates them (to work around its incremental
        bugs; default: none); a second parameter gets the rule's `policy_config`;
    COPIES: tuple of globs
        files the tool writes in place (opens for writing) rather than replacing by rename: given
        as private copies. Every other file is given as a hardlink to the store's object, which
        a write in place would corrupt (commit detects that, warns and repairs it);
    LINKS: tuple of globs
        symlinks the tool makes that the cache keeps (e.g. a Hugging Face hub's `snapshots/`):
        only relative ones that stay inside the top directory of their path (layout.
        confined_link); every other symlink is never committed, nor followed;
    IGNORES: tuple of globs
        files never committed (lock files, partial downloads, a session's own state): left out
        of every group, as if the tool had not written them;
    MERGES: tuple of globs, and merge(relpath, given, mine, current) -> bytes
        files every run rewrites whole, whose content concurrent runs must combine rather than
        overwrite (e.g. pytest's record of failed tests, one file for all test files). Commit
        stores, under the scope's lock, merge(what the run was given, what it wrote, what the
        cache holds now), each None when there was no such file. Merged files are given as
        copies (as COPIES), and their given content is kept for the merge;
    prepare(config) -> None
        run after setup, with the tool rule's `policy_config` (e.g. files that spare the tool
        work).

A policy that raises is not trusted: the run is given no cache (withhold), its preparation is
skipped (prepare), or the merged file's group is not committed (merge); results stay right
either way.
"""

from __future__ import annotations

import fnmatch
import re
from types import FunctionType, ModuleType

TYPE_CHECKING = False  # typing is not imported at run time (store/__init__.py: start-up cost)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Set, Tuple


class Policy:
    def __init__(self, module: Optional[ModuleType] = None, config: Optional[Dict[str, Any]] = None) -> None:
        self.module = module
        self.config = config or {}
        self.reads: Tuple[str, ...] = tuple(getattr(module, "READS", ()))
        self.merges: Tuple[str, ...] = tuple(getattr(module, "MERGES", ()))
        self.copies: Tuple[str, ...] = (*getattr(module, "COPIES", ()), *self.merges)
        self.ignores: Tuple[str, ...] = tuple(getattr(module, "IGNORES", ()))
        self.links: Tuple[str, ...] = tuple(getattr(module, "LINKS", ()))
        # Looked up once: setup and commit ask per cache file.
        group_of = getattr(module, "group_of", None)
        self.group_of: Callable[[str], str] = (lambda relpath: str(group_of(relpath))) if group_of else str
        self.read = glob_matcher(self.reads)
        self.copied = glob_matcher(self.copies)
        self.ignored = glob_matcher(self.ignores)
        self.linked = glob_matcher(self.links)
        self.merged = glob_matcher(self.merges)

    def unchanged(self, relpath: str, new: bytes, old: bytes) -> bool:
        unchanged = getattr(self.module, "unchanged", None)
        return new == old or bool(unchanged and unchanged(relpath, new, old))

    def withhold(self, groups: Dict[str, Dict[str, bytes]]) -> Set[str]:
        withhold = getattr(self.module, "withhold", None)
        if withhold is None:
            return set()
        return set(withhold(groups, self.config) if _parameters(withhold) > 1 else withhold(groups))

    def merge(self, relpath: str, given: Optional[bytes], mine: bytes, current: Optional[bytes]) -> bytes:
        return bytes(self.module.merge(relpath, given, mine, current))  # type: ignore[union-attr]

    def prepare(self) -> None:
        prepare = getattr(self.module, "prepare", None)
        if prepare:
            prepare(self.config)


def glob_matcher(globs: Tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a relpath matches any of `globs`, as fnmatch says on POSIX: `*` also matches `/`
    (`*.lock` is any lock file, at any depth). One regex for all of them."""
    if not globs:
        return lambda relpath: False
    pattern = re.compile("|".join(fnmatch.translate(g) for g in globs))
    return lambda relpath: pattern.match(relpath) is not None


def _parameters(function: Callable[..., Any]) -> int:
    """How many parameters `function` takes, as inspect.signature counts them. inspect itself
    only when needed: importing it costs each store process ~5 ms of start-up."""
    if isinstance(function, FunctionType):
        code = function.__code__
        return code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *a, **kw
    import inspect

    return len(inspect.signature(function).parameters)


def load(path: Optional[str], config: Optional[Dict[str, Any]] = None) -> Policy:
    """The policy in the file at `path` (None: the default policy). Executed as importlib would,
    without importlib.util (which imports typing: start-up cost)."""
    if path is None:
        return Policy(None, config)
    module = ModuleType("cacheplug_tool_policy")
    module.__file__ = path
    with open(path, "rb") as f:
        exec(compile(f.read(), path, "exec", dont_inherit=True), module.__dict__)
    return Policy(module, config)
