from __future__ import annotations

import pytest
from pants.engine.rules import QueryRule
from pants.testutil.rule_runner import RuleRunner

from cacheplug import register
from cacheplug.subsystem import CachePlug


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(rules=[*register.rules(), QueryRule(CachePlug, [])])


def test_subsystem_is_registered_with_defaults(rule_runner: RuleRunner) -> None:
    cacheplug = rule_runner.request(CachePlug, [])
    assert cacheplug.lock_timeout == 60.0
    cacheplug.validate()


def test_lock_timeout_is_configurable(rule_runner: RuleRunner) -> None:
    rule_runner.set_options(["--cacheplug-lock-timeout=2.5"])
    assert rule_runner.request(CachePlug, []).lock_timeout == 2.5


@pytest.mark.parametrize("bad", ["-1", "nan"])
def test_bad_lock_timeout_names_option_and_allowed_values(rule_runner: RuleRunner, bad: str) -> None:
    rule_runner.set_options([f"--cacheplug-lock-timeout={bad}"])
    with pytest.raises(ValueError, match=r"\[cacheplug\]\.lock_timeout.*>= 0"):
        rule_runner.request(CachePlug, []).validate()
