"""Circuit breaker: every state transition, shared state by name, manual control."""

from __future__ import annotations

import contextlib
import math
import pickle
import threading
from collections.abc import Callable

import pytest

import framework0_errors
from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.policies import CircuitBreaker, CircuitOpenError
from framework0_errors.stores import BreakerSnapshot, MemoryStore


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Change = tuple[str, str, str]


def make(
    clock: Clock,
    store: MemoryStore | None = None,
    changes: list[Change] | None = None,
    **kwargs: object,
) -> CircuitBreaker:
    """A breaker named 'payments' on a fake clock, recording state changes."""
    on_change = None if changes is None else (lambda *c: changes.append(c))
    options: dict[str, object] = {"failure_threshold": 3, "recovery_timeout": 60.0}
    options.update(kwargs)
    return CircuitBreaker(
        "payments",
        store=store if store is not None else MemoryStore(),
        clock=clock,
        on_state_change=on_change,
        **options,  # type: ignore[arg-type]
    )


def fail(exc: BaseException | None = None) -> Callable[[], None]:
    """A function that raises ``exc`` (ConnectionError by default)."""

    def fn() -> None:
        raise exc if exc is not None else ConnectionError("down")

    return fn


def ok() -> str:
    return "ok"


def trip(breaker: CircuitBreaker, times: int) -> None:
    """Make ``times`` failing calls through the breaker."""
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(fail())


def test_new_breaker_is_closed_and_passes_calls() -> None:
    """A breaker never used is closed with no failures, and calls go through."""
    clock = Clock()
    breaker = make(clock)
    assert breaker.snapshot() == BreakerSnapshot("payments", "closed", 0, None, None, 0)
    assert breaker.call(ok) == "ok"


def test_closed_opens_after_threshold_consecutive_failures() -> None:
    """closed → open exactly at failure_threshold consecutive failures."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    trip(breaker, 2)
    assert breaker.snapshot().state == "closed"
    assert breaker.snapshot().consecutive_failures == 2
    assert changes == []
    trip(breaker, 1)
    assert changes == [("payments", "closed", "open")]
    assert breaker.snapshot() == BreakerSnapshot("payments", "open", 3, 1000.0, 1060.0, 0)


def test_success_in_closed_resets_the_consecutive_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    clock = Clock()
    breaker = make(clock)
    trip(breaker, 2)
    breaker.call(ok)
    assert breaker.snapshot().consecutive_failures == 0
    trip(breaker, 2)
    assert breaker.snapshot().state == "closed"


def test_open_refuses_without_calling_and_says_when_it_half_opens() -> None:
    """While open, fn is not called; CircuitOpenError names the breaker and the wait."""
    clock = Clock()
    breaker = make(clock)
    trip(breaker, 3)
    clock.now += 18.0
    called: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: called.append(1))
    assert called == []
    error = info.value
    assert (error.breaker, error.retry_at, error.retry_in, error.state) == (
        "payments",
        1060.0,
        42.0,
        "open",
    )
    assert str(error) == "circuit breaker 'payments' is open; it will half-open in 42.0s"
    assert isinstance(error, Framework0Error)
    assert type(error).__module__ == "framework0_errors"


def test_an_open_breakers_wait_in_its_message_stays_short() -> None:
    """recovery_timeout may be any finite number: a wait of 1e308s is not 309 digits long."""
    error = CircuitOpenError("b", retry_at=1e308, retry_in=1e308)
    assert str(error) == "circuit breaker 'b' is open; it will half-open in 1e+308s"
    assert "in 9999999.9s" in str(CircuitOpenError("b", retry_at=0, retry_in=9999999.94))


def test_open_becomes_half_open_after_recovery_timeout() -> None:
    """open → half_open at the first call once recovery_timeout has passed."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    trip(breaker, 3)
    clock.now += 59.999
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.now = 1060.0
    assert breaker.snapshot().state == "half_open"  # reads as half-open once due
    seen: list[BreakerSnapshot] = []
    breaker.call(lambda: seen.append(breaker.snapshot()))
    assert seen[0].state == "half_open"
    assert seen[0].trial_calls == 1
    assert changes[1] == ("payments", "open", "half_open")


