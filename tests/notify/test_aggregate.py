"""Grouping repeats of an event within a window."""

from __future__ import annotations

import pytest

from framework0_errors.notify import NotificationEvent
from framework0_errors.notify.aggregate import Aggregator

from .conftest import failed_event, make_record

A = failed_event(make_record(ConnectionError("host 10.0.0.1 down")))
A_AGAIN = failed_event(make_record(ConnectionError("host 10.0.0.2 down")))  # same fingerprint
B = failed_event(make_record(ValueError("bad row")))


def test_repeats_within_the_window_make_one_group() -> None:
    """Same key within the window: one group with the count, first/last and latest event."""
    aggregator = Aggregator(window=60)
    assert aggregator.add(A, 100.0) == []
    for offset in range(1, 1000):
        assert aggregator.add(A_AGAIN, 100.0 + offset * 0.05) == []
    assert len(aggregator) == 1
    (group,) = aggregator.pop_all()
    assert (group.count, group.first) == (1000, 100.0)
    assert group.last == pytest.approx(149.95)
    assert group.event is A_AGAIN
    assert len(aggregator) == 0


def test_groups_close_when_their_window_ends() -> None:
    """``pop_due`` hands out the groups whose window closed, oldest first, once."""
    aggregator = Aggregator(window=10)
    aggregator.add(A, 0.0)
    aggregator.add(B, 5.0)
    assert aggregator.next_due() == 10.0
    assert aggregator.pop_due(9.9) == []
    assert [g.event for g in aggregator.pop_due(10.0)] == [A]
    assert aggregator.next_due() == 15.0
    assert [g.event for g in aggregator.pop_due(100.0)] == [B]
    assert aggregator.next_due() is None
    assert aggregator.pop_due(200.0) == []


def test_an_event_after_the_window_closes_its_group_and_opens_another() -> None:
    """``add`` returns the closed groups, and the late event starts fresh."""
    aggregator = Aggregator(window=10)
    aggregator.add(A, 0.0)
    aggregator.add(A, 1.0)
    (closed,) = aggregator.add(A, 10.0)
    assert closed.count == 2
    assert A.group_key in aggregator
    (group,) = aggregator.pop_all()
    assert (group.count, group.first) == (1, 10.0)


def test_a_clock_stepping_back_does_not_move_last_backwards() -> None:
    """``last`` is the latest time seen."""
    aggregator = Aggregator(window=10)
    aggregator.add(A, 5.0)
    aggregator.add(A, 3.0)
    (group,) = aggregator.pop_all()
    assert (group.first, group.last, group.count) == (5.0, 5.0, 2)


def test_outcomes_and_breakers_have_their_own_keys() -> None:
    """A recovery is not a repeat of a failure; breakers group by name and outcome."""
    record = make_record(ConnectionError("down"))
    events = [
        failed_event(record),
        failed_event(record, outcome="recovered"),
        NotificationEvent("r", None, "run", "breaker_opened", None, breaker="api"),
        NotificationEvent("r", "s", "run", "breaker_opened", record, breaker="api"),
        NotificationEvent("r", "s", "run", "breaker_closed", None, breaker="api"),
        NotificationEvent("r", "s", "run", "rolled_back", None),
        NotificationEvent("r", "s", "run", "rolled_back", None),
    ]
    aggregator = Aggregator(window=10)
    for event in events:
        aggregator.add(event, 0.0)
    assert [g.count for g in aggregator.pop_all()] == [1, 1, 2, 1, 2]


@pytest.mark.parametrize("window", [0, -1.0])
def test_window_must_be_positive(window: float) -> None:
    """A window of zero or less is refused."""
    with pytest.raises(ValueError, match="window must be positive"):
        Aggregator(window=window)
