"""Every combination of policies keeps the pipeline's promises, whatever the attempt does."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from framework0_errors.attempt import Abandon, Tally
from framework0_errors.pipeline import FallbackFailedError
from framework0_errors.testing import fake_time

from .test_units import _pipeline

POLICIES: dict[str, dict[str, Any]] = {
    "retry": {"max_attempts": 3, "initial_delay": 0.5, "retry_on": ["ConnectionError"]},
    "circuit_breaker": {"failure_threshold": 5},
    "bulkhead": {"max_concurrent": 1},
    "timeout": {"seconds": 30},
    "fallback": {"value": {}},
}
COMBINATIONS = [
    combo for n in range(len(POLICIES) + 1) for combo in itertools.combinations(POLICIES, n)
]


def _run(combo: tuple[str, ...], behaviour: str) -> tuple[Any, Any, Tally, list[int]]:
    """Run ``behaviour`` through the policies of ``combo``; return what came of it."""
    pipeline = _pipeline({name: POLICIES[name] for name in combo})
    calls: list[int] = []
    error = {"flaky": ConnectionError("once"), "dead": ConnectionError("down")}.get(behaviour)

    def attempt(number: int, abandon: Abandon) -> str:
        calls.append(number)
        if behaviour == "interrupt":
            raise KeyboardInterrupt
        if behaviour == "dead" or (behaviour == "flaky" and number == 1):
            assert error is not None
            raise error
        return "done"

    tally = Tally()
    fallback = (lambda exc: "fallback") if "fallback" in combo else None
    try:
        outcome: Any = pipeline.run(attempt, fallback=fallback, tally=tally)
    except BaseException as exc:
        outcome = exc
    return pipeline, outcome, tally, calls


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "+".join(c) or "none")
@pytest.mark.parametrize("behaviour", ["ok", "flaky", "dead", "interrupt"])
def test_every_combination_keeps_its_promises(combo: tuple[str, ...], behaviour: str) -> None:
    """Right value or error, right attempt count, slots given back, no trial slot left taken."""
    with fake_time():
        pipeline, outcome, tally, calls = _run(combo, behaviour)
    retries = "retry" in combo
    if behaviour == "ok":
        assert (outcome, calls, tally.outcome) == ("done", [1], "succeeded")
    elif behaviour == "flaky" and retries:
        assert (outcome, calls, tally.outcome) == ("done", [1, 2], "recovered")
    elif behaviour == "interrupt":
        assert isinstance(outcome, KeyboardInterrupt)  # never retried, never a fallback
        assert calls == [1]
    elif "fallback" in combo:
        assert (outcome, tally.outcome) == ("fallback", "fallback")
        assert calls == ([1, 2, 3] if retries and behaviour == "dead" else [1])
    else:
        assert isinstance(outcome, ConnectionError)
        assert not isinstance(outcome, FallbackFailedError)
        assert tally.outcome == "failed"
        assert calls == ([1, 2, 3] if retries else [1])
    assert tally.attempts == len(calls)
    if pipeline.bulkhead is not None:
        assert pipeline.bulkhead.in_use() == 0
    if pipeline.breaker is not None:
        assert pipeline.breaker.snapshot().trial_calls == 0
