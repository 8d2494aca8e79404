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


@pytest.mark.parametrize(
    "text, size",
    [("1GiB", 1 << 30), ("512 mib", 512 << 20), ("1.5KiB", 1536), ("2MB", 2_000_000), ("4096", 4096),
     ("none", 0), ("0", 0), ("1TB", 10**12)],
)
def test_max_size_units(rule_runner: RuleRunner, text: str, size: int) -> None:
    rule_runner.set_options([f"--cacheplug-max-size={text}"])
    cacheplug = rule_runner.request(CachePlug, [])
    cacheplug.validate()
    assert cacheplug.max_size_bytes == size


def test_max_size_default_is_1gib(rule_runner: RuleRunner) -> None:
    assert rule_runner.request(CachePlug, []).max_size_bytes == 1 << 30


@pytest.mark.parametrize("bad", ["-1GiB", "12XB", "GiB", "", "1e9", "nan", "0.5B", "1.2.3MB", "10 Mb/s"])
def test_bad_max_size_names_option_and_allowed_values(rule_runner: RuleRunner, bad: str) -> None:
    rule_runner.set_options([f"--cacheplug-max-size={bad}"])
    with pytest.raises(ValueError, match=r"\[cacheplug\]\.max_size.*KiB.*none = unlimited"):
        rule_runner.request(CachePlug, []).validate()
