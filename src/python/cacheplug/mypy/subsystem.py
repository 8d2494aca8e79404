"""cacheplug's options on the `[mypy]` scope."""

from __future__ import annotations

from enum import Enum

from pants.option.option_types import EnumOption
from pants.util.strutil import softwrap


class SharedCache(Enum):
    read_write = "read-write"
    read_only = "read-only"
    off = "off"


class MyPyCacheOptions:
    shared_cache = EnumOption(
        default=SharedCache.read_write,
        help=softwrap(
            """
            How mypy uses cacheplug's shared cache (added by the `cacheplug.mypy` backend).

            `read-write`: each mypy run starts from the shared cache and commits what it wrote
            back, merged per module with what concurrent runs committed.
            `read-only`: start from the shared cache, never write it (e.g. CI runners on a
            pre-warmed cache).
            `off`: run mypy cold, with no cache at all.
            """
        ),
    )
