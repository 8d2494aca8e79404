"""cacheplug.mypy: Pants' mypy backend with a persistent, shared, concurrency-safe cache.

A drop-in replacement for `pants.backend.python.typecheck.mypy` in `[GLOBAL].backend_packages`:
the same `[mypy]` options, `check` output and exit codes, plus `[mypy].shared_cache`.
"""

from __future__ import annotations

from typing import Iterable

from pants.backend.python.typecheck.mypy import mypyc, skip_field
from pants.backend.python.typecheck.mypy import subsystem as pants_mypy_subsystem
from pants.backend.python.typecheck.mypy.subsystem import MyPy
from pants.engine.rules import Rule
from pants.engine.unions import UnionRule

from cacheplug import register as cacheplug_register
from cacheplug.mypy import rules as mypy_rules
from cacheplug.mypy.subsystem import MyPyCacheOptions


def rules() -> Iterable[Rule | UnionRule]:
    return (
        *cacheplug_register.rules(),
        *mypy_rules.rules(),
        *mypyc.rules(),
        *skip_field.rules(),
        *pants_mypy_subsystem.rules(),
        MyPy.register_plugin_options(MyPyCacheOptions),
    )
