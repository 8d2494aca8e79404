"""cacheplug's options on the `[mypy]` scope."""

from __future__ import annotations

from pants.option.option_types import BoolOption, IntOption
from pants.util.strutil import softwrap

from cacheplug.subsystem import SharedCacheOptions


UNIT_SIZE_DEFAULT = 100


class MyPyCacheOptions(SharedCacheOptions):
    """`[mypy].shared_cache` (every cacheplug backend's), and separate compilation."""

    separate_compilation = BoolOption(
        default=False,
        help=softwrap(
            """
            Check each module with its own mypy process (added by the `cacheplug.mypy` backend).

            Units follow mypy's own import graph, from each file's imports (not only Pants'
            dependencies): an import cycle is one unit. Each unit gets the mypy cache of typeshed
            and the third-party requirements (made once per partition by a base unit) and the
            cache outputs of its dependencies, and outputs its own modules' cache: a hermetic
            process that Pants' process cache, local or remote, reuses until its inputs change.
            Independent units run in parallel. Diagnostics and exit codes are those of
            whole-partition mypy with no cache. `[mypy].shared_cache` is not used in this mode.

            With a remote cache (`[GLOBAL].remote_cache_read`, `remote_store_address`), other
            checkouts and machines reuse the units too, results with type errors included,
            whichever machine checked first.
            """
        ),
    )
    separate_compilation_unit_size = IntOption(
        default=UNIT_SIZE_DEFAULT,
        help=softwrap(
            f"""
            With `separate_compilation`: about how many files one mypy process checks (an integer,
            at least 1; 1: one process per import cycle or module).

            A process costs mypy's start-up and the loading of its dependencies' caches, about as
            much as checking tens of modules, so units of single modules make a cold check many
            times slower than one whole-partition run; larger units re-check more modules after an
            edit. Modules are joined in a dependency order (a unit may hold a module and modules
            it imports; modules that nothing imports last, in units of half the size, since
            most edits land there); units that do not import each other run in parallel. Default
            {UNIT_SIZE_DEFAULT}: see bench/RESULTS.md.
            """
        ),
    )


def checked_unit_size(size: int) -> int:
    if size < 1:
        raise ValueError(
            f"Invalid value for `[mypy].separate_compilation_unit_size`: {size}. Expected an integer >= 1 "
            "(1: one mypy process per import cycle or module)."
        )
    return size
