"""Goals to see and manage cacheplug's caches: `cache-info`, `cache-prune`, `cache-export`,
`cache-import`. The work is in lifecycle.py and snapshot.py; this is options and output."""

from __future__ import annotations

import importlib
import json
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from pants.base.build_root import BuildRoot
from pants.engine.console import Console
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import Rule, collect_rules, goal_rule
from pants.engine.unions import UnionMembership
from pants.option.global_options import GlobalOptions
from pants.option.option_types import BoolOption, EnumOption, IntOption, StrOption
from pants.util.strutil import softwrap

from cacheplug import lifecycle, snapshot
from cacheplug.engine import NAMED_CACHE, CacheTool
from cacheplug.store.locking import Busy
from cacheplug.store.policy import Policy
from cacheplug.subsystem import CachePlug

if TYPE_CHECKING:
    from cacheplug.store.layout import GroupOf  # a name for type checkers only


def registered_tools(union_membership: UnionMembership) -> dict[str, type[CacheTool]]:
    """The tools whose cacheplug backends are enabled, by name."""
    return {member.name: member for member in union_membership.get(CacheTool)}


def grouping(union_membership: UnionMembership) -> Callable[[str], Optional[GroupOf]]:
    """A tool's grouping of its cache files, from its registered policy (None: unknown tool,
    no check). Never from a name found on disk or in an archive."""
    tools = registered_tools(union_membership)

    def group_of(tool: str) -> Optional[GroupOf]:
        member = tools.get(tool)
        if member is None:
            return None
        return Policy(importlib.import_module(member.policy) if member.policy else None).group_of

    return group_of


def cache_root(global_options: GlobalOptions) -> Path:
    return Path(global_options.named_caches_dir) / NAMED_CACHE


def format_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError


def _ago(when: Optional[float], now: float) -> str:
    if when is None:
        return "never"
    seconds = max(0, int(now - when))
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds // length} {unit} ago"
    return f"{seconds} s ago"


def _start(
    cacheplug: CachePlug, global_options: GlobalOptions, union_membership: UnionMembership, option: str,
    tool: Optional[str],
) -> Path:
    """Validate the options (`option` names the goal's tool option, whose value is `tool`);
    return the cacheplug named cache's root."""
    cacheplug.validate()
    root = cache_root(global_options)
    allowed = sorted({*registered_tools(union_membership), *lifecycle.tools(root)})
    if tool is not None and tool not in allowed:
        raise ValueError(f"Invalid value for `{option}`: {tool!r}. Allowed: {', '.join(allowed)} (or unset: every tool).")
    return root


# --- cache-info ----------------------------------------------------------------------------------


class InfoFormat(Enum):
    table = "table"
    json = "json"


class CacheInfoSubsystem(GoalSubsystem):
    name = "cache-info"
    help = "Show cacheplug's tool caches: entries, size, budget, last use and recent hit rate per scope."

    format = EnumOption(default=InfoFormat.table, help="`table` for people, `json` for scripts.")
    tool = StrOption(default=None, help="Only this tool's caches (e.g. `mypy`); default: every tool.")


