"""The store contract: memory, SQLite and Redis stores answer every scenario alike."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework0_errors.policies import Bulkhead, BulkheadFullError, CircuitBreaker, CircuitOpenError
from framework0_errors.stores import Admission, BreakerSnapshot, Transition
from framework0_errors.stores.select import Store, open_store

GENEROUS = 30.0


def fail(store: Store, admission: Admission, now: float, threshold: int = 1) -> Transition | None:
    """Record a failure of breaker 'b' with a 60 s recovery timeout."""
    return store.record_failure(
        "b", now=now, admission=admission, failure_threshold=threshold, recovery_timeout=60.0
    )


def opened(store: Store, now: float = 0.0) -> None:
    """Open breaker 'b' at ``now`` with one failure."""
    admission = store.before_call("b", now=now, half_open_max_calls=1)
    assert fail(store, admission, now) == Transition("b", "closed", "open")


@pytest.fixture
def changes(kind: str, store: Store, url: str) -> Iterator[Callable[[], object]]:
    """A function whose value changes whenever the store writes anything."""
    if kind == "sqlite":
        path = Path(url.removeprefix("sqlite:"))
        watcher = sqlite3.connect(path)

        def sqlite_probe() -> object:
            files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
            stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            # data_version changes when any other connection commits a change.
            return watcher.execute("PRAGMA data_version").fetchone(), stats

        yield sqlite_probe
        watcher.close()
    elif kind == "redis":
        client = redis.Redis.from_url(url, decode_responses=True)
        yield lambda: client.info("persistence")["rdb_changes_since_last_save"]
        client.close()
    else:
        yield lambda: repr(store._breakers)  # type: ignore[attr-defined]


# -- circuit breakers --------------------------------------------------------------------


def test_unknown_breaker_is_closed(store: Store) -> None:
    """A name never seen admits calls and reads as closed with no failures."""
    assert store.before_call("b", now=0.0, half_open_max_calls=1) == Admission(True, "closed")
    assert store.snapshot("b", now=0.0) == BreakerSnapshot("b", "closed", 0, None, None, 0)
    assert store.breaker_names() == []


def test_snapshots_answer_as_snapshot_does_in_the_order_asked(store: Store) -> None:
    """snapshots() gives each name's snapshot in order: unknown, open, half-open, many."""
    opened(store, now=0.0)  # breaker 'b': half-open from 60 s
    names = [f"n{i:04d}" for i in range(1_100)]  # more than one SQLite query's worth
    admission = store.before_call(names[700], now=0.0, half_open_max_calls=1)
    store.record_failure(
        names[700], now=0.0, admission=admission, failure_threshold=5, recovery_timeout=60.0
    )
    asked = ["zz", "b", *names, "b"]
    for now, b_state in ((30.0, "open"), (61.0, "half_open")):
        b = BreakerSnapshot("b", b_state, 1, 0.0, 60.0, 0)  # type: ignore[arg-type]
        expected = [BreakerSnapshot(name, "closed", 0, None, None, 0) for name in asked]
        expected[1] = expected[-1] = b
        expected[2 + 700] = BreakerSnapshot(names[700], "closed", 1, None, None, 0)
        assert store.snapshots(asked, now=now) == expected
        assert store.snapshot("b", now=now) == b
    assert store.snapshots([], now=0.0) == []


def test_success_path_writes_nothing(store: Store, changes: Callable[[], object]) -> None:
    """before_call and record_success on a healthy breaker change nothing in the store."""
    admission = store.before_call("fresh", now=0.0, half_open_max_calls=1)
    assert store.record_success("fresh", now=0.0, admission=admission) is None
    assert store.breaker_names() == []
    # A breaker with a row: one failure, then a success that clears it.
    fail(store, admission, 0.0, threshold=5)
    assert store.snapshot("b", now=0.0).consecutive_failures == 1
    store.record_success("b", now=0.0, admission=admission)
    assert store.snapshot("b", now=0.0).consecutive_failures == 0
    before = changes()
    for i in range(20):
        admission = store.before_call("b", now=float(i), half_open_max_calls=1)
        assert admission == Admission(True, "closed", epoch=admission.epoch)
        assert store.record_success("b", now=float(i), admission=admission) is None
    assert changes() == before


