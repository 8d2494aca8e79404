"""cacheplug: persistent, shared caches for sandboxed tools in Pants.

Enable with `backend_packages.add = ["cacheplug"]` in pants.toml; tool backends such as
`cacheplug.mypy` register this too.
"""

from __future__ import annotations

from typing import Iterable

from pants.engine.rules import Rule
from pants.engine.unions import UnionRule

from cacheplug import engine, goals, subsystem


def rules() -> Iterable[Rule | UnionRule]:
    return [*subsystem.rules(), *engine.rules(), *goals.rules()]
