"""Helpers for the tests of `pants test` with the cacheplug.python backend in temp repos."""

from __future__ import annotations

import re

from cacheplug.python import cache_policy
from pathlib import Path

from cacheplug_tests.pants_repo import PantsRepo, PantsResult
from cacheplug_tests.storekit import PYTEST_SPEC, check_scope, scope_path

PYTHON = '[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n'
LASTFAILED = "pytest/v/cache/lastfailed"


def shared(repo: PantsRepo) -> dict[str, bytes]:
    """{relpath: content} of the shared test caches, checked whole."""
    scope = scope_path(repo.named_caches / "cacheplug", PYTEST_SPEC)
    groups, problems = check_scope(scope, group_problem=lambda files: None, grouping=cache_policy.group_of)
    assert problems == []
    return {rel: data for files in groups.values() for rel, data in files.items()}


def results(output: str) -> dict[str, str]:
    """What Pants says of each file's run (`Completed: Run Pytest - //a_test.py:t - failed (exit
    code 1).`), as {address: "succeeded" or "failed (exit code 1)"}."""
    return dict(re.findall(r"Completed: Run Pytest - (.+?) - (succeeded|failed.*?)\.?$", output, re.M))


def plain_then_ours(tmp_path: Path, files: dict[str, str]) -> tuple[PantsResult, PantsRepo]:
    """`pants test ::` on `files` with Pants' own Python backend (the oracle), and a repo with the
    same files and `cacheplug.python`, sharing Pants' caches (the PEXes are built once)."""
    caches = tmp_path / "caches"
    plain_repo = PantsRepo(tmp_path / "plain", ["pants.backend.python"], PYTHON, caches=caches)
    plain_repo.write(files)
    repo = PantsRepo(tmp_path / "ours", ["cacheplug.python"], PYTHON, caches=caches)
    repo.write(files)
    return plain_repo.run("test", "::"), repo
