"""cacheplug's options on the `[mypy]` scope."""

from __future__ import annotations

from pants.option.option_types import BoolOption
from pants.util.strutil import softwrap

from cacheplug.subsystem import SharedCacheOptions


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
