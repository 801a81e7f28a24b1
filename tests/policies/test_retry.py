"""Retry: attempt counts, waits, deadline, give-up reasons and the exhausted-retry rule."""

from __future__ import annotations

import math
import threading
import traceback
from collections.abc import Callable

import pytest

from framework0_errors.policies import BackoffSettings, Retry, RetryEvent, RetryStats


class FakeTime:
    """A clock that only moves when the code under test sleeps or a test advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(failures: list[BaseException], value: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """Return a function raising each of ``failures`` in turn, then ``value``; and its calls."""
    calls: list[int] = []
    pending = list(failures)

    def fn() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return value

    return fn, calls


def make_retry(t: FakeTime, **kwargs: object) -> Retry:
    """A Retry on fake time."""
    return Retry(clock=t.clock, sleep=t.sleep, **kwargs)  # type: ignore[arg-type]


def test_fails_twice_then_succeeds_within_three_attempts() -> None:
    """Two failures then a success with max_attempts 3: called exactly 3 times, waits 1 s, 2 s."""
    t = FakeTime()
    fn, calls = flaky([ConnectionError("a"), ConnectionError("b")])
    value, stats = make_retry(t, max_attempts=3).call_with_stats(fn)
    assert value == "ok"
    assert len(calls) == 3
    assert t.sleeps == [1.0, 2.0]
    assert stats == RetryStats(attempts=3, waited=3.0, elapsed=3.0)
    assert stats.recovered


def test_first_try_success_needs_no_retry() -> None:
    """A call that succeeds at once is called once, never waits, and is not 'recovered'."""
    t = FakeTime()
    fn, calls = flaky([])
    value, stats = make_retry(t).call_with_stats(fn)
    assert (value, len(calls), t.sleeps) == ("ok", 1, [])
    assert stats == RetryStats(attempts=1, waited=0.0, elapsed=0.0)
    assert not stats.recovered


def test_call_returns_only_the_value() -> None:
    """call() is call_with_stats() without the statistics."""
    t = FakeTime()
    fn, _ = flaky([OSError("x")], value="v")
    assert make_retry(t).call(fn) == "v"


def test_exhausted_retries_raise_the_last_exception_itself() -> None:
    """When attempts run out, the last attempt's exception propagates: same object, traceback."""
    t = FakeTime()
    errors = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3")]
    fn, calls = flaky(list(errors))
    with pytest.raises(ConnectionError) as info:
        make_retry(t, max_attempts=3).call(fn)
    assert info.value is errors[2]
    assert len(calls) == 3
    assert t.sleeps == [1.0, 2.0]
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "fn"
    # Attempts are independent: the last error is not chained to the earlier ones.
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def test_should_retry_false_calls_once() -> None:
    """When should_retry says no, the function is called once and nothing waits."""
    t = FakeTime()
    error = ValueError("bad input")
    fn, calls = flaky([error])
    events: list[RetryEvent] = []
    retry = make_retry(t, should_retry=lambda exc, attempt: False, on_attempt_failed=events.append)
    with pytest.raises(ValueError, match="bad input") as info:
        retry.call(fn)
    assert info.value is error
    assert len(calls) == 1
    assert t.sleeps == []
    assert [e.give_up_reason for e in events] == ["not_retryable"]


def test_should_retry_sees_each_exception_and_attempt_number() -> None:
    """should_retry is asked with the exception and the 1-based attempt that raised it."""
    t = FakeTime()
    errors = [TimeoutError("a"), ConnectionError("b")]
    fn, _ = flaky(list(errors))
    seen: list[tuple[BaseException, int]] = []

    def should_retry(exc: BaseException, attempt: int) -> bool:
        seen.append((exc, attempt))
        return True

    make_retry(t, max_attempts=5, should_retry=should_retry).call(fn)
    assert seen == [(errors[0], 1), (errors[1], 2)]


