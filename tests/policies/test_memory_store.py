"""MemoryStore: atomic breaker transitions and bulkhead slots, as seen through the store API."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

import pytest

from framework0_errors.stores import (
    Admission,
    BreakerSnapshot,
    BreakerStore,
    BulkheadStore,
    MemoryStore,
    Transition,
)


def fail(
    store: MemoryStore, admission: Admission, now: float, threshold: int = 1
) -> Transition | None:
    """Record a failure with a 60 s recovery timeout."""
    return store.record_failure(
        "b", now=now, admission=admission, failure_threshold=threshold, recovery_timeout=60.0
    )


def opened(store: MemoryStore, now: float = 0.0) -> None:
    """Open breaker 'b' at ``now`` with one failure."""
    admission = store.before_call("b", now=now, half_open_max_calls=1)
    assert fail(store, admission, now) == Transition("b", "closed", "open")


def test_memory_store_satisfies_both_protocols() -> None:
    """MemoryStore is a BreakerStore and a BulkheadStore."""
    breakers: BreakerStore = MemoryStore()
    bulkheads: BulkheadStore = MemoryStore()
    assert breakers.breaker_names() == []
    assert bulkheads.bulkhead_names() == []


def test_unknown_breaker_is_closed() -> None:
    """A name never seen admits calls and reads as closed with no failures."""
    store = MemoryStore()
    assert store.before_call("b", now=0.0, half_open_max_calls=1) == Admission(True, "closed")
    assert store.snapshot("b", now=0.0) == BreakerSnapshot("b", "closed", 0, None, None, 0)


def test_success_on_a_healthy_breaker_writes_nothing() -> None:
    """Successes on a closed breaker with no failures leave the store untouched."""
    store = MemoryStore()
    admission = store.before_call("b", now=0.0, half_open_max_calls=1)
    for _ in range(3):
        assert store.record_success("b", now=0.0, admission=admission) is None
    assert store.breaker_names() == []
    fail(store, admission, 0.0, threshold=5)
    store.record_success("b", now=0.0, admission=admission)
    record = store._breakers["b"]
    epoch = record.epoch
    store.record_success("b", now=0.0, admission=admission)
    assert (record.failures, record.epoch) == (0, epoch)


def test_open_breaker_refuses_until_half_open_at() -> None:
    """before_call refuses while open and reports when the breaker half-opens."""
    store = MemoryStore()
    opened(store, now=10.0)
    refusal = store.before_call("b", now=69.9, half_open_max_calls=1)
    assert (refusal.allowed, refusal.state, refusal.retry_at) == (False, "open", 70.0)
    trial = store.before_call("b", now=70.0, half_open_max_calls=1)
    assert (trial.allowed, trial.trial, trial.state) == (True, True, "half_open")
    assert trial.transition == Transition("b", "open", "half_open")


def test_snapshot_reads_half_open_when_due_without_changing_anything() -> None:
    """A snapshot after half_open_at says half_open, but the store moves only on a call."""
    store = MemoryStore()
    opened(store)
    assert store.snapshot("b", now=60.0).state == "half_open"
    assert store._breakers["b"].state == "open"
    assert store.snapshot("b", now=59.0).state == "open"


def test_trial_slots_are_counted_and_released() -> None:
    """Trials beyond the limit are refused; release_trial frees a slot with no verdict."""
    store = MemoryStore()
    opened(store)
    first = store.before_call("b", now=60.0, half_open_max_calls=1)
    refused = store.before_call("b", now=60.0, half_open_max_calls=1)
    assert (refused.allowed, refused.state, refused.retry_at) == (False, "half_open", 60.0)
    store.release_trial("b", admission=first)
    assert store.snapshot("b", now=60.0).trial_calls == 0
    again = store.before_call("b", now=61.0, half_open_max_calls=1)
    assert again.allowed
    assert again.transition is None  # already half-open


def test_release_of_a_non_trial_or_unknown_breaker_does_nothing() -> None:
    """release_trial ignores non-trial admissions and names never seen."""
    store = MemoryStore()
    store.release_trial("nobody", admission=Admission(True, "closed"))
    opened(store)
    trial = store.before_call("b", now=60.0, half_open_max_calls=2)
    store.release_trial("b", admission=Admission(True, "closed", epoch=trial.epoch))
    assert store.snapshot("b", now=60.0).trial_calls == 1


def test_trial_verdicts_close_or_reopen() -> None:
    """A current trial's success closes; a current trial's failure reopens from now."""
    store = MemoryStore()
    opened(store)
    trial = store.before_call("b", now=60.0, half_open_max_calls=1)
    assert fail(store, trial, 65.0) == Transition("b", "half_open", "open")
    assert store.snapshot("b", now=65.0) == BreakerSnapshot("b", "open", 2, 65.0, 125.0, 0)
    trial = store.before_call("b", now=125.0, half_open_max_calls=1)
    assert store.record_success("b", now=126.0, admission=trial) == Transition(
        "b", "half_open", "closed"
    )
    assert store.snapshot("b", now=126.0) == BreakerSnapshot("b", "closed", 0, None, None, 0)


def test_stale_verdicts_are_ignored() -> None:
    """Verdicts from an earlier epoch or from non-trial calls do not move a half-open breaker."""
    store = MemoryStore()
    opened(store)
    old_trial = store.before_call("b", now=60.0, half_open_max_calls=2)
    other_trial = store.before_call("b", now=60.0, half_open_max_calls=2)
    fail(store, other_trial, 61.0)
    new_trial = store.before_call("b", now=121.0, half_open_max_calls=2)
    assert new_trial.epoch != old_trial.epoch
    assert store.record_success("b", now=122.0, admission=old_trial) is None
    assert fail(store, old_trial, 122.0) is None
    non_trial = Admission(True, "closed", epoch=new_trial.epoch)
    assert store.record_success("b", now=122.0, admission=non_trial) is None
    assert fail(store, non_trial, 122.0) is None
    assert store.snapshot("b", now=122.0).state == "half_open"


def test_reset_and_force_open_report_real_changes_only() -> None:
    """reset and force_open return a Transition only when the state changes."""
    store = MemoryStore()
    assert store.reset("b", now=0.0) is None
    assert store.force_open("b", now=0.0) == Transition("b", "closed", "open")
    assert store.force_open("b", now=5.0, until=10.0) is None
    assert store.snapshot("b", now=5.0) == BreakerSnapshot("b", "open", 0, 5.0, 10.0, 0)
    assert store.reset("b", now=10.0) == Transition("b", "half_open", "closed")
    assert store.reset("b", now=10.0) is None
    assert store.breaker_names() == ["b"]


def test_force_open_without_until_never_half_opens() -> None:
    """A breaker forced open with no end refuses calls with retry_at = inf."""
    store = MemoryStore()
    store.force_open("b", now=0.0)
    refusal = store.before_call("b", now=1e12, half_open_max_calls=1)
    assert not refusal.allowed
    assert refusal.retry_at is not None
    assert math.isinf(refusal.retry_at)
    assert store.snapshot("b", now=1e12).state == "open"


def test_bulkhead_slots_up_to_the_limit() -> None:
    """try_acquire grants up to `limit` slots; release frees one; unknown holders are no-ops."""
    store = MemoryStore()
    grant = {"limit": 2, "lease_seconds": None, "now": 0.0}
    assert store.try_acquire("db", holder_id="a", **grant)  # type: ignore[arg-type]
    assert store.try_acquire("db", holder_id="b", **grant)  # type: ignore[arg-type]
    assert not store.try_acquire("db", holder_id="c", **grant)  # type: ignore[arg-type]
    assert store.in_use("db", now=0.0) == 2
    store.release("db", holder_id="nobody")
    store.release("other", holder_id="a")
    assert store.in_use("db", now=0.0) == 2
    store.release("db", holder_id="a")
    assert store.try_acquire("db", holder_id="c", **grant)  # type: ignore[arg-type]
    assert store.in_use("never-used", now=0.0) == 0


def test_expired_leases_free_their_slots() -> None:
    """A slot whose lease ran out no longer counts and can be taken by another holder."""
    store = MemoryStore()
    assert store.try_acquire("db", limit=1, holder_id="dead", lease_seconds=10.0, now=0.0)
    assert store.in_use("db", now=9.9) == 1
    assert not store.try_acquire("db", limit=1, holder_id="b", lease_seconds=10.0, now=9.9)
    assert store.in_use("db", now=10.0) == 0
    assert store.try_acquire("db", limit=1, holder_id="b", lease_seconds=10.0, now=10.0)


def test_wait_for_slot_returns_at_once_when_free_or_out_of_time() -> None:
    """wait_for_slot does not block when a slot is free or the timeout is spent."""
    store = MemoryStore()
    assert store.wait_for_slot("db", limit=1, timeout=GENEROUS, now=0.0)
    store.try_acquire("db", limit=1, holder_id="a", lease_seconds=None, now=0.0)
    assert store.wait_for_slot("db", limit=1, timeout=0.0, now=0.0)


def test_wait_for_slot_wakes_at_lease_expiry() -> None:
    """A waiter is not left sleeping past the moment a lease frees a slot."""
    store = MemoryStore()
    store.try_acquire("db", limit=1, holder_id="dead", lease_seconds=0.01, now=100.0)
    started = time.monotonic()
    assert store.wait_for_slot("db", limit=1, timeout=GENEROUS, now=100.0)
    assert time.monotonic() - started < GENEROUS / 2
    assert store.try_acquire("db", limit=1, holder_id="b", lease_seconds=None, now=100.01)


def test_release_wakes_a_waiter() -> None:
    """release notifies callers blocked in wait_for_slot for the same name."""
    store = MemoryStore()
    store.try_acquire("db", limit=1, holder_id="a", lease_seconds=None, now=0.0)
    woke = threading.Event()

    def waiter() -> None:
        store.wait_for_slot("db", limit=1, timeout=GENEROUS, now=0.0)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    condition = store._bulkheads["db"].changed
    assert wait_for_waiter(store, condition)
    store.release("db", holder_id="a")
    assert woke.wait(timeout=GENEROUS)
    thread.join(timeout=GENEROUS)


GENEROUS = 30.0


def wait_for_waiter(store: MemoryStore, condition: threading.Condition) -> bool:
    """Wait until a thread is blocked on ``condition``."""
    end = time.monotonic() + GENEROUS
    while time.monotonic() < end:
        with store._lock:
            if condition._waiters:  # type: ignore[attr-defined]
                return True
        time.sleep(0.001)
    return False


@pytest.mark.parametrize("threads", [8])
def test_concurrent_acquires_never_exceed_the_limit(threads: int) -> None:
    """Many threads racing for 3 slots never hold more than 3 at once."""
    store = MemoryStore()
    barrier = threading.Barrier(threads)
    granted: list[str] = []
    lock = threading.Lock()

    def racer(i: int) -> None:
        barrier.wait(timeout=GENEROUS)
        if store.try_acquire("db", limit=3, holder_id=str(i), lease_seconds=None, now=0.0):
            with lock:
                granted.append(str(i))

    workers = [threading.Thread(target=racer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=GENEROUS)
    assert len(granted) == 3
    assert store.in_use("db", now=0.0) == 3


def _take(store: MemoryStore, holder: str, limit: int, now: float = 0.0) -> bool:
    return store.try_acquire("db", limit=limit, holder_id=holder, lease_seconds=10.0, now=now)


def test_raising_the_limit_adds_free_slots() -> None:
    """A caller with a higher limit than the bulkhead's first user gets the extra slots."""
    store = MemoryStore()
    assert _take(store, "a", 1)
    assert not _take(store, "b", 1)
    assert _take(store, "b", 3)
    assert _take(store, "c", 3)
    assert not _take(store, "d", 3)
    assert store.in_use("db", now=0.0) == 3