def test_failures_below_the_threshold_are_counted_and_cleared(store: Store) -> None:
    """Failures count up while closed; a success resets the count without a transition."""
    admission = store.before_call("b", now=0.0, half_open_max_calls=1)
    assert fail(store, admission, 1.0, threshold=3) is None
    assert fail(store, admission, 2.0, threshold=3) is None
    assert store.snapshot("b", now=2.0).consecutive_failures == 2
    assert store.record_success("b", now=3.0, admission=admission) is None
    assert store.snapshot("b", now=3.0) == BreakerSnapshot("b", "closed", 0, None, None, 0)
    assert store.breaker_names() == ["b"]


def test_open_breaker_refuses_until_half_open_at(store: Store) -> None:
    """before_call refuses while open and reports when the breaker half-opens."""
    opened(store, now=10.0)
    refusal = store.before_call("b", now=69.9, half_open_max_calls=1)
    assert (refusal.allowed, refusal.state, refusal.retry_at) == (False, "open", 70.0)
    trial = store.before_call("b", now=70.0, half_open_max_calls=1)
    assert (trial.allowed, trial.trial, trial.state) == (True, True, "half_open")
    assert trial.transition == Transition("b", "open", "half_open")
    assert trial.epoch == refusal.epoch + 1


@pytest.mark.parametrize("now", [1_700_000_000.123456789, 0.1 + 0.2, 1e-7])
def test_times_round_trip_exactly(store: Store, now: float) -> None:
    """Wall-clock times come back bit for bit: opened_at, half_open_at and retry_at."""
    opened(store, now=now)
    assert store.snapshot("b", now=now) == BreakerSnapshot("b", "open", 1, now, now + 60.0, 0)
    assert store.before_call("b", now=now, half_open_max_calls=1).retry_at == now + 60.0


def test_snapshot_reads_half_open_when_due_without_changing_anything(store: Store) -> None:
    """A snapshot after half_open_at says half_open; the breaker moves only on a call."""
    opened(store)
    assert store.snapshot("b", now=60.0).state == "half_open"
    assert store.snapshot("b", now=59.0).state == "open"
    trial = store.before_call("b", now=61.0, half_open_max_calls=1)
    assert trial.transition == Transition("b", "open", "half_open")


def test_trial_slots_are_counted_and_released(store: Store) -> None:
    """Trials beyond the limit are refused; release_trial frees a slot with no verdict."""
    opened(store)
    first = store.before_call("b", now=60.0, half_open_max_calls=1)
    refused = store.before_call("b", now=60.0, half_open_max_calls=1)
    assert (refused.allowed, refused.state, refused.retry_at) == (False, "half_open", 60.0)
    assert store.snapshot("b", now=60.0).trial_calls == 1
    store.release_trial("b", admission=first)
    assert store.snapshot("b", now=60.0).trial_calls == 0
    again = store.before_call("b", now=61.0, half_open_max_calls=1)
    assert again.allowed
    assert again.transition is None  # already half-open


def test_release_of_a_non_trial_or_unknown_breaker_does_nothing(store: Store) -> None:
    """release_trial ignores non-trial admissions, stale trials and names never seen."""
    store.release_trial("nobody", admission=Admission(True, "closed"))
    assert store.breaker_names() == []
    opened(store)
    trial = store.before_call("b", now=60.0, half_open_max_calls=2)
    store.release_trial("b", admission=Admission(True, "closed", epoch=trial.epoch))
    store.release_trial("b", admission=Admission(True, "half_open", True, epoch=trial.epoch - 1))
    assert store.snapshot("b", now=60.0).trial_calls == 1


