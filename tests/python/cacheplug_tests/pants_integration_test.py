"""A real `pants` process, in a temp repo, with the plugin enabled."""

from __future__ import annotations

from pathlib import Path

from cacheplug_tests.pants_repo import PantsRepo


def test_help_lists_cacheplug_options(tmp_path: Path) -> None:
    repo = PantsRepo(tmp_path / "repo", backends=["cacheplug"])
    result = repo.run("help", "cacheplug")
    assert result.exit_code == 0, result.stderr
    assert "`cacheplug` subsystem options" in result.stdout
    assert "--cacheplug-lock-timeout=<float>" in result.stdout
    assert "Seconds a run waits for the exclusive lock" in result.stdout


def test_plugin_loads_and_rejects_unknown_option(tmp_path: Path) -> None:
    repo = PantsRepo(tmp_path / "repo", backends=["cacheplug"])
    result = repo.run("--cacheplug-no-such-option=1", "help", "cacheplug")
    assert result.exit_code != 0
    assert "no-such-option" in result.stderr