def test_lowering_the_limit_retires_slots_as_they_come_back() -> None:
    """Below the holders in use, a lowered limit admits nobody until enough slots return."""
    store = MemoryStore()
    for holder in "abc":
        assert _take(store, holder, 3)
    assert not _take(store, "d", 1)  # 3 held, limit now 1: two slots owed
    store.release("db", holder_id="a")
    store.release("db", holder_id="b")
    assert not _take(store, "d", 1)  # both returned slots paid the debt
    store.release("db", holder_id="c")
    assert _take(store, "d", 1)
    assert not _take(store, "e", 1)


def test_expired_leases_pay_a_lowered_limits_debt_first() -> None:
    """Slots freed by expired leases retire owed slots before they are handed out again."""
    store = MemoryStore()
    assert _take(store, "a", 2)
    assert _take(store, "b", 2)
    assert not _take(store, "c", 1, now=5.0)  # one slot owed
    assert _take(store, "c", 1, now=10.0)  # both leases ran out: one retired, one free
    assert not _take(store, "d", 1, now=10.0)


def test_raising_the_limit_first_cancels_what_is_owed() -> None:
    """Raising a lowered limit forgives owed slots before adding free ones."""
    store = MemoryStore()
    assert _take(store, "a", 2)
    assert _take(store, "b", 2)
    assert not _take(store, "c", 1)  # one slot owed
    assert not _take(store, "c", 2)  # back to 2: the debt is forgiven, both still held
    store.release("db", holder_id="a")
    assert _take(store, "c", 2)


