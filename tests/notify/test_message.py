"""What a message says: its fields and its summary."""

from __future__ import annotations

from typing import Any

import pytest

from framework0_errors.notify import OUTCOMES, Message, NotificationEvent
from framework0_errors.redact import Redactor

from .conftest import START, failed_event, make_record


def build(event: NotificationEvent, count: int = 1, redactor: Redactor | None = None) -> Message:
    return Message.build(
        event, count=count, first=START, last=START + 61, redactor=redactor or Redactor()
    )


def test_fields_of_a_failure() -> None:
    """A failure tells recipe, step, run, error, category, severity, attempts, count and hint."""
    record = make_record(ConnectionError("orders API down"), attempt=2)
    fields = dict(build(failed_event(record, attempts=None), count=3).fields)
    assert fields == {
        "recipe": "orders.yaml",
        "step": "load_orders",
        "run_id": "run-42",
        "outcome": "failed",
        "breaker": None,
        "error_type": "ConnectionError",
        "error_message": "orders API down",
        "category": "NETWORK",
        "severity": "HIGH",
        "transient": True,
        "attempts": 2,  # from the record when the event does not say
        "hint": "Check that the orders API is up",
        "fingerprint": record.fingerprint,
        "count": 3,
        "first": "2023-11-14T22:13:20Z",
        "last": "2023-11-14T22:14:21Z",
        "summary": "orders.yaml: step 'load_orders' failed after 2 attempts: ConnectionError: "
        "orders API down [NETWORK/HIGH] (3 times, 2023-11-14T22:13:20Z to 2023-11-14T22:14:21Z)",
    }


def test_every_text_is_redacted_again() -> None:
    """Values the notifier's redactor knows are masked in every field and the summary."""
    record = make_record(ConnectionError("token tok-999 rejected"), hint="rotate tok-999")
    message = build(
        failed_event(record, run_id="tok-999"), redactor=Redactor(secret_values=["tok-999"])
    )
    assert "tok-999" not in repr(message.fields)
    assert message.fields["error_message"] == "token *** rejected"
    assert message.fields["run_id"] == "***"


@pytest.mark.parametrize(
    ("event", "summary"),
    [
        (
            NotificationEvent("r.yaml", "s", "run", "breaker_opened", None, breaker="api"),
            "r.yaml: circuit breaker 'api' opened",
        ),
        (
            NotificationEvent(
                "r.yaml", "s", "run", "breaker_closed", None, attempts=4, breaker="api"
            ),
            "r.yaml: circuit breaker 'api' closed",
        ),
        (
            NotificationEvent("r.yaml", None, "run", "rolled_back", None),
            "r.yaml: recipe was rolled back",
        ),
        (
            NotificationEvent("r.yaml", "s", "run", "recovered", None, attempts=1),
            "r.yaml: step 's' recovered after 1 attempt",
        ),
    ],
)
def test_summaries(event: NotificationEvent, summary: str) -> None:
    """Each outcome reads as a sentence."""
    assert build(event).summary == summary


@pytest.mark.parametrize(
    ("text", "shown"), [("", "ValueError"), ("  \n", "ValueError"), ("a\nb", "ValueError: a")]
)
def test_summary_shows_the_first_line_of_the_error(text: str, shown: str) -> None:
    """Only the first line of a message goes into the summary; an empty one is left out."""
    record = make_record(ValueError(text))
    assert f"failed after 3 attempts: {shown} [NETWORK/HIGH]" in build(failed_event(record)).summary


def test_long_errors_are_clipped_in_the_summary() -> None:
    """The summary stays one readable line."""
    record = make_record(ValueError("x" * 1000))
    summary = build(failed_event(record)).summary
    assert "x" * 299 + "…" in summary
    assert "x" * 300 not in summary


def test_format_fields_shows_a_dash_for_none() -> None:
    """Template fields are text; fields that do not apply are ``-``."""
    event = NotificationEvent("r.yaml", None, "run", "rolled_back", None)
    fields = build(event).format_fields()
    assert (fields["step"], fields["count"], fields["severity"]) == ("-", "1", "-")


@pytest.mark.parametrize("outcome", ["FAILED", "succeeded", ""])
def test_unknown_outcomes_are_refused(outcome: str) -> None:
    """Only the documented outcomes exist."""
    with pytest.raises(ValueError, match="outcome must be one of failed, recovered"):
        NotificationEvent("r", "s", "run", outcome, None)


def test_outcomes_match_the_config_models() -> None:
    """The outcomes here are the ones routes may name."""
    from typing import get_args

    from framework0_errors.config.models import RouteMatch

    annotation: Any = RouteMatch.model_fields["outcomes"].annotation
    (listed,) = [a for a in get_args(annotation) if a is not type(None)]
    assert set(get_args(get_args(listed)[0])) == set(OUTCOMES)
