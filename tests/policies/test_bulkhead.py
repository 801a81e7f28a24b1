"""Bulkhead: named concurrency limits, waiting for a slot, and slots always released."""

from __future__ import annotations

import math
import pickle
import threading
from typing import Any, ClassVar

import pytest

import framework0_errors
from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.policies import Bulkhead, BulkheadFullError
from framework0_errors.stores import MemoryStore


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class PollingStore(MemoryStore):
    """A memory store that cannot block, like a durable store, and counts its polls."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        self.polls += 1
        return False


class WatchedStore(MemoryStore):
    """A memory store that tells the test when a caller starts waiting for a slot."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        self.waiting.set()
        return super().wait_for_slot(name, limit=limit, timeout=timeout, now=now)


def test_runs_the_call_and_gives_the_slot_back() -> None:
    """A call runs while holding a slot, which is free again afterwards."""
    store = MemoryStore()
    bulkhead = Bulkhead("db", max_concurrent=2, store=store)
    seen: list[int] = []

    def fn() -> str:
        seen.append(bulkhead.in_use())
        return "done"

    assert bulkhead.call(fn) == "done"
    assert seen == [1]
    assert bulkhead.in_use() == 0


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt(), SystemExit(2)])
def test_slot_is_released_whatever_the_call_raises(error: BaseException) -> None:
    """Exceptions, including BaseException, propagate unchanged and free the slot."""
    bulkhead = Bulkhead("db", max_concurrent=1, store=MemoryStore())

    def fn() -> None:
        raise error

    with pytest.raises(type(error)) as info:
        bulkhead.call(fn)
    assert info.value is error
    assert bulkhead.in_use() == 0


def test_full_bulkhead_without_wait_refuses_at_once() -> None:
    """With max_wait 0 a caller finding every slot taken gets BulkheadFullError at once."""
    t = FakeTime()
    bulkhead = Bulkhead("db", max_concurrent=1, store=MemoryStore(), clock=t.clock, sleep=t.sleep)
    called: list[int] = []

    def outer() -> None:
        with pytest.raises(BulkheadFullError) as info:
            bulkhead.call(lambda: called.append(1))
        error = info.value
        assert (error.name, error.max_concurrent, error.waited) == ("db", 1, 0.0)
        assert (
            str(error) == "bulkhead 'db' is full (1 concurrent executions); waited 0.0s for a slot"
        )
        assert isinstance(error, Framework0Error)
        assert type(error).__module__ == "framework0_errors"

    bulkhead.call(outer)
    assert called == []
    assert t.sleeps == []


def test_bulkheads_with_the_same_name_and_store_share_slots() -> None:
    """Two Bulkhead objects with one name and store count against one limit."""
    store = MemoryStore()
    first = Bulkhead("db", max_concurrent=1, store=store)
    second = Bulkhead("db", max_concurrent=1, store=store)
    other = Bulkhead("cache", max_concurrent=1, store=store)

    def inside() -> str:
        with pytest.raises(BulkheadFullError):
            second.call(lambda: None)
        return other.call(lambda: "other name has its own slots")

    assert first.call(inside) == "other name has its own slots"
    assert store.bulkhead_names() == ["cache", "db"]


def test_waits_up_to_max_wait_then_gives_up() -> None:
    """On a store that cannot block, the caller polls with the injected sleep until max_wait."""
    t = FakeTime()
    store = PollingStore()
    store.try_acquire("db", limit=1, holder_id="other", lease_seconds=None, now=t.now)
    bulkhead = Bulkhead(
        "db",
        max_concurrent=1,
        max_wait=1.0,
        poll_interval=0.3,
        store=store,
        clock=t.clock,
        sleep=t.sleep,
    )
    with pytest.raises(BulkheadFullError) as info:
        bulkhead.call(lambda: None)
    assert t.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert info.value.waited == pytest.approx(1.0)
    assert "waited 1.0s" in str(info.value)


def test_a_wait_too_long_for_the_platform_clock_is_cut_to_what_it_can_wait() -> None:
    """max_wait 1e308 is valid: the store is asked to wait at most threading.TIMEOUT_MAX."""
    asked: list[float] = []

    class FreedWhileWaiting(MemoryStore):
        def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
            asked.append(timeout)
            self.release(name, holder_id="other")
            return True

    t = FakeTime()
    store = FreedWhileWaiting()
    store.try_acquire("db", limit=1, holder_id="other", lease_seconds=None, now=t.now)
    bulkhead = Bulkhead(
        "db", max_concurrent=1, max_wait=1e308, store=store, clock=t.clock, sleep=t.sleep
    )
    assert bulkhead.call(lambda: "in") == "in"
    assert asked == [threading.TIMEOUT_MAX]


def test_a_slot_freed_while_polling_is_taken() -> None:
    """A caller that polls gets the slot once its holder gives it back within max_wait."""
    t = FakeTime()
    store = PollingStore()
    store.try_acquire("db", limit=1, holder_id="other", lease_seconds=None, now=t.now)

    def sleep(seconds: float) -> None:
        t.sleep(seconds)
        if len(t.sleeps) == 2:
            store.release("db", holder_id="other")

    bulkhead = Bulkhead(
        "db", max_concurrent=1, max_wait=5.0, store=store, clock=t.clock, sleep=sleep
    )
    assert bulkhead.call(lambda: "got it") == "got it"
    assert t.sleeps == [0.05, 0.05]
    assert store.polls == 2