def test_a_holder_asking_again_keeps_one_slot_only_below_the_limit() -> None:
    """Renewing a held slot succeeds while a slot is free and never takes a second one."""
    store = MemoryStore()
    assert _take(store, "a", 2)
    assert _take(store, "a", 2, now=5.0)
    assert _take(store, "b", 2)
    assert not _take(store, "a", 2, now=6.0)  # full: no renewal
    assert store.in_use("db", now=12.0) == 1  # a's lease (from 5.0) ran out; b's runs to 20


def test_wait_for_slot_counts_a_waiter_until_it_returns() -> None:
    """A waiter that finds a free slot returns at once and is not left counted."""
    store = MemoryStore()
    assert store.wait_for_slot("db", limit=1, timeout=5.0, now=0.0)
    assert _take(store, "a", 1)
    assert store.wait_for_slot("db", limit=1, timeout=0.0, now=0.0)
    store.release("db", holder_id="a")  # nobody waits: no condition to notify
    assert _take(store, "b", 1)


def test_a_slot_given_back_just_as_the_limit_is_lowered_is_retired() -> None:
    """A release racing a lowered limit cannot leave a free slot beside an unpaid debt."""

    class SwitchingDeque(deque[None]):
        # Runs `hook` inside append: as if the releasing thread were switched
        # out after it read no debt and before it gave the slot back.
        hook: Callable[[], None] | None = None

        def append(self, item: None) -> None:
            hook, SwitchingDeque.hook = SwitchingDeque.hook, None
            if hook is not None:
                hook()
            super().append(item)

    store = MemoryStore()
    assert _take(store, "a", 2)
    assert _take(store, "b", 2)
    bulkhead = store._bulkheads["db"]
    bulkhead.free = SwitchingDeque(bulkhead.free)

    def lower_the_limit() -> None:
        thread = threading.Thread(target=_take, args=(store, "low", 1))
        thread.start()
        thread.join()

    SwitchingDeque.hook = lower_the_limit
    store.release("db", holder_id="a")
    assert not _take(store, "c", 1)  # b still holds the one slot limit 1 allows
    assert store.in_use("db", now=0.0) == 1
    store.release("db", holder_id="b")
    assert _take(store, "c", 1)
