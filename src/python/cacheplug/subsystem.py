"""The `[cacheplug]` subsystem: options shared by every tool cache cacheplug manages."""

from __future__ import annotations

from typing import Iterable

from pants.engine.rules import Rule
from pants.option.option_types import FloatOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap


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

    def validate(self) -> None:
        """Raise a ValueError naming the bad option and what is allowed."""
        if not self.lock_timeout >= 0:  # `not >=` also rejects NaN
            raise ValueError(
                f"Invalid value for `[{self.options_scope}].lock_timeout`: {self.lock_timeout!r}. "
                "It must be a number of seconds >= 0 (0 = do not wait)."
            )


def rules() -> Iterable[Rule]:
    return [*CachePlug.rules()]