def test_trial_verdicts_close_or_reopen(store: Store) -> None:
    """A current trial's success closes; a current trial's failure reopens from now."""
    opened(store)
    trial = store.before_call("b", now=60.0, half_open_max_calls=1)
    assert fail(store, trial, 65.0) == Transition("b", "half_open", "open")
    assert store.snapshot("b", now=65.0) == BreakerSnapshot("b", "open", 2, 65.0, 125.0, 0)
    trial = store.before_call("b", now=125.0, half_open_max_calls=1)
    assert store.record_success("b", now=126.0, admission=trial) == Transition(
        "b", "half_open", "closed"
    )
    assert store.snapshot("b", now=126.0) == BreakerSnapshot("b", "closed", 0, None, None, 0)


def test_stale_verdicts_are_ignored(store: Store) -> None:
    """Verdicts from an earlier epoch or from non-trial calls do not move a half-open breaker."""
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
    assert store.snapshot("b", now=122.0) == BreakerSnapshot("b", "half_open", 2, 61.0, 121.0, 1)


def test_failure_of_a_call_admitted_before_the_breaker_opened_is_ignored(store: Store) -> None:
    """A late failure of a call admitted while closed does not reopen or recount."""
    admission = store.before_call("b", now=0.0, half_open_max_calls=1)
    assert fail(store, admission, 1.0) == Transition("b", "closed", "open")
    assert fail(store, admission, 2.0) is None
    assert store.snapshot("b", now=2.0) == BreakerSnapshot("b", "open", 1, 1.0, 61.0, 0)


def test_reset_and_force_open_report_real_changes_only(store: Store) -> None:
    """reset and force_open return a Transition only when the state changes."""
    assert store.reset("b", now=0.0) is None
    assert store.breaker_names() == []
    assert store.force_open("b", now=0.0) == Transition("b", "closed", "open")
    assert store.force_open("b", now=5.0, until=10.0) is None
    assert store.snapshot("b", now=5.0) == BreakerSnapshot("b", "open", 0, 5.0, 10.0, 0)
    assert store.reset("b", now=10.0) == Transition("b", "half_open", "closed")
    assert store.reset("b", now=10.0) is None
    trial_era = store.force_open("b", now=11.0, until=11.0)
    assert trial_era == Transition("b", "closed", "open")
    store.before_call("b", now=12.0, half_open_max_calls=1)
    assert store.force_open("b", now=12.0) == Transition("b", "half_open", "open")
    assert store.reset("b", now=13.0) == Transition("b", "open", "closed")
    assert store.breaker_names() == ["b"]


def test_force_open_without_until_never_half_opens(store: Store) -> None:
    """A breaker forced open with no end refuses calls with retry_at = inf."""
    store.force_open("b", now=0.0)
    refusal = store.before_call("b", now=1e12, half_open_max_calls=1)
    assert not refusal.allowed
    assert refusal.retry_at is not None
    assert math.isinf(refusal.retry_at)
    assert store.snapshot("b", now=1e12) == BreakerSnapshot("b", "open", 0, 0.0, None, 0)


def test_breaker_names_are_listed_sorted(store: Store) -> None:
    """breaker_names lists every breaker with state, in sorted order, per name."""
    admission = Admission(True, "closed")
    for name in ["zeta", "alpha", "mid:dle", "Ünï"]:
        store.record_failure(
            name, now=0.0, admission=admission, failure_threshold=9, recovery_timeout=1.0
        )
    assert store.breaker_names() == sorted(["zeta", "alpha", "mid:dle", "Ünï"])
    assert store.snapshot("alpha", now=0.0).consecutive_failures == 1


def test_circuit_breaker_policy_opens_through_the_store(store: Store) -> None:
    """CircuitBreaker over the store opens after its threshold and refuses with the reason."""
    moves: list[tuple[str, str, str]] = []
    breaker = CircuitBreaker(
        "svc",
        failure_threshold=2,
        recovery_timeout=30.0,
        store=store,
        clock=lambda: 1000.0,
        on_state_change=lambda *move: moves.append(move),
    )
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(lambda: (_ for _ in ()).throw(ConnectionError("down")))
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: "never")
    assert refused.value.retry_at == 1030.0
    assert moves == [("svc", "closed", "open")]