class CacheInfo(Goal):
    subsystem_cls = CacheInfoSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def cache_info(
    console: Console, subsystem: CacheInfoSubsystem, global_options: GlobalOptions, cacheplug: CachePlug,
    union_membership: UnionMembership
) -> CacheInfo:
    root = _start(cacheplug, global_options, union_membership, "[cache-info].tool", subsystem.tool)
    infos = [lifecycle.info(scope) for scope in lifecycle.scopes(root, subsystem.tool)]
    budget = cacheplug.max_size_bytes
    if subsystem.format == InfoFormat.json:
        console.print_stdout(json.dumps(
            {"root": str(root), "budget_bytes": budget, "scopes": [i.to_json() for i in infos]}, indent=2
        ))
        return CacheInfo(exit_code=0)
    now = time.time()
    rows = [("tool", "scope", "what", "entries", "size", "budget", "last used", f"hit rate (last {lifecycle.RECENT_RUNS} runs)")]
    for i in infos:
        rate = f"{100 * i.hit_rate:.1f}% of {i.hits + i.misses} ({i.runs} runs)" if i.hit_rate is not None else "-"
        rows.append((i.tool, i.scope_id[:12], i.label(), str(i.entries), format_size(i.bytes),
                     format_size(budget) if budget else "unlimited", _ago(i.last_used, now), rate))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        console.print_stdout("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    total = sum(i.bytes for i in infos)
    console.print_stdout(f"{len(infos)} scopes, {format_size(total)} in {root}")
    return CacheInfo(exit_code=0)


# --- cache-prune ---------------------------------------------------------------------------------


class CachePruneSubsystem(GoalSubsystem):
    name = "cache-prune"
    help = softwrap(
        """
        Make room in cacheplug's tool caches: evict each scope down to `[cacheplug].max_size`
        (least recently used entries first) and delete what killed runs left behind; with
        `--clear`, delete the caches outright. Runs in progress are unaffected but for misses.
        """
    )

    tool = StrOption(default=None, help="Only this tool's caches (e.g. `mypy`); default: every tool.")
    clear = BoolOption(default=False, help="Delete the caches (of `--tool`, or all) instead of evicting to budget.")
    unused_days = IntOption(
        default=None,
        help=softwrap(
            """
            Also delete whole scopes that no run has used for more than this many days (a tool
            upgrade or new tool options start a new scope; the old one is only ever freed this
            way or with `--clear`). Runs with `[mypy].shared_cache = "read-only"` do not count
            as use. `cache-info` shows each scope's last use.
            """
        ),
    )


class CachePrune(Goal):
    subsystem_cls = CachePruneSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def cache_prune(
    console: Console, subsystem: CachePruneSubsystem, global_options: GlobalOptions, cacheplug: CachePlug,
    union_membership: UnionMembership
) -> CachePrune:
    root = _start(cacheplug, global_options, union_membership, "[cache-prune].tool", subsystem.tool)
    unused_days = subsystem.unused_days
    if unused_days is not None and unused_days < 0:
        raise ValueError(f"Invalid value for `[cache-prune].unused_days`: {unused_days}. It must be a number of days >= 0.")
    freed_total, exit_code, now = lifecycle.collect_stale_temp_dirs(root), 0, time.time()
    for scope in list(lifecycle.scopes(root, subsystem.tool)):
        clear = subsystem.clear or (unused_days is not None and lifecycle.unused_for(scope, unused_days, now))
        try:
            if clear:
                freed = lifecycle.clear(scope, cacheplug.lock_timeout)
            else:
                freed = lifecycle.prune(scope, cacheplug.max_size_bytes, cacheplug.lock_timeout)
        except (Busy, OSError) as e:
            console.print_stderr(f"cache-prune: skipped {scope.parent.name}/{scope.name[:12]}: {e}")
            exit_code = 1
            continue
        freed_total += freed
        what = "cleared" if clear else "pruned"
        console.print_stdout(f"{scope.parent.name} {scope.name[:12]}: {what}, freed {format_size(freed)} ({freed} bytes)")
    console.print_stdout(f"freed {format_size(freed_total)} ({freed_total} bytes) in {root}")
    return CachePrune(exit_code=exit_code)


# --- cache-export / cache-import -----------------------------------------------------------------


class CacheExportSubsystem(GoalSubsystem):
    name = "cache-export"
    help = softwrap(
        """
        Write this checkout's caches of one tool to one archive file, to restore on another
        machine with `cache-import` (e.g. a CI job refreshing a pre-warmed cache for runners that
        use `[mypy].shared_cache = "read-only"`).
        """
    )

    tool = StrOption(default="mypy", help="The tool whose caches to export.")
    output = StrOption(default=None, help="The archive to write (relative to the buildroot); required.")


class CacheExport(Goal):
    subsystem_cls = CacheExportSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def cache_export(
    console: Console, subsystem: CacheExportSubsystem, global_options: GlobalOptions, cacheplug: CachePlug,
    union_membership: UnionMembership,
    build_root: BuildRoot,
) -> CacheExport:
    root = _start(cacheplug, global_options, union_membership, "[cache-export].tool", subsystem.tool)
    if not subsystem.output:
        raise ValueError("`[cache-export].output` is required: the path of the archive to write, e.g. --output=mypy-cache.tar.gz")
    # Only this checkout's scopes (and those every checkout shares): the named cache may hold
    # other repos' too.
    scopes = [s for s in lifecycle.scopes(root, subsystem.tool) if lifecycle.describe(s).get("buildroot") in (build_root.path, "")]
    if not scopes:
        console.print_stderr(
            f"cache-export: no {subsystem.tool} cache of this checkout in {root}: run the tool first "
            f"(e.g. `pants check ::`). Nothing written."
        )
        return CacheExport(exit_code=1)
    output = Path(build_root.path, subsystem.output)
    entries, size = snapshot.export(scopes, output, cacheplug.lock_timeout, grouping(union_membership))
    console.print_stdout(f"exported {len(scopes)} {subsystem.tool} cache scopes, {entries} entries ({format_size(size)}) to {output}")
    return CacheExport(exit_code=0)


class CacheImportSubsystem(GoalSubsystem):
    name = "cache-import"
    help = softwrap(
        """
        Merge an archive written by `cache-export` into this checkout's caches. The archive is
        validated whole before anything is written: a truncated, corrupt or foreign one is refused
        and the caches stay as they were. Where both hold an entry, the archive's wins.
        """
    )

    input = StrOption(default=None, help="The archive to read (relative to the buildroot); required.")


class CacheImport(Goal):
    subsystem_cls = CacheImportSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def cache_import(
    console: Console, subsystem: CacheImportSubsystem, global_options: GlobalOptions, cacheplug: CachePlug,
    union_membership: UnionMembership,
    build_root: BuildRoot,
) -> CacheImport:
    root = _start(cacheplug, global_options, union_membership, "", None)
    if not subsystem.input:
        raise ValueError("`[cache-import].input` is required: the path of an archive written by `cache-export`")
    archive = Path(build_root.path, subsystem.input)
    try:
        done = snapshot.import_(archive, root, build_root.path, cacheplug.max_size_bytes,
                                cacheplug.lock_timeout, grouping(union_membership))
    except snapshot.BadSnapshot as e:
        console.print_stderr(f"cache-import: refused {archive}: {e}. The caches were not changed.")
        return CacheImport(exit_code=1)
    except (Busy, OSError) as e:
        console.print_stderr(f"cache-import: failed on {archive}: {e}. Scopes imported before this keep what was imported (each entry whole).")
        return CacheImport(exit_code=1)
    for scope, entries in done:
        console.print_stdout(f"imported {entries} entries into {scope.parent.name} {scope.name[:12]}")
    return CacheImport(exit_code=0)


def rules() -> Iterable[Rule]:
    return collect_rules()