def test_half_open_trial_success_closes() -> None:
    """half_open → closed when a trial call succeeds; failures are forgotten."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    trip(breaker, 3)
    clock.now += 60.0
    assert breaker.call(ok) == "ok"
    assert changes == [
        ("payments", "closed", "open"),
        ("payments", "open", "half_open"),
        ("payments", "half_open", "closed"),
    ]
    assert breaker.snapshot() == BreakerSnapshot("payments", "closed", 0, None, None, 0)


def test_half_open_trial_failure_reopens_for_a_fresh_timeout() -> None:
    """half_open → open on a failed trial, with a new full recovery_timeout from then."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    trip(breaker, 3)
    clock.now += 75.0
    trip(breaker, 1)
    assert changes[-2:] == [("payments", "open", "half_open"), ("payments", "half_open", "open")]
    snap = breaker.snapshot()
    assert (snap.state, snap.opened_at, snap.half_open_at) == ("open", 1075.0, 1135.0)
    assert snap.consecutive_failures == 4
    clock.now = 1134.0
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_in == pytest.approx(1.0)


def test_half_open_admits_at_most_max_calls_trials() -> None:
    """While half-open, calls beyond half_open_max_calls in flight are refused."""
    clock = Clock()
    breaker = make(clock, half_open_max_calls=1)
    trip(breaker, 3)
    clock.now += 60.0
    refused: list[CircuitOpenError] = []

    def trial() -> str:
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        refused.append(info.value)
        return "trial"

    assert breaker.call(trial) == "trial"
    error = refused[0]
    assert (error.state, error.retry_in, error.retry_at) == ("half_open", 0.0, clock.now)
    assert str(error) == (
        "circuit breaker 'payments' is half-open and its trial calls are in progress"
    )
    assert breaker.snapshot().state == "closed"


def test_half_open_max_calls_two_admits_two_trials() -> None:
    """half_open_max_calls=2 admits a second concurrent trial, refuses a third."""
    clock = Clock()
    breaker = make(clock, half_open_max_calls=2)
    trip(breaker, 3)
    clock.now += 60.0
    inner: list[str] = []

    def second_trial() -> str:
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
        inner.append("second")
        return "second"

    def first_trial() -> str:
        return breaker.call(second_trial)

    assert breaker.call(first_trial) == "second"
    assert inner == ["second"]
    assert breaker.snapshot().state == "closed"


def test_stale_trial_cannot_close_a_reopened_breaker() -> None:
    """A trial whose half-open period ended (another trial failed) no longer decides."""
    clock = Clock()
    breaker = make(clock, half_open_max_calls=2)
    trip(breaker, 3)
    clock.now += 60.0

    def outer_trial() -> str:
        trip(breaker, 1)  # the other trial fails: open again
        return "outer succeeded"

    assert breaker.call(outer_trial) == "outer succeeded"
    assert breaker.snapshot().state == "open"


def test_stale_trial_failure_cannot_reopen_a_closed_breaker_at_once() -> None:
    """After another trial closed the breaker, a late failure counts as one closed failure."""
    clock = Clock()
    breaker = make(clock, half_open_max_calls=2)
    trip(breaker, 3)
    clock.now += 60.0

    def outer_trial() -> None:
        breaker.call(ok)  # the other trial succeeds: closed
        raise ConnectionError("late")

    with pytest.raises(ConnectionError):
        breaker.call(outer_trial)
    snap = breaker.snapshot()
    assert (snap.state, snap.consecutive_failures) == ("closed", 1)


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_calls_admitted_while_closed_do_not_move_an_open_breaker(outcome: str) -> None:
    """A slow call that started before the breaker opened cannot close or re-open it."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes, failure_threshold=1)

    def slow() -> None:
        trip(breaker, 1)  # meanwhile another call opens the breaker
        clock.now += 5.0
        if outcome == "failure":
            raise ConnectionError("slow failure")

    if outcome == "failure":
        with pytest.raises(ConnectionError):
            breaker.call(slow)
    else:
        breaker.call(slow)
    snap = breaker.snapshot()
    assert (snap.state, snap.opened_at, snap.consecutive_failures) == ("open", 1000.0, 1)
    assert changes == [("payments", "closed", "open")]


def test_exceptions_not_counted_are_successes() -> None:
    """An error counts_as_failure rejects propagates but counts as the dependency answering."""
    clock = Clock()
    breaker = make(clock, counts_as_failure=lambda exc: isinstance(exc, ConnectionError))
    trip(breaker, 2)
    with pytest.raises(ValueError, match="bad input"):
        breaker.call(fail(ValueError("bad input")))
    assert breaker.snapshot().consecutive_failures == 0


def test_uncounted_error_in_a_trial_closes_the_breaker() -> None:
    """A trial that fails with an uncounted error still proves the dependency answers."""
    clock = Clock()
    breaker = make(clock, counts_as_failure=lambda exc: isinstance(exc, ConnectionError))
    trip(breaker, 3)
    clock.now += 60.0
    with pytest.raises(KeyError):
        breaker.call(fail(KeyError("missing")))
    assert breaker.snapshot().state == "closed"


def test_keyboard_interrupt_in_a_trial_frees_the_slot_without_a_verdict() -> None:
    """An interrupted trial neither closes nor reopens; the next call is a new trial."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    trip(breaker, 3)
    clock.now += 60.0
    with pytest.raises(KeyboardInterrupt):
        breaker.call(fail(KeyboardInterrupt()))
    snap = breaker.snapshot()
    assert (snap.state, snap.trial_calls) == ("half_open", 0)
    assert breaker.call(ok) == "ok"
    assert changes[-1] == ("payments", "half_open", "closed")