def test_concurrent_failures_are_all_counted(store: Store) -> None:
    """Failures recorded by many threads at once are each counted exactly once."""
    admission = Admission(True, "closed")
    barrier = threading.Barrier(8)

    def failer() -> None:
        barrier.wait(timeout=GENEROUS)
        for _ in range(25):
            store.record_failure(
                "b", now=0.0, admission=admission, failure_threshold=10_000, recovery_timeout=1.0
            )

    threads = [threading.Thread(target=failer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=GENEROUS)
    assert store.snapshot("b", now=0.0).consecutive_failures == 200


# -- bulkheads ---------------------------------------------------------------------------


def test_bulkhead_slots_up_to_the_limit(store: Store) -> None:
    """try_acquire grants up to `limit` slots; release frees one; unknown holders are no-ops."""
    assert store.try_acquire("db", limit=2, holder_id="a", lease_seconds=None, now=0.0)
    assert store.try_acquire("db", limit=2, holder_id="b", lease_seconds=None, now=0.0)
    assert not store.try_acquire("db", limit=2, holder_id="c", lease_seconds=None, now=0.0)
    assert store.in_use("db", now=0.0) == 2
    store.release("db", holder_id="nobody")
    store.release("other", holder_id="a")
    assert store.in_use("db", now=0.0) == 2
    store.release("db", holder_id="a")
    assert store.try_acquire("db", limit=2, holder_id="c", lease_seconds=None, now=0.0)
    assert store.in_use("never-used", now=0.0) == 0
    assert store.bulkhead_names() == ["db"]


def test_slots_without_a_lease_never_expire(store: Store) -> None:
    """A slot taken with lease_seconds=None stays held however late it is."""
    assert store.try_acquire("db", limit=1, holder_id="a", lease_seconds=None, now=0.0)
    assert store.in_use("db", now=1e15) == 1
    assert not store.try_acquire("db", limit=1, holder_id="b", lease_seconds=1.0, now=1e15)


def test_expired_leases_free_their_slots(store: Store) -> None:
    """A slot whose lease ran out no longer counts and can be taken by another holder."""
    assert store.try_acquire("db", limit=1, holder_id="dead", lease_seconds=10.0, now=0.0)
    assert store.in_use("db", now=9.9) == 1
    assert not store.try_acquire("db", limit=1, holder_id="b", lease_seconds=10.0, now=9.9)
    assert store.in_use("db", now=10.0) == 0
    assert store.try_acquire("db", limit=1, holder_id="b", lease_seconds=10.0, now=10.0)
    assert store.in_use("db", now=10.0) == 1


def test_acquiring_again_renews_the_holders_lease(store: Store) -> None:
    """A holder that acquires again while below the limit keeps one slot with a new lease."""
    assert store.try_acquire("db", limit=2, holder_id="a", lease_seconds=10.0, now=0.0)
    assert store.try_acquire("db", limit=2, holder_id="a", lease_seconds=10.0, now=5.0)
    assert store.in_use("db", now=12.0) == 1


def test_bulkhead_names_include_refused_attempts(store: Store) -> None:
    """bulkhead_names lists every name a slot was asked for, sorted."""
    assert not store.try_acquire("zero", limit=0, holder_id="a", lease_seconds=None, now=0.0)
    store.try_acquire("alpha", limit=1, holder_id="a", lease_seconds=None, now=0.0)
    assert store.bulkhead_names() == ["alpha", "zero"]


def test_wait_for_slot_never_blocks_when_a_slot_is_free(kind: str, store: Store) -> None:
    """The memory store says it waited; durable stores say at once that the caller polls."""
    answer = store.wait_for_slot("db", limit=1, timeout=GENEROUS, now=0.0)
    assert answer is (kind == "memory")


@pytest.mark.parametrize("threads", [8])
def test_concurrent_acquires_never_exceed_the_limit(store: Store, threads: int) -> None:
    """Many threads racing for 3 slots never hold more than 3 at once."""
    barrier = threading.Barrier(threads)
    granted: list[int] = []

    def racer(i: int) -> None:
        barrier.wait(timeout=GENEROUS)
        if store.try_acquire("db", limit=3, holder_id=str(i), lease_seconds=None, now=0.0):
            granted.append(i)

    workers = [threading.Thread(target=racer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=GENEROUS)
    assert len(granted) == 3
    assert store.in_use("db", now=0.0) == 3


def test_bulkhead_policy_polls_a_store_that_cannot_wait(durable_url: str) -> None:
    """Bulkhead over a full durable store sleeps between polls, then raises BulkheadFullError."""
    store = open_store(durable_url)
    now = [500.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    store.try_acquire("db", limit=1, holder_id="other", lease_seconds=None, now=now[0])
    bulkhead = Bulkhead(
        "db",
        max_concurrent=1,
        max_wait=0.5,
        store=store,
        clock=lambda: now[0],
        sleep=sleep,
        lease_seconds=5.0,
        poll_interval=0.25,
    )
    try:
        with pytest.raises(BulkheadFullError):
            bulkhead.call(lambda: None)
        assert sleeps == [0.25, 0.25]
        store.release("db", holder_id="other")
        assert bulkhead.call(bulkhead.in_use) == 1
        assert bulkhead.in_use() == 0
    finally:
        store.close()


# -- error history -----------------------------------------------------------------------


def test_error_history_keeps_the_newest_records(url: str) -> None:
    """recent_errors returns the newest first, and only error_retention records are kept."""
    store = open_store(url, error_retention=3)
    try:
        assert store.recent_errors() == []
        for i in range(5):
            store.append_error({"id": i, "step": "s", "cause": ("a", "b")})
        assert store.recent_errors(limit=10) == [
            {"id": i, "step": "s", "cause": ["a", "b"]} for i in (4, 3, 2)
        ]
        assert [r["id"] for r in store.recent_errors(limit=2)] == [4, 3]
        assert store.recent_errors(limit=0) == []
    finally:
        store.close()


@pytest.mark.parametrize("limit", [-1, 1.5, True])
def test_limits_must_be_counts(store: Store, limit: object) -> None:
    """recent_errors and list_runs reject limits that are not integers >= 0."""
    with pytest.raises(ValueError, match="limit must be an integer"):
        store.recent_errors(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be an integer"):
        store.list_runs(limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("knob", ["error_retention", "run_retention"])
@pytest.mark.parametrize("value", [0, 2.0, False])
def test_retention_must_be_a_positive_count(url: str, knob: str, value: object) -> None:
    """open_store refuses a retention that is not an integer >= 1."""
    with pytest.raises(ValueError, match=f"{knob} must be an integer >= 1"):
        open_store(url, **{knob: value})  # type: ignore[arg-type]


def test_records_that_are_not_json_are_refused(store: Store) -> None:
    """append_error raises TypeError for a record JSON cannot hold, and stores nothing."""
    with pytest.raises(TypeError):
        store.append_error({"when": object()})
    assert store.recent_errors() == []


# -- run checkpoints ---------------------------------------------------------------------


def save(store: Store, run_id: str, path: str = "r.yaml", step: str = "s1") -> None:
    """Save a checkpoint of ``run_id`` with one step outcome."""
    store.save_checkpoint(
        run_id,
        recipe_path=path,
        recipe_hash=f"hash-{run_id}",
        context={"data": {"rows": (1, 2)}, "last": step},
        step_outcomes={step: {"outcome": "succeeded", "attempts": 1}},
    )


def save_entry(store: Store, kind: str, key: str, run_id: str = "r1") -> None:
    """Save a checkpoint of ``run_id`` with one Context key or one step outcome, only."""
    entry = {key: "succeeded"}
    store.save_checkpoint(
        run_id,
        recipe_path="r.yaml",
        recipe_hash="h",
        context=entry if kind == "context" else {},
        step_outcomes=entry if kind == "outcome" else {},
    )


def test_checkpoints_keep_the_start_and_move_updated_at(store: Store) -> None:
    """A second save of a run overwrites what it names; started_at stays, updated_at moves."""
    assert store.load_checkpoint("r1") is None
    save(store, "r1", step="s1")
    first = store.load_checkpoint("r1")
    assert first is not None
    assert first.context == {"data": {"rows": [1, 2]}, "last": "s1"}
    assert first.step_outcomes == {"s1": {"outcome": "succeeded", "attempts": 1}}
    assert (first.outcome, first.finished_at) == (None, None)
    save(store, "r1", step="s2")
    second = store.load_checkpoint("r1")
    assert second is not None
    assert second.context == {"data": {"rows": [1, 2]}, "last": "s2"}
    assert second.started_at == first.started_at
    assert second.updated_at >= first.updated_at
    assert (second.recipe_path, second.recipe_hash) == ("r.yaml", "hash-r1")


def test_a_value_many_keys_share_is_saved_under_each(store: Store) -> None:
    """One object under several keys (and as an outcome) comes back as equal, separate values."""
    shared = {"state": "closed", "consecutive_failures": 0}
    store.save_checkpoint(
        "r1",
        recipe_path="r.yaml",
        recipe_hash="h",
        context={"circuit_breakers.a": shared, "circuit_breakers.b": shared, "n": 1},
        step_outcomes={"s1": shared, "s2": "succeeded"},
    )
    loaded = store.load_checkpoint("r1")
    assert loaded is not None
    assert loaded.context == {"circuit_breakers.a": shared, "circuit_breakers.b": shared, "n": 1}
    assert loaded.context["circuit_breakers.a"] is not loaded.context["circuit_breakers.b"]
    assert loaded.step_outcomes == {"s1": shared, "s2": "succeeded"}


def test_step_outcomes_are_merged_per_step(store: Store) -> None:
    """A save adds its steps to the stored ones and overwrites only the steps it names."""
    save(store, "r1", step="s1")
    save(store, "r1", step="s2")
    merged = store.load_checkpoint("r1")
    assert merged is not None
    assert merged.step_outcomes == {
        "s1": {"outcome": "succeeded", "attempts": 1},
        "s2": {"outcome": "succeeded", "attempts": 1},
    }
    store.save_checkpoint(
        "r1",
        recipe_path="r.yaml",
        recipe_hash="hash-r1",
        context={"only": "this"},
        step_outcomes={"s1": "failed"},
    )
    overwritten = store.load_checkpoint("r1")
    assert overwritten is not None
    assert overwritten.step_outcomes == {
        "s1": "failed",
        "s2": {"outcome": "succeeded", "attempts": 1},
    }
    assert overwritten.context == {"data": {"rows": [1, 2]}, "last": "s2", "only": "this"}
    store.save_checkpoint(
        "r1", recipe_path="r.yaml", recipe_hash="hash-r1", context={}, step_outcomes={}
    )
    unchanged = store.load_checkpoint("r1")
    assert unchanged is not None
    assert unchanged.step_outcomes == overwritten.step_outcomes
    assert unchanged.context == overwritten.context


@pytest.mark.parametrize(
    ("saves", "expected"),
    [
        pytest.param([{"a": 1}], [("a", 1)], id="first-save-stores-what-it-is-given"),
        pytest.param([{}], [], id="first-save-empty"),
        pytest.param([{"a": 1}, {"b": 2}], [("a", 1), ("b", 2)], id="new-key-keeps-the-rest"),
        pytest.param(
            [{"a": 1}, {"b": 2}, {"a": [3]}], [("a", [3]), ("b", 2)], id="overwrite-in-place"
        ),
        pytest.param(
            [{"a": 1, "b": {"c": (1, 2)}}, {}], [("a", 1), ("b", {"c": [1, 2]})], id="empty-save"
        ),
        pytest.param(
            [{"z": 1, "a": 2}, {"m": 3, "z": 4}, {"a": None, "b": 5}],
            [("z", 4), ("a", None), ("m", 3), ("b", 5)],
            id="first-saved-order",
        ),
    ],
)
def test_the_context_is_merged_per_key(
    store: Store, saves: list[dict[str, object]], expected: list[tuple[str, object]]
) -> None:
    """Each save adds or overwrites its keys; keys not given keep their value and place."""
    for context in saves:
        store.save_checkpoint(
            "r1", recipe_path="r.yaml", recipe_hash="h", context=context, step_outcomes={}
        )
    loaded, latest = store.load_checkpoint("r1"), store.latest_run("r.yaml")
    assert loaded is not None
    assert latest is not None
    assert list(loaded.context.items()) == expected
    assert list(latest.context.items()) == expected


def test_context_keys_and_step_names_never_clash(store: Store) -> None:
    """A Context key and a step of the same name are stored apart and overwritten apart."""
    store.save_checkpoint(
        "r1", recipe_path="r.yaml", recipe_hash="h", context={"s": 1}, step_outcomes={"s": "ok"}
    )
    store.save_checkpoint(
        "r1", recipe_path="r.yaml", recipe_hash="h", context={"s": 2}, step_outcomes={}
    )
    loaded = store.load_checkpoint("r1")
    assert loaded is not None
    assert (loaded.context, loaded.step_outcomes) == ({"s": 2}, {"s": "ok"})


def test_step_outcomes_load_in_the_order_steps_were_first_saved(store: Store) -> None:
    """Outcomes come back in first-save order; overwriting a step keeps its place."""
    for step in ["zeta", "alpha", "mid", "alpha", "zeta", "omega"]:
        store.save_checkpoint(
            "r1", recipe_path="r.yaml", recipe_hash="h", context={}, step_outcomes={step: step}
        )
    store.save_checkpoint(
        "r1",
        recipe_path="r.yaml",
        recipe_hash="h",
        context={},
        step_outcomes={"beta": 2, "mid": 3, "aardvark": 4},
    )
    loaded = store.load_checkpoint("r1")
    assert loaded is not None
    assert list(loaded.step_outcomes) == ["zeta", "alpha", "mid", "omega", "beta", "aardvark"]
    assert loaded.step_outcomes["mid"] == 3
    latest = store.latest_run("r.yaml")
    assert latest is not None
    assert latest.step_outcomes == loaded.step_outcomes
    assert list(latest.step_outcomes) == list(loaded.step_outcomes)


def test_runs_keep_their_entries_apart(store: Store) -> None:
    """Context keys and outcomes saved for one run never show in another's checkpoint."""
    save(store, "r1", step="a")
    save(store, "r2", step="b")
    save(store, "r1", step="c")
    store.save_checkpoint(
        "r2", recipe_path="r.yaml", recipe_hash="h", context={"own": 2}, step_outcomes={}
    )
    first, second = store.load_checkpoint("r1"), store.load_checkpoint("r2")
    assert first is not None
    assert second is not None
    assert list(first.step_outcomes) == ["a", "c"]
    assert list(second.step_outcomes) == ["b"]
    assert first.context == {"data": {"rows": [1, 2]}, "last": "c"}
    assert second.context == {"data": {"rows": [1, 2]}, "last": "b", "own": 2}


def test_finish_run_records_the_outcome_until_the_run_resumes(store: Store) -> None:
    """finish_run sets outcome and finished_at; a later checkpoint marks it running again."""
    save(store, "r1")
    store.finish_run("r1", "failed")
    done = store.load_checkpoint("r1")
    assert done is not None
    assert done.outcome == "failed"
    assert done.finished_at is not None
    assert done.finished_at >= done.updated_at
    assert store.list_runs()[0].outcome == "failed"
    save(store, "r1", step="s2")
    resumed = store.load_checkpoint("r1")
    assert resumed is not None
    assert (resumed.outcome, resumed.finished_at) == (None, None)


def test_finish_run_refuses_unknown_runs_and_empty_outcomes(store: Store) -> None:
    """finish_run raises KeyError for a run never saved and ValueError for a blank outcome."""
    with pytest.raises(KeyError, match="nope"):
        store.finish_run("nope", "succeeded")
    save(store, "r1")
    with pytest.raises(ValueError, match="outcome must be a non-empty string"):
        store.finish_run("r1", "")
    assert store.load_checkpoint("nope") is None


def test_runs_are_listed_and_found_by_recipe_last_started_first(store: Store) -> None:
    """list_runs and latest_run order runs by when they started, not when they last saved."""
    assert store.list_runs() == []
    assert store.latest_run("a.yaml") is None
    save(store, "r1", path="a.yaml")
    save(store, "r2", path="b.yaml")
    save(store, "r3", path="a.yaml")
    save(store, "r1", path="a.yaml", step="later")
    assert [r.run_id for r in store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["r3", "r2"]
    assert store.list_runs(limit=0) == []
    latest = store.latest_run("a.yaml")
    assert latest is not None
    assert latest.run_id == "r3"
    other = store.latest_run("b.yaml")
    assert other is not None
    assert other.run_id == "r2"


def test_a_run_saved_under_another_recipe_path_moves(store: Store) -> None:
    """Saving a run with a new recipe path files it under the new path only."""
    save(store, "r1", path="old.yaml")
    save(store, "r1", path="new.yaml")
    assert store.latest_run("old.yaml") is None
    moved = store.latest_run("new.yaml")
    assert moved is not None
    assert moved.run_id == "r1"


def test_only_the_newest_runs_are_kept(url: str) -> None:
    """Beyond run_retention, the runs started first are deleted with their checkpoints."""
    store = open_store(url, run_retention=2)
    try:
        save(store, "r1", path="gone.yaml")
        save(store, "r2")
        save(store, "r3")
        save(store, "r2", step="again")
        assert [r.run_id for r in store.list_runs()] == ["r3", "r2"]
        assert store.load_checkpoint("r1") is None
        assert store.latest_run("gone.yaml") is None
        with pytest.raises(KeyError):
            store.finish_run("r1", "failed")
        kept = store.load_checkpoint("r2")
        assert kept is not None
        assert list(kept.step_outcomes) == ["s1", "again"]
        # A run saved again under a trimmed run's id starts with nothing of the old one.
        store.save_checkpoint(
            "r1", recipe_path="r.yaml", recipe_hash="h", context={"x": 1}, step_outcomes={"new": 1}
        )
        reborn = store.load_checkpoint("r1")
        assert reborn is not None
        assert (reborn.context, reborn.step_outcomes) == ({"x": 1}, {"new": 1})
    finally:
        store.close()


@pytest.mark.parametrize(
    ("context", "step_outcomes", "match"),
    [
        ({}, {"s": {1j}}, "not JSON serializable"),
        ({}, {1: "x"}, "step names must be strings"),
        ({"c": {1j}}, {}, "not JSON serializable"),
        ({"fine": 1, 2: "x"}, {"s9": "ok"}, "Context keys must be strings"),
        ({"fine": 1}, {"s9": object()}, "not JSON serializable"),
    ],
)
def test_a_checkpoint_that_is_not_json_is_refused_whole(
    store: Store, context: dict[Any, Any], step_outcomes: dict[Any, Any], match: str
) -> None:
    """save_checkpoint raises TypeError for keys or data JSON cannot hold; nothing is saved."""
    save(store, "r1")
    with pytest.raises(TypeError, match=match):
        store.save_checkpoint(
            "r1",
            recipe_path="r.yaml",
            recipe_hash="h",
            context=context,
            step_outcomes=step_outcomes,
        )
    kept = store.load_checkpoint("r1")
    assert kept is not None
    assert kept.context == {"data": {"rows": [1, 2]}, "last": "s1"}
    assert kept.step_outcomes == {"s1": {"outcome": "succeeded", "attempts": 1}}
    assert kept.recipe_hash == "hash-r1"
