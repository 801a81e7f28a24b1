"""In-process store for breakers and bulkheads: state lives as long as the object."""

from __future__ import annotations

import functools
import math
import threading
from collections import deque
from dataclasses import dataclass

from framework0_errors.stores.base import (
    Admission,
    BreakerSnapshot,
    BreakerState,
    Transition,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Breaker:
    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float | None = None
    half_open_at: float | None = None
    trials: int = 0
    epoch: int = 0


class _Bulkhead:
    # A plain slotted class: one is made per bulkhead name, often one per step.
    __slots__ = ("changed", "debt", "free", "holders", "limit", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # One item per free slot. Appends and pops of a deque are atomic, so taking
        # and giving back a slot needs no lock: a slot is never handed out twice,
        # and the slots held never exceed the limit.
        self.free: deque[None] = deque((None,) * max(limit, 0))
        # holder_id -> lease expiry (inf: no lease)
        self.holders: dict[str, float] = {}
        # slots to retire as they come back, after the limit was lowered
        self.debt = 0
        # made by the first waiter: most bulkheads never make anyone wait
        self.changed: threading.Condition | None = None
        # threads in wait_for_slot; a release with nobody waiting need not notify
        self.waiters = 0


_ADMIT_NEW = Admission(allowed=True, state="closed", epoch=0)


@functools.lru_cache(maxsize=1024)
def _closed_admission(epoch: int) -> Admission:
    # Admissions are frozen, so the closed one of each epoch can be shared.
    return Admission(allowed=True, state="closed", epoch=epoch)


def _is_closed(b: _Breaker) -> bool:
    return b.state == "closed"


class MemoryStore:
    """Thread-safe store of breaker and bulkhead state for one process.

    Implements both :class:`~framework0_errors.stores.base.BreakerStore` and
    :class:`~framework0_errors.stores.base.BulkheadStore`. Policies that share a name and
    this object share state. Bulkhead waiters sleep on a condition that every release
    notifies, so waiting costs no polling.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}
        self._bulkheads: dict[str, _Bulkhead] = {}

    # -- circuit breakers ----------------------------------------------------------

    def before_call(self, name: str, *, now: float, half_open_max_calls: int) -> Admission:
        """Admit or refuse one call, turning open into half_open once its time has come."""
        # Fast path, without the lock: a closed breaker admits every call, and a
        # call admitted just as another thread opens it is indistinguishable from
        # one that started a moment earlier.
        b = self._breakers.get(name)
        if b is None:
            return _ADMIT_NEW
        epoch = b.epoch
        if b.state == "closed":
            return _closed_admission(epoch)
        with self._lock:
            if _is_closed(b):  # it closed while we waited for the lock
                return _closed_admission(b.epoch)
            transition = None
            if b.state == "open":
                if b.half_open_at is None or now < b.half_open_at:
                    retry_at = math.inf if b.half_open_at is None else b.half_open_at
                    return Admission(allowed=False, state="open", epoch=b.epoch, retry_at=retry_at)
                self._move(b, "half_open")
                transition = Transition(name, "open", "half_open")
            if b.trials >= half_open_max_calls:
                return Admission(allowed=False, state="half_open", epoch=b.epoch, retry_at=now)
            b.trials += 1
            return Admission(
                allowed=True, state="half_open", trial=True, epoch=b.epoch, transition=transition
            )

    def record_success(self, name: str, *, now: float, admission: Admission) -> Transition | None:
        """Record that an admitted call succeeded; a current trial closes the breaker."""
        b = self._breakers.get(name)
        if b is None or (b.state == "closed" and not b.failures):
            return None  # the common case: nothing to change, so no lock either
        with self._lock:
            if b.state == "closed":
                if b.failures:
                    b.failures = 0
                return None
            if self._is_current_trial(b, admission):
                self._move(b, "closed")
                return Transition(name, "half_open", "closed")
            return None

    def record_failure(
        self,
        name: str,
        *,
        now: float,
        admission: Admission,
        failure_threshold: int,
        recovery_timeout: float,
    ) -> Transition | None:
        """Record a failed call: open at ``failure_threshold``, reopen on a failed trial."""
        with self._lock:
            b = self._breakers.setdefault(name, _Breaker())
            if b.state == "closed":
                b.failures += 1
                if b.failures < failure_threshold:
                    return None
                self._move(b, "open", now=now, until=now + recovery_timeout)
                return Transition(name, "closed", "open")
            if self._is_current_trial(b, admission):
                b.failures += 1
                self._move(b, "open", now=now, until=now + recovery_timeout)
                return Transition(name, "half_open", "open")
            # A call admitted before the breaker opened, or a stale trial: the
            # breaker has already reacted to the failures that matter.
            return None

    def release_trial(self, name: str, *, admission: Admission) -> None:
        """Free a trial slot without a verdict (the call was interrupted)."""
        with self._lock:
            b = self._breakers.get(name)
            if b is not None and self._is_current_trial(b, admission):
                b.trials -= 1

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        """Return the breaker's current state without changing it."""
        with self._lock:
            b = self._breakers.get(name) or _Breaker()
            return BreakerSnapshot(
                name=name,
                state=self._effective_state(b, now),
                consecutive_failures=b.failures,
                opened_at=b.opened_at,
                half_open_at=b.half_open_at,
                trial_calls=b.trials,
            )

    def reset(self, name: str, *, now: float) -> Transition | None:
        """Close the breaker and forget its failures."""
        with self._lock:
            b = self._breakers.get(name)
            if b is None:
                return None
            old = self._effective_state(b, now)
            self._move(b, "closed")
            return None if old == "closed" else Transition(name, old, "closed")

    def force_open(self, name: str, *, now: float, until: float | None = None) -> Transition | None:
        """Open the breaker by hand, until ``until`` (None: until :meth:`reset`)."""
        with self._lock:
            b = self._breakers.setdefault(name, _Breaker())
            old = self._effective_state(b, now)
            self._move(b, "open", now=now, until=until)
            return None if old == "open" else Transition(name, old, "open")

    def breaker_names(self) -> list[str]:
        """Return the names of breakers with recorded state, sorted."""
        with self._lock:
            return sorted(self._breakers)

    @staticmethod
    def _effective_state(b: _Breaker, now: float) -> BreakerState:
        if b.state == "open" and b.half_open_at is not None and now >= b.half_open_at:
            return "half_open"
        return b.state

    @staticmethod
    def _is_current_trial(b: _Breaker, admission: Admission) -> bool:
        return b.state == "half_open" and admission.trial and admission.epoch == b.epoch

    @staticmethod
    def _move(
        b: _Breaker, state: BreakerState, *, now: float | None = None, until: float | None = None
    ) -> None:
        b.state = state
        b.epoch += 1
        b.trials = 0
        if state == "closed":
            b.failures = 0
            b.opened_at = b.half_open_at = None
        elif state == "open":
            b.opened_at = now
            b.half_open_at = until

    # -- bulkheads -----------------------------------------------------------------

    def try_acquire(
        self, name: str, *, limit: int, holder_id: str, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        bh = self._bulkheads.get(name)
        if bh is not None and bh.limit == limit and holder_id not in bh.holders:
            try:
                bh.free.pop()
            except IndexError:
                pass  # full, unless a lease ran out: see below, under the lock
            else:
                # A release may have put the slot back just after the limit was
                # lowered (it read no debt); the debt is paid here instead.
                if not bh.debt or not self._retire(bh):
                    bh.holders[holder_id] = (
                        math.inf if lease_seconds is None else now + lease_seconds
                    )
                    return True
        with self._lock:
            bh = self._bulkhead(name, limit)
            if bh.holders:
                self._expire(bh, now)
            while bh.debt and bh.free:  # pay what a lowered limit still owes
                bh.free.pop()
                bh.debt -= 1
            if holder_id not in bh.holders:
                try:
                    bh.free.pop()
                except IndexError:
                    return False
            elif not bh.free:  # a holder asking again keeps its slot only below the limit
                return False
            bh.holders[holder_id] = math.inf if lease_seconds is None else now + lease_seconds
            return True

    def _retire(self, bh: _Bulkhead) -> bool:
        # The caller took a free slot while a debt was owed: retire the slot
        # (True) if the debt is still owed under the lock, else keep it (False).
        with self._lock:
            if bh.debt:
                bh.debt -= 1
                return True
            return False

    def release(self, name: str, *, holder_id: str) -> None:
        """Give a slot back; releasing a slot not held is a no-op."""
        bh = self._bulkheads.get(name)
        if bh is None or bh.holders.pop(holder_id, None) is None:
            return  # the pop is atomic: a slot is given back once, here or by _expire
        if bh.debt:
            with self._lock:
                if bh.debt:
                    bh.debt -= 1
                    return
        bh.free.append(None)
        # Read after the append, while a waiter counts itself before it looks at
        # free: one of the two sees the other, so no wake-up is lost.
        if bh.waiters:
            with self._lock:
                if bh.changed is not None:
                    bh.changed.notify_all()

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        """Block up to ``timeout`` seconds until a slot may be free; always returns True."""
        with self._lock:
            bh = self._bulkhead(name, limit)
            self._expire(bh, now)
            bh.waiters += 1
            try:
                if bh.free or timeout <= 0:
                    return True
                # A lease running out frees a slot without any release to notify us.
                next_expiry = min(bh.holders.values(), default=now)
                if bh.changed is None:
                    # On the store's lock: a release wakes only the waiters of its own bulkhead.
                    bh.changed = threading.Condition(self._lock)
                bh.changed.wait(min(timeout, max(next_expiry - now, 0.0)))
            finally:
                bh.waiters -= 1
            return True

    def in_use(self, name: str, *, now: float) -> int:
        """Return how many unexpired slots of ``name`` are held."""
        with self._lock:
            bh = self._bulkheads.get(name)
            if bh is None:
                return 0
            self._expire(bh, now)
            return len(bh.holders)

    def bulkhead_names(self) -> list[str]:
        """Return the names of bulkheads ever used, sorted."""
        with self._lock:
            return sorted(self._bulkheads)

    def _bulkhead(self, name: str, limit: int) -> _Bulkhead:
        # Called with the lock held. The latest caller's limit applies: raising
        # it adds free slots; lowering it retires free slots now and held ones
        # as they come back.
        bh = self._bulkheads.get(name)
        if bh is None:
            bh = self._bulkheads[name] = _Bulkhead(limit)
        elif bh.limit != limit:
            grow = limit - bh.limit
            bh.limit = limit
            if grow > 0:
                repaid = min(grow, bh.debt)
                bh.debt -= repaid
                bh.free.extend([None] * (grow - repaid))
            else:
                for _ in range(-grow):
                    try:
                        bh.free.pop()
                    except IndexError:
                        bh.debt += 1
        return bh

    def _expire(self, bh: _Bulkhead, now: float) -> None:
        # Called with the lock held; list() copies the items in one step, so
        # holders added meanwhile without the lock do not upset the loop.
        for holder_id, expiry in list(bh.holders.items()):
            if expiry <= now and bh.holders.pop(holder_id, None) is not None:
                if bh.debt:
                    bh.debt -= 1
                else:
                    bh.free.append(None)
