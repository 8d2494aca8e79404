"""cacheplug.python: Pants' Python backend, with `pants test` given shared test caches.

A drop-in replacement for `pants.backend.python` in `[GLOBAL].backend_packages`: every target,
goal and option of Pants' Python backend, with each pytest process run through cacheplug's
shared cache (pytest's `--lf` state, Hypothesis' example database, the library caches
`[pytest].library_caches` names), plus `[pytest].shared_cache` and `[pytest].library_caches`.
"""

from __future__ import annotations

from typing import Iterable

from pants.build_graph.build_file_aliases import BuildFileAliases
from pants.engine.target import Target

from pants.backend.python import register as pants_python
from pants.backend.python.subsystems.pytest import PyTest
from pants.engine.rules import Rule
from pants.engine.unions import UnionRule

from cacheplug import register as cacheplug_register
from cacheplug.python import rules as python_rules
from cacheplug.python.subsystem import PyTestCacheOptions


def rules() -> Iterable[Rule | UnionRule]:
    kept = [r for r in pants_python.rules() if getattr(r, "canonical_name", None) != python_rules.REPLACED_PANTS_RULE]
    return (
        *cacheplug_register.rules(),
        *kept,
        *python_rules.rules(),
        PyTest.register_plugin_options(PyTestCacheOptions),
    )


def target_types() -> Iterable[type[Target]]:
    return pants_python.target_types()


def build_file_aliases() -> BuildFileAliases:
    return pants_python.build_file_aliases()
