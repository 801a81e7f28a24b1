"""Routing events to channels."""

from __future__ import annotations

from typing import Any

import pytest

from framework0_errors.categories import ErrorCategory, ErrorSeverity
from framework0_errors.config.models import Route, RouteMatch
from framework0_errors.notify import NotificationEvent, Router, route_matches

from .conftest import failed_event, make_record

RECORD = make_record(
    ConnectionError("down"), category=ErrorCategory.NETWORK, severity=ErrorSeverity.HIGH
)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({}, True),
        ({"min_severity": "MEDIUM"}, True),
        ({"min_severity": "HIGH"}, True),
        ({"min_severity": "CRITICAL"}, False),
        ({"severity": ["HIGH", "FATAL"]}, True),
        ({"severity": ["LOW"]}, False),
        ({"categories": ["NETWORK"]}, True),
        ({"categories": ["SECURITY", "SYSTEM"]}, False),
        ({"steps": ["load_orders"]}, True),
        ({"steps": ["other"]}, False),
        ({"outcomes": ["failed", "recovered"]}, True),
        ({"outcomes": ["recovered"]}, False),
        ({"min_severity": "HIGH", "categories": ["NETWORK"], "steps": ["load_orders"]}, True),
        ({"min_severity": "HIGH", "categories": ["NETWORK"], "steps": ["other"]}, False),
    ],
)
def test_every_condition_given_must_hold(match: dict[str, Any], expected: bool) -> None:
    """A route matches when all of its conditions hold; an empty one matches everything."""
    assert route_matches(RouteMatch.model_validate(match), failed_event(RECORD)) is expected


@pytest.mark.parametrize(
    "match",
    [{"min_severity": "LOW"}, {"severity": ["LOW"]}, {"categories": ["NETWORK"]}, {"steps": ["s"]}],
)
def test_record_conditions_do_not_match_events_without_one(match: dict[str, Any]) -> None:
    """Severity and category need a record; a steps condition needs a step."""
    event = NotificationEvent("r.yaml", None, "run", "breaker_opened", None, breaker="api")
    assert not route_matches(RouteMatch.model_validate(match), event)


def test_channels_come_once_in_first_named_order() -> None:
    """Channels of all matching routes, then the step's ``notify:`` for failures."""
    router = Router(
        [
            Route.model_validate({"channels": ["b", "a"]}),
            Route.model_validate({"match": {"min_severity": "FATAL"}, "channels": ["x"]}),
            Route.model_validate({"match": {"outcomes": ["failed"]}, "channels": ["a", "c"]}),
        ]
    )
    assert router.channels_for(failed_event(RECORD, extra_channels=("d", "b"))) == (
        "b",
        "a",
        "c",
        "d",
    )


def test_step_notify_channels_only_apply_to_final_failures() -> None:
    """``extra_channels`` of a recovered event are ignored."""
    router = Router([])
    event = failed_event(RECORD, outcome="recovered", extra_channels=("ops",))
    assert router.channels_for(event) == ()
    assert router.channels_for(failed_event(RECORD, extra_channels=("ops",))) == ("ops",)