def test_should_retry_is_not_asked_when_no_attempt_is_left() -> None:
    """The last attempt's error gives up without consulting should_retry."""
    t = FakeTime()
    fn, _ = flaky([OSError("a"), OSError("b")])
    asked: list[int] = []

    def should_retry(exc: BaseException, attempt: int) -> bool:
        asked.append(attempt)
        return True

    retry = make_retry(t, max_attempts=2, should_retry=should_retry)
    with pytest.raises(OSError, match="b"):
        retry.call(fn)
    assert asked == [1]


def test_mixed_retryable_and_fatal_errors_stop_at_the_fatal_one() -> None:
    """A retryable error is retried; a following non-retryable one ends the call."""
    t = FakeTime()
    fn, calls = flaky([ConnectionError("net"), KeyError("bug"), ConnectionError("never")])
    retry = make_retry(
        t, max_attempts=5, should_retry=lambda exc, n: isinstance(exc, ConnectionError)
    )
    with pytest.raises(KeyError):
        retry.call(fn)
    assert len(calls) == 2
    assert t.sleeps == [1.0]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_base_exceptions_are_never_retried(error: BaseException) -> None:
    """KeyboardInterrupt, SystemExit and friends propagate at once, without callbacks."""
    t = FakeTime()
    fn, calls = flaky([error])
    asked: list[int] = []
    events: list[RetryEvent] = []

    def should_retry(exc: BaseException, attempt: int) -> bool:
        asked.append(attempt)
        return True

    retry = make_retry(
        t, max_attempts=5, should_retry=should_retry, on_attempt_failed=events.append
    )
    with pytest.raises(type(error)) as info:
        retry.call(fn)
    assert info.value is error
    assert (len(calls), asked, events, t.sleeps) == (1, [], [], [])


def test_events_report_every_failed_attempt_and_the_final_verdict() -> None:
    """on_attempt_failed sees each failure before its wait; the last one says why it gave up."""
    t = FakeTime()
    errors = [OSError("1"), OSError("2"), OSError("3")]
    fn, _ = flaky(list(errors))
    events: list[RetryEvent] = []
    sleeps_at_event: list[int] = []

    def record(event: RetryEvent) -> None:
        events.append(event)
        sleeps_at_event.append(len(t.sleeps))

    with pytest.raises(OSError, match="3"):
        make_retry(t, max_attempts=3, on_attempt_failed=record).call(fn)
    assert events == [
        RetryEvent(errors[0], 1, 3, will_retry=True, delay=1.0, elapsed=0.0, give_up_reason=None),
        RetryEvent(errors[1], 2, 3, will_retry=True, delay=2.0, elapsed=1.0, give_up_reason=None),
        RetryEvent(
            errors[2], 3, 3, will_retry=False, delay=None, elapsed=3.0,
            give_up_reason="attempts_exhausted",
        ),
    ]  # fmt: skip
    assert sleeps_at_event == [0, 1, 2]


def test_one_attempt_means_no_retry() -> None:
    """max_attempts=1 calls once and gives up with attempts_exhausted."""
    t = FakeTime()
    fn, calls = flaky([OSError("x")])
    events: list[RetryEvent] = []
    with pytest.raises(OSError, match="x"):
        make_retry(t, max_attempts=1, on_attempt_failed=events.append).call(fn)
    assert len(calls) == 1
    assert events[0].give_up_reason == "attempts_exhausted"


def test_deadline_refuses_a_wait_that_would_end_past_it() -> None:
    """With deadline 5 s and 1 s attempts, the second 2 s wait (t=4 → 6) is not started."""
    t = FakeTime()
    errors = [OSError(str(i)) for i in range(10)]
    calls: list[float] = []

    def slow_failure() -> None:
        calls.append(t.now)
        t.now += 1.0
        raise errors[len(calls) - 1]

    events: list[RetryEvent] = []
    retry = make_retry(
        t,
        max_attempts=10,
        backoff=BackoffSettings(strategy="fixed", initial_delay=2.0),
        deadline=5.0,
        on_attempt_failed=events.append,
    )
    with pytest.raises(OSError, match="1") as info:
        retry.call(slow_failure)
    assert calls == [0.0, 3.0]
    assert t.sleeps == [2.0]
    assert info.value is errors[1]
    assert events[-1].give_up_reason == "deadline"
    assert events[-1].elapsed == 4.0