def test_keyboard_interrupt_while_closed_changes_nothing() -> None:
    """KeyboardInterrupt is not a failure of the dependency and not a success either."""
    clock = Clock()
    breaker = make(clock)
    trip(breaker, 2)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(fail(KeyboardInterrupt()))
    assert breaker.snapshot().consecutive_failures == 2


def test_base_exceptions_can_be_counted_on_request() -> None:
    """counts_as_failure decides for BaseException too when it says so."""
    clock = Clock()
    breaker = make(clock, failure_threshold=1, counts_as_failure=lambda exc: True)
    with pytest.raises(SystemExit):
        breaker.call(fail(SystemExit(1)))
    assert breaker.snapshot().state == "open"


def test_breakers_with_the_same_name_and_store_share_state() -> None:
    """Two breaker objects with one name and store behave as one breaker."""
    clock = Clock()
    store = MemoryStore()
    first = make(clock, store)
    second = make(clock, store)
    trip(first, 2)
    trip(second, 1)
    with pytest.raises(CircuitOpenError):
        first.call(ok)
    assert first.snapshot() == second.snapshot()


def test_other_names_and_other_stores_are_independent() -> None:
    """State is keyed by name within one store; other names and stores are unaffected."""
    clock = Clock()
    store = MemoryStore()
    breaker = make(clock, store)
    trip(breaker, 3)
    other_name = CircuitBreaker("search", store=store, clock=clock, failure_threshold=3)
    other_store = make(clock, MemoryStore())
    assert other_name.call(ok) == "ok"
    assert other_store.call(ok) == "ok"
    assert store.breaker_names() == ["payments"]


def test_reset_closes_an_open_breaker() -> None:
    """reset() closes the breaker, forgets failures and reports the change."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    trip(breaker, 3)
    breaker.reset()
    assert changes[-1] == ("payments", "open", "closed")
    assert breaker.snapshot() == BreakerSnapshot("payments", "closed", 0, None, None, 0)
    assert breaker.call(ok) == "ok"


def test_reset_of_a_closed_breaker_reports_no_change() -> None:
    """Resetting a closed breaker clears its count without a state change."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    breaker.reset()
    trip(breaker, 2)
    breaker.reset()
    assert changes == []
    assert breaker.snapshot().consecutive_failures == 0


def test_force_open_holds_until_reset() -> None:
    """force_open() with no duration refuses calls however long it has been, until reset."""
    clock = Clock()
    changes: list[Change] = []
    breaker = make(clock, changes=changes)
    breaker.force_open()
    clock.now += 1e9
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert math.isinf(info.value.retry_at)
    assert math.isinf(info.value.retry_in)
    assert str(info.value) == "circuit breaker 'payments' is open until it is reset"
    snap = breaker.snapshot()
    assert (snap.state, snap.opened_at, snap.half_open_at) == ("open", 1000.0, None)
    breaker.reset()
    assert breaker.call(ok) == "ok"
    assert changes == [("payments", "closed", "open"), ("payments", "open", "closed")]


def test_force_open_for_a_duration_then_half_opens() -> None:
    """force_open(duration=...) half-opens after that many seconds."""
    clock = Clock()
    breaker = make(clock)
    breaker.force_open(duration=10.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_in == 10.0
    clock.now += 10.0
    assert breaker.call(ok) == "ok"
    assert breaker.snapshot().state == "closed"


def test_store_controls_breakers_by_name_without_a_breaker_object() -> None:
    """A CLI can force-open and reset a breaker through the store and its name alone."""
    clock = Clock()
    store = MemoryStore()
    breaker = make(clock, store)
    store.force_open("payments", now=clock.now)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    store.reset("payments", now=clock.now)
    assert breaker.call(ok) == "ok"


@pytest.mark.parametrize("duration", [-1.0, math.inf, math.nan])
def test_force_open_rejects_bad_durations(duration: float) -> None:
    """A force-open duration must be a finite number of seconds >= 0."""
    with pytest.raises(ValueError, match="duration must be"):
        make(Clock()).force_open(duration=duration)


def test_breaker_without_callback_works() -> None:
    """on_state_change is optional."""
    clock = Clock()
    breaker = CircuitBreaker("x", store=MemoryStore(), clock=clock, failure_threshold=1)
    with pytest.raises(ConnectionError):
        breaker.call(fail())
    assert breaker.snapshot().state == "open"


def test_concurrent_failures_are_all_counted() -> None:
    """Failures from many threads at once are each counted exactly once."""
    clock = Clock()
    breaker = make(clock, failure_threshold=10_000)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=10)
        for _ in range(200):
            with contextlib.suppress(ConnectionError):
                breaker.call(fail())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert breaker.snapshot().consecutive_failures == 1600


