"""Tests for the error category and severity scales."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable

import pytest

from framework0_errors.categories import ErrorCategory, ErrorSeverity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NETWORK", ErrorCategory.NETWORK),
        ("network", ErrorCategory.NETWORK),
        ("  Validation ", ErrorCategory.VALIDATION),
        ("framework", ErrorCategory.FRAMEWORK),
        ("unknown", ErrorCategory.UNKNOWN),
        (ErrorCategory.SECURITY, ErrorCategory.SECURITY),
    ],
)
def test_category_parses_case_insensitively(text: str, expected: ErrorCategory) -> None:
    """Categories parse from any case, ignoring surrounding blanks."""
    assert ErrorCategory.parse(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("high", ErrorSeverity.HIGH),
        ("LOW", ErrorSeverity.LOW),
        (" Fatal", ErrorSeverity.FATAL),
        ("critical", ErrorSeverity.CRITICAL),
        (ErrorSeverity.MEDIUM, ErrorSeverity.MEDIUM),
    ],
)
def test_severity_parses_case_insensitively(text: str, expected: ErrorSeverity) -> None:
    """Severities parse from any case, ignoring surrounding blanks."""
    assert ErrorSeverity.parse(text) is expected


@pytest.mark.parametrize("text", ["", "netwrk", "1", "NETWORK_ERROR"])
def test_unknown_category_lists_allowed_values(text: str) -> None:
    """An unknown category is a ValueError naming the input and every allowed value."""
    with pytest.raises(ValueError, match="unknown error category") as info:
        ErrorCategory.parse(text)
    assert repr(text) in str(info.value)
    for member in ErrorCategory:
        assert member.name in str(info.value)


@pytest.mark.parametrize("value", ["hgh", "", 3, None])
def test_unknown_severity_lists_allowed_values(value: object) -> None:
    """A bad severity (including a non-string) is a ValueError listing the allowed ones."""
    with pytest.raises(ValueError, match="allowed: LOW, MEDIUM, HIGH, CRITICAL, FATAL"):
        ErrorSeverity.parse(value)  # type: ignore[arg-type]


def test_severities_are_ordered() -> None:
    """Severities order LOW < MEDIUM < HIGH < CRITICAL < FATAL."""
    shuffled = [ErrorSeverity.FATAL, ErrorSeverity.LOW, ErrorSeverity.HIGH, ErrorSeverity.MEDIUM]
    assert sorted([*shuffled, ErrorSeverity.CRITICAL]) == list(ErrorSeverity)
    assert ErrorSeverity.HIGH >= ErrorSeverity.HIGH
    assert ErrorSeverity.HIGH <= ErrorSeverity.CRITICAL
    assert ErrorSeverity.FATAL > ErrorSeverity.CRITICAL
    assert not ErrorSeverity.LOW > ErrorSeverity.MEDIUM
    assert max(ErrorSeverity) is ErrorSeverity.FATAL


@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge])
def test_severity_does_not_compare_with_numbers(op: Callable[[object, object], bool]) -> None:
    """A severity never silently compares with a bare number."""
    with pytest.raises(TypeError):
        op(ErrorSeverity.HIGH, 3)


def test_category_serialises_as_its_name() -> None:
    """A category is a str whose JSON form is its upper-case name."""
    assert json.dumps([ErrorCategory.NETWORK]) == '["NETWORK"]'
    assert str(ErrorCategory.BUSINESS) == "BUSINESS"
    assert [c.name for c in ErrorCategory] == [
        "SYSTEM",
        "NETWORK",
        "VALIDATION",
        "BUSINESS",
        "SECURITY",
        "FRAMEWORK",
        "UNKNOWN",
    ]