@pytest.mark.parametrize(
    ("deadline", "attempts"),
    [
        (3.0, 2),  # waits end at 1 and 3: the second ends on the deadline, so is refused
        (3.001, 3),
        (0.5, 1),
        (100.0, 4),
    ],
)
def test_deadline_boundary(deadline: float, attempts: int) -> None:
    """A wait is started only if it ends strictly before start + deadline."""
    t = FakeTime()
    fn, calls = flaky([OSError(f"failure {i}") for i in range(4)])
    retry = make_retry(t, max_attempts=4, deadline=deadline)
    with pytest.raises(OSError, match=f"failure {attempts - 1}"):
        retry.call(fn)
    assert len(calls) == attempts


def test_deadline_counts_from_the_start_of_the_first_attempt() -> None:
    """The deadline is measured from when call() starts, not from construction."""
    t = FakeTime()
    retry = make_retry(t, max_attempts=3, deadline=2.5)
    t.now = 1000.0
    fn, calls = flaky([OSError("a")])
    assert retry.call(fn) == "ok"
    assert len(calls) == 2


def test_jitter_uses_the_injected_random_source() -> None:
    """Waits are jittered by the injected random source, one draw per retry."""
    t = FakeTime()
    fn, _ = flaky([OSError("a"), OSError("b")])
    retry = make_retry(t, backoff=BackoffSettings(jitter="full"), random=lambda: 0.5)
    retry.call(fn)
    assert t.sleeps == [0.5, 1.0]


def test_each_call_has_its_own_state() -> None:
    """Concurrent calls on one Retry keep separate attempt counts and delays."""
    t = FakeTime()
    retry = make_retry(t, max_attempts=3)
    barrier = threading.Barrier(2)
    results: dict[str, RetryStats] = {}

    def worker(name: str) -> None:
        state = {"n": 0}

        def fn() -> str:
            state["n"] += 1
            if state["n"] == 1:
                barrier.wait(timeout=10)  # both calls are mid-flight at once
                raise OSError(name)
            return name

        results[name] = retry.call_with_stats(fn)[1]

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results["a"].attempts == results["b"].attempts == 2
    assert sorted(t.sleeps) == [1.0, 1.0]


def test_callback_errors_propagate() -> None:
    """A failing on_attempt_failed callback is a bug and is not hidden."""
    t = FakeTime()
    fn, _ = flaky([OSError("a")])

    def broken(event: RetryEvent) -> None:
        raise RuntimeError("observer bug")

    with pytest.raises(RuntimeError, match="observer bug"):
        make_retry(t, on_attempt_failed=broken).call(fn)


def test_defaults() -> None:
    """Defaults: 3 attempts, exponential backoff from 1 s, no deadline."""
    retry = Retry()
    assert (retry.max_attempts, retry.backoff, retry.deadline) == (3, BackoffSettings(), None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"max_attempts": -2}, "max_attempts must be >= 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"deadline": 0}, "deadline must be"),
        ({"deadline": -1.0}, "deadline must be"),
        ({"deadline": math.inf}, "deadline must be"),
        ({"deadline": math.nan}, "deadline must be"),
    ],
)
def test_invalid_settings_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    """Out-of-range settings are rejected when the policy is built."""
    with pytest.raises(ValueError, match=message):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_resume_goes_on_after_a_first_attempt_made_elsewhere() -> None:
    """resume() makes attempts 2..max, waits as call() would, and counts the deadline from start."""
    t = FakeTime()
    fn, calls = flaky([ConnectionError("second")])
    assert make_retry(t, max_attempts=3).resume(fn, start=0.0, error=ConnectionError("first")) == (
        "ok"
    )
    assert len(calls) == 2
    assert t.sleeps == [1.0, 2.0]

    t = FakeTime()
    t.now = 4.0  # the first attempt took 4 s of a 5 s deadline: no 1 s wait fits
    first = ConnectionError("first")
    fn, calls = flaky([])
    with pytest.raises(ConnectionError) as raised:
        make_retry(t, max_attempts=3, deadline=5.0).resume(fn, start=0.0, error=first)
    assert raised.value is first
    assert calls == []
