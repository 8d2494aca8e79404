"""Fixtures shared by the tests of this directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def named_cache(tmp_path: Path) -> Path:
    """A fresh named cache dir (Pants' named_caches/cacheplug) for the shim's runs."""
    return tmp_path / "named_caches" / "cacheplug"