def test_time_running_out_before_waiting_gives_up_without_waiting() -> None:
    """If the clock shows max_wait already spent, the caller gives up instead of waiting."""
    readings = iter([0.0, 2.0])
    store = MemoryStore()
    store.try_acquire("db", limit=1, holder_id="other", lease_seconds=None, now=0.0)
    bulkhead = Bulkhead(
        "db", max_concurrent=1, max_wait=1.0, store=store, clock=lambda: next(readings)
    )
    with pytest.raises(BulkheadFullError) as info:
        bulkhead.call(lambda: None)
    assert info.value.waited == 2.0


def test_waiter_is_woken_by_a_release_without_polling() -> None:
    """A caller waiting on the memory store gets the slot as soon as the holder releases it."""
    store = WatchedStore()
    bulkhead = Bulkhead("db", max_concurrent=1, max_wait=30.0, store=store)
    holding = threading.Event()
    let_go = threading.Event()
    results: list[str] = []

    def holder() -> None:
        holding.set()
        assert let_go.wait(timeout=10)

    def waiter() -> None:
        results.append(bulkhead.call(lambda: "waited for it"))

    holder_thread = threading.Thread(target=bulkhead.call, args=(holder,))
    holder_thread.start()
    assert holding.wait(timeout=10)
    waiter_thread = threading.Thread(target=waiter)
    waiter_thread.start()
    assert store.waiting.wait(timeout=10)  # the waiter is blocked on the condition
    assert results == []
    let_go.set()
    holder_thread.join(timeout=10)
    waiter_thread.join(timeout=10)  # returns well before max_wait: it was woken
    assert not waiter_thread.is_alive()
    assert results == ["waited for it"]
    assert bulkhead.in_use() == 0


def test_limit_holds_under_real_concurrency() -> None:
    """With max_concurrent 2, two threads run together and a third is refused."""
    store = MemoryStore()
    bulkhead = Bulkhead("db", max_concurrent=2, store=store)
    both_inside = threading.Barrier(3)
    let_go = threading.Event()

    def hold() -> None:
        both_inside.wait(timeout=10)
        assert let_go.wait(timeout=10)

    threads = [threading.Thread(target=bulkhead.call, args=(hold,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    both_inside.wait(timeout=10)
    assert bulkhead.in_use() == 2
    with pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: None)
    let_go.set()
    for thread in threads:
        thread.join(timeout=10)
    assert bulkhead.in_use() == 0
    assert bulkhead.call(lambda: "free again") == "free again"


def test_leases_are_passed_to_the_store() -> None:
    """A holder that never releases loses its slot when its lease runs out."""
    t = FakeTime()
    store = MemoryStore()
    bulkhead = Bulkhead(
        "db", max_concurrent=1, store=store, clock=t.clock, sleep=t.sleep, lease_seconds=30.0
    )

    def outer() -> str:
        t.now += 30.0  # this execution's lease has run out
        return bulkhead.call(lambda: "lease expired, slot reused")

    assert bulkhead.call(outer) == "lease expired, slot reused"


def test_holder_ids_are_unique_per_call() -> None:
    """Each execution holds its slot under its own id, in memory and in any other store."""
    store = MemoryStore()

    class OnlyTheProtocol:
        # A store that offers no local slots: the policy goes through try_acquire.
        ids: ClassVar[list[object]] = []

        def try_acquire(self, name: str, **kwargs: Any) -> bool:
            self.ids.append(kwargs["holder_id"])
            return store.try_acquire(name, **kwargs)

        def __getattr__(self, name: str) -> Any:
            if name == "local_bulkhead":
                raise AttributeError(name)
            return getattr(store, name)

    remote = Bulkhead("db", max_concurrent=2, store=OnlyTheProtocol())  # type: ignore[arg-type]
    local = Bulkhead("db", max_concurrent=2, store=store)
    held = [remote.acquire(), remote.acquire()]
    assert store.in_use("db", now=0.0) == 2
    assert not store.try_acquire("db", limit=2, holder_id="x", lease_seconds=None, now=0.0)
    for holder in held:
        remote.release(holder)
    held = [local.acquire(), local.acquire()]
    assert len(set(held)) == 2
    for holder in held:
        local.release(holder)
    assert store.in_use("db", now=0.0) == 0
    assert len(set(OnlyTheProtocol.ids)) == 2
    assert all(isinstance(i, str) for i in OnlyTheProtocol.ids)


def test_bulkhead_full_error_survives_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """BulkheadFullError keeps its attributes and message through pickle."""
    monkeypatch.setattr(framework0_errors, "BulkheadFullError", BulkheadFullError, raising=False)
    error = BulkheadFullError("db", max_concurrent=3, waited=2.5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.max_concurrent, copy.waited, str(copy)) == (
        "db",
        3,
        2.5,
        str(error),
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("", {"max_concurrent": 1}, "name must be a non-empty string"),
        ("db", {"max_concurrent": 0}, "max_concurrent must be >= 1"),
        ("db", {"max_concurrent": 1.5}, "max_concurrent must be an integer"),
        ("db", {"max_concurrent": True}, "max_concurrent must be an integer"),
        ("db", {"max_concurrent": 1, "max_wait": -1.0}, "max_wait must be .* >= 0"),
        ("db", {"max_concurrent": 1, "max_wait": math.inf}, "max_wait must be"),
        ("db", {"max_concurrent": 1, "lease_seconds": 0}, "lease_seconds must be .* > 0"),
        ("db", {"max_concurrent": 1, "poll_interval": 0}, "poll_interval must be .* > 0"),
        ("db", {"max_concurrent": 1, "poll_interval": math.nan}, "poll_interval must be"),
    ],
)
def test_invalid_settings_raise_value_error(
    name: str, kwargs: dict[str, object], message: str
) -> None:
    """Out-of-range settings are rejected when the bulkhead is built."""
    with pytest.raises(ValueError, match=message):
        Bulkhead(name, store=MemoryStore(), **kwargs)  # type: ignore[arg-type]