def test_concurrent_trials_are_limited_across_threads() -> None:
    """With real threads, only half_open_max_calls trials run; the rest are refused."""
    clock = Clock()
    breaker = make(clock, half_open_max_calls=2)
    trip(breaker, 3)
    clock.now += 60.0
    inside = threading.Barrier(3)
    release = threading.Event()
    outcomes: list[str] = []

    def trial() -> None:
        inside.wait(timeout=10)
        assert release.wait(timeout=10)

    def worker() -> None:
        breaker.call(trial)
        outcomes.append("ran")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)  # both trials are in flight
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert outcomes == ["ran", "ran"]
    assert breaker.snapshot().state == "closed"


def test_on_state_change_errors_propagate() -> None:
    """A failing state-change callback is a bug and is not hidden."""
    clock = Clock()

    def broken(name: str, old: str, new: str) -> None:
        raise RuntimeError("observer bug")

    breaker = CircuitBreaker(
        "x", store=MemoryStore(), clock=clock, failure_threshold=1, on_state_change=broken
    )
    with pytest.raises(RuntimeError, match="observer bug"):
        breaker.call(fail())


def test_a_failing_callback_on_half_open_gives_the_trial_slot_back() -> None:
    """If the open → half_open callback raises, the trial is not made and its slot is freed."""
    clock = Clock()
    store = MemoryStore()
    calls: list[str] = []

    def broken_once(name: str, old: str, new: str) -> None:
        calls.append(new)
        if new == "half_open" and calls.count("half_open") == 1:
            raise RuntimeError("observer bug")

    breaker = CircuitBreaker(
        "x",
        store=store,
        clock=clock,
        failure_threshold=1,
        recovery_timeout=60.0,
        on_state_change=broken_once,
    )
    with pytest.raises(ConnectionError):
        breaker.call(fail())
    clock.now += 60.0
    with pytest.raises(RuntimeError, match="observer bug"):
        breaker.call(ok)
    assert breaker.snapshot().trial_calls == 0
    assert breaker.call(ok) == "ok"  # the one trial slot is free again: the trial closes it
    assert breaker.snapshot().state == "closed"


def test_circuit_open_error_survives_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """CircuitOpenError keeps its attributes and message through pickle."""
    monkeypatch.setattr(framework0_errors, "CircuitOpenError", CircuitOpenError, raising=False)
    error = CircuitOpenError("payments", retry_at=1060.0, retry_in=42.0)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.breaker, copy.retry_at, copy.retry_in, copy.state) == (
        "payments",
        1060.0,
        42.0,
        "open",
    )
    assert str(copy) == str(error)


def test_defaults() -> None:
    """Defaults: 5 failures, 60 s recovery, 1 trial call."""
    breaker = CircuitBreaker("x", store=MemoryStore())
    assert (
        breaker.failure_threshold,
        breaker.recovery_timeout,
        breaker.half_open_max_calls,
    ) == (5, 60.0, 1)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("", {}, "name must be a non-empty string"),
        ("x", {"failure_threshold": 0}, "failure_threshold must be an integer >= 1"),
        ("x", {"failure_threshold": 2.0}, "failure_threshold must be an integer >= 1"),
        ("x", {"failure_threshold": True}, "failure_threshold must be an integer >= 1"),
        ("x", {"half_open_max_calls": 0}, "half_open_max_calls must be an integer >= 1"),
        ("x", {"recovery_timeout": 0}, "recovery_timeout must be"),
        ("x", {"recovery_timeout": -5.0}, "recovery_timeout must be"),
        ("x", {"recovery_timeout": math.inf}, "recovery_timeout must be"),
        ("x", {"recovery_timeout": math.nan}, "recovery_timeout must be"),
    ],
)
def test_invalid_settings_raise_value_error(
    name: str, kwargs: dict[str, object], message: str
) -> None:
    """Out-of-range settings are rejected when the breaker is built."""
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(name, store=MemoryStore(), **kwargs)  # type: ignore[arg-type]
