"""The `[cacheplug]` subsystem: options shared by every tool cache cacheplug manages."""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Iterable

from pants.engine.rules import Rule
from pants.option.option_types import EnumOption, FloatOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap


# Binary units are the unambiguous ones; SI units are accepted with their SI meaning (1 MB = 10**6
# bytes, as disks are sold), so "500MB" is never silently 500 MiB. Case-insensitive: a byte budget
# has no bits to confuse with.
SIZE_UNITS = {
    "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}
SIZE_FORMS = "a number of bytes with a unit (B, KiB, MiB, GiB, TiB = powers of 1024; KB, MB, GB, TB = powers of 1000), e.g. 512MiB or 2GiB; 0 or none = unlimited"


def parse_size(text: str) -> int:
    """Bytes in `text` ("2GiB", "1.5 GB", "4096", "none"); 0 means unlimited. ValueError if bad."""
    value = text.strip().lower()
    if value in ("none", "0"):
        return 0
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?)\s*([a-z]*)", value)
    if not match or match.group(2) not in SIZE_UNITS and match.group(2) != "":
        raise ValueError(text)
    size = float(match.group(1)) * SIZE_UNITS[match.group(2) or "b"]
    if not math.isfinite(size) or size < 1 and size != 0:
        raise ValueError(text)
    return int(size)


class CachePlug(Subsystem):
    options_scope = "cacheplug"
    help = softwrap(
        """
        Persistent, shared caches for tools that Pants runs in sandboxes (mypy first).

        Each wrapped tool gets a private copy of its named cache in the sandbox and commits what it
        wrote back, entry by entry and atomically, under a file lock. The cache never fails a build:
        any cache problem becomes a warning and the tool's own result stands.
        """
    )

    lock_timeout = FloatOption(
        default=60.0,
        help=softwrap(
            """
            Seconds a run waits for the exclusive lock on a shared cache before committing. If the
            wait times out, the run's results are still reported, its cache writes are skipped with a
            warning, and the next run redoes that work. Must be >= 0; 0 means try once, never wait.
            """
        ),
    )

    max_size = StrOption(
        default="1GiB",
        help=softwrap(
            f"""
            The byte budget of each tool cache scope (one per tool, repo, resolve, interpreter,
            tool version and options): after a commit takes a scope over it, the least recently
            used entries are evicted, down to {int(100 * 0.9)}% of it. A run reusing an entry
            counts as a use. Allowed: {SIZE_FORMS}. The default suits a laptop: a 1000-module
            project's mypy cache is about 20 MiB, one with heavy third-party stubs a few hundred.
            """
        ),
    )

    @property
    def max_size_bytes(self) -> int:
        return parse_size(self.max_size)

    def validate(self) -> None:
        """Raise a ValueError naming the bad option and what is allowed."""
        if not self.lock_timeout >= 0:  # `not >=` also rejects NaN
            raise ValueError(
                f"Invalid value for `[{self.options_scope}].lock_timeout`: {self.lock_timeout!r}. "
                "It must be a number of seconds >= 0 (0 = do not wait)."
            )
        try:
            parse_size(self.max_size)
        except ValueError:
            raise ValueError(
                f"Invalid value for `[{self.options_scope}].max_size`: {self.max_size!r}. "
                f"It must be {SIZE_FORMS}."
            ) from None


class SharedCache(Enum):
    """How a tool uses its shared cache: every cacheplug tool backend's `shared_cache` option."""

    read_write = "read-write"
    read_only = "read-only"
    off = "off"


class SharedCacheOptions:
    """The options every cacheplug tool backend adds to its tool's scope (e.g. `[mypy]`), with
    `Subsystem.register_plugin_options`."""

    shared_cache = EnumOption(
        default=SharedCache.read_write,
        help=softwrap(
            """
            How this tool uses cacheplug's shared cache (added by a cacheplug backend).

            `read-write`: each run starts from the shared cache and commits what it wrote back,
            merged per entry with what concurrent runs committed.
            `read-only`: start from the shared cache, never write it (e.g. CI runners on a
            pre-warmed cache).
            `off`: run the tool as Pants would, with no shared cache.
            """
        ),
    )


def rules() -> Iterable[Rule]:
    return [*CachePlug.rules()]
