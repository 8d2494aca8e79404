"""cacheplug's options on the `[pytest]` scope, and the caches a test run can be given."""

from __future__ import annotations

from typing import Iterable

from pants.option.option_types import StrListOption
from pants.util.strutil import softwrap

from cacheplug.subsystem import SharedCacheOptions

# Always given unless `shared_cache = "off"`: pytest's cache (`-o cache_dir=`, rules.py) and
# Hypothesis' storage directory, through this variable.
HYPOTHESIS_ENV = "HYPOTHESIS_STORAGE_DIRECTORY"

# `[pytest].library_caches`: name (also its subdirectory) -> the environment variable that points
# the library at it. Each library writes its files by rename (a temp file, a `.incomplete` or
# `.partial` download), except matplotlib's font list (in place: given as a copy).
LIBRARY_CACHES = {
    "hf-hub": "HF_HUB_CACHE",
    "hf-datasets": "HF_DATASETS_CACHE",
    "torch-hub": "TORCH_HOME",
    "matplotlib": "MPLCONFIGDIR",
    "triton": "TRITON_CACHE_DIR",
}


class PyTestCacheOptions(SharedCacheOptions):
    """`[pytest].shared_cache` (every cacheplug backend's), and which library caches to give."""

    library_caches = StrListOption(
        default=[],
        help=softwrap(
            f"""
            Library caches each test process gets from cacheplug's shared cache (added by the
            `cacheplug.python` backend), each pointed at a private copy in the sandbox through its
            environment variable and committed back after the run: any of
            {", ".join(f"`{name}` ({env})" for name, env in LIBRARY_CACHES.items())}.

            pytest's own cache and Hypothesis' example database are always shared unless
            `[pytest].shared_cache = "off"`. The Hugging Face datasets cache keys its entries on
            the data file's absolute path and mtime, which change with every sandbox: it does not
            get warm across runs (docs/TOOL_CACHES.md).
            """
        ),
    )


def checked_library_caches(names: Iterable[str]) -> tuple[str, ...]:
    """The names, checked; ValueError naming the bad one and what is allowed."""
    names = tuple(names)
    for name in names:
        if name not in LIBRARY_CACHES:
            raise ValueError(
                f"Invalid value in `[pytest].library_caches`: {name!r}. "
                f"Allowed: {', '.join(repr(n) for n in LIBRARY_CACHES)}."
            )
    return tuple(sorted(set(names)))
