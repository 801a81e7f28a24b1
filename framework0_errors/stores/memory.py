"""In-process store for breakers and bulkheads: state lives as long as the object."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from framework0_errors.stores.base import (
    Admission,
    BreakerCell,
    BreakerSnapshot,
    BreakerState,
    LocalBulkhead,
    Transition,
)

__all__ = ["MemoryStore"]


_ADMIT_NEW = Admission(allowed=True, state="closed", epoch=0)


@dataclass(slots=True)
class _Breaker:
    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float | None = None
    half_open_at: float | None = None
    trials: int = 0
    epoch: int = 0
    # The admission of a call while closed in this epoch (see breaker_cell).
    admission: Admission = _ADMIT_NEW
    # False for a cell made by breaker_cell that nothing has happened to yet.
    recorded: bool = False


# What a name never used reads as. Only ever read: never change it.
_NEVER_USED = _Breaker()


def _snapshot(name: str, b: _Breaker, now: float) -> BreakerSnapshot:
    # _effective_state, inline, and the tuple made as BreakerSnapshot._make does:
    # a run ends by taking one of every breaker it used, often one per step.
    state = b.state
    if state == "open" and b.half_open_at is not None and now >= b.half_open_at:
        state = "half_open"
    return _new_tuple(
        BreakerSnapshot, (name, state, b.failures, b.opened_at, b.half_open_at, b.trials)
    )


_new_tuple = tuple.__new__


def _effective_state(b: _Breaker, now: float) -> BreakerState:
    if b.state == "open" and b.half_open_at is not None and now >= b.half_open_at:
        return "half_open"
    return b.state


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
        if b.state == "closed":
            return b.admission
        with self._lock:
            if _is_closed(b):  # it closed while we waited for the lock
                return b.admission
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
            b.recorded = True
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
        return self.snapshots((name,), now=now)[0]

    def snapshots(self, names: Sequence[str], *, now: float) -> list[BreakerSnapshot]:
        """Return :meth:`snapshot` of each of ``names``, in that order, under one lock.

        :meth:`snapshot` calls this method: a subclass overriding it changes both.
        """
        get = self._breakers.get
        with self._lock:
            return [_snapshot(name, get(name) or _NEVER_USED, now) for name in names]

    def reset(self, name: str, *, now: float) -> Transition | None:
        """Close the breaker and forget its failures."""
        with self._lock:
            b = self._breakers.get(name)
            if b is None:
                return None
            old = _effective_state(b, now)
            self._move(b, "closed")
            return None if old == "closed" else Transition(name, old, "closed")

    def force_open(self, name: str, *, now: float, until: float | None = None) -> Transition | None:
        """Open the breaker by hand, until ``until`` (None: until :meth:`reset`)."""
        with self._lock:
            b = self._breakers.setdefault(name, _Breaker())
            b.recorded = True
            old = _effective_state(b, now)
            self._move(b, "open", now=now, until=until)
            return None if old == "open" else Transition(name, old, "open")

    def breaker_names(self) -> list[str]:
        """Return the names of breakers with recorded state, sorted."""
        with self._lock:
            return sorted(name for name, b in self._breakers.items() if b.recorded)

    def breaker_cell(self, name: str) -> BreakerCell:
        """Return the live state of breaker ``name``, made on first use.

        A policy reads it without a lock to skip this store's methods on its
        success path (see :class:`~framework0_errors.stores.base.BreakerCell`).
        The cell of a name is never replaced, so it may be kept. A subclass
        that overrides ``before_call`` or ``record_success`` and needs every
        call to reach them sets ``breaker_cell = None``.
        """
        b = self._breakers.get(name)
        if b is None:
            with self._lock:
                b = self._breakers.setdefault(name, _Breaker())
        return b

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
            b.admission = Admission(allowed=True, state="closed", epoch=b.epoch)
        elif state == "open":
            b.opened_at = now
            b.half_open_at = until

    # -- bulkheads -----------------------------------------------------------------

    def try_acquire(
        self, name: str, *, limit: int, holder_id: Hashable, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        return self._slots(name, limit).take(
            holder_id, limit=limit, lease_seconds=lease_seconds, now=now
        )

    def release(self, name: str, *, holder_id: Hashable) -> None:
        """Give a slot back; releasing a slot not held is a no-op."""
        bh = self._bulkheads.get(name)
        if bh is not None:
            bh.give(holder_id)

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        """Block up to ``timeout`` seconds until a slot may be free; always returns True."""
        return self._slots(name, limit).wait(limit=limit, timeout=timeout, now=now)

    def in_use(self, name: str, *, now: float) -> int:
        """Return how many unexpired slots of ``name`` are held."""
        with self._lock:
            bh = self._bulkheads.get(name)
            if bh is None:
                return 0
            bh.expire(now)
            return len(bh.holders)

    def bulkhead_names(self) -> list[str]:
        """Return the names of bulkheads ever used, sorted."""
        with self._lock:
            return sorted(self._bulkheads)

    def never_used(self, breaker: str, bulkhead: str) -> bool:
        """Whether this store has no state yet for breaker ``breaker`` and bulkhead ``bulkhead``.

        Such a breaker is closed without failures and such a bulkhead holds no
        slot. A caller that alone uses both names may run a call on that, and
        make their state only when the call fails (see ``StepChain``); anyone
        else sharing either name must go through the policies. Lock-free: one
        dict lookup each.
        """
        return breaker not in self._breakers and bulkhead not in self._bulkheads

    def local_bulkhead(self, name: str, *, limit: int) -> LocalBulkhead:
        """Return the slots of bulkhead ``name``: made with ``limit`` on first use, kept after.

        A policy keeps it and takes and gives back slots on it directly, with
        any hashable holder id unique in this process (see
        :class:`~framework0_errors.stores.base.LocalBulkhead`). A subclass
        that overrides ``try_acquire`` or ``release`` and needs every slot to
        go through them sets ``local_bulkhead = None``.
        """
        return self._slots(name, limit)

    def _slots(self, name: str, limit: int) -> _Bulkhead:
        bh = self._bulkheads.get(name)
        if bh is None:
            with self._lock:
                bh = self._bulkheads.get(name)
                if bh is None:
                    bh = self._bulkheads[name] = _Bulkhead(limit, self._lock)
        return bh


class _Bulkhead:
    """The slots of one bulkhead name; its slow paths hold the store's lock."""

    # A plain slotted class: one is made per bulkhead name, often one per step.
    __slots__ = ("changed", "debt", "free", "holders", "limit", "lock", "waiters")

    def __init__(self, limit: int, lock: threading.Lock) -> None:
        self.limit = limit
        self.lock = lock
        # One item per free slot. Appends and pops of a deque are atomic, so taking
        # and giving back a slot needs no lock: a slot is never handed out twice,
        # and the slots held never exceed the limit.
        self.free: deque[None] = deque((None,) * max(limit, 0))
        # holder_id -> lease expiry (inf: no lease)
        self.holders: dict[Hashable, float] = {}
        # slots to retire as they come back, after the limit was lowered
        self.debt = 0
        # made by the first waiter: most bulkheads never make anyone wait
        self.changed: threading.Condition | None = None
        # threads in wait(); a release with nobody waiting need not notify
        self.waiters = 0

    def take(
        self, holder_id: Hashable, *, limit: int, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        holders = self.holders
        if self.limit == limit and holder_id not in holders:
            try:
                self.free.pop()
            except IndexError:
                pass  # full, unless a lease ran out: see below, under the lock
            else:
                # A release may have put the slot back just after the limit was
                # lowered (it read no debt); the debt is paid here instead.
                if not self.debt or not self._retire():
                    holders[holder_id] = math.inf if lease_seconds is None else now + lease_seconds
                    return True
        with self.lock:
            self._resize(limit)
            if holders:
                self.expire(now)
            while self.debt and self.free:  # pay what a lowered limit still owes
                self.free.pop()
                self.debt -= 1
            if holder_id not in holders:
                try:
                    self.free.pop()
                except IndexError:
                    return False
            elif not self.free:  # a holder asking again keeps its slot only below the limit
                return False
            holders[holder_id] = math.inf if lease_seconds is None else now + lease_seconds
            return True

    def give(self, holder_id: Hashable) -> None:
        """Give a slot back; giving back a slot not held is a no-op."""
        if self.holders.pop(holder_id, None) is None:
            return  # the pop is atomic: a slot is given back once, here or by expire
        if self.debt:
            with self.lock:
                if self.debt:
                    self.debt -= 1
                    return
        self.free.append(None)
        # Read after the append, while a waiter counts itself before it looks at
        # free: one of the two sees the other, so no wake-up is lost.
        if self.waiters:
            with self.lock:
                if self.changed is not None:
                    self.changed.notify_all()

    def wait(self, *, limit: int, timeout: float, now: float) -> bool:
        """Block up to ``timeout`` seconds until a slot may be free; always returns True."""
        with self.lock:
            self._resize(limit)
            self.expire(now)
            self.waiters += 1
            try:
                if self.free or timeout <= 0:
                    return True
                # A lease running out frees a slot without any release to notify us.
                next_expiry = min(self.holders.values(), default=now)
                if self.changed is None:
                    # On the store's lock: a release wakes only the waiters of its own bulkhead.
                    self.changed = threading.Condition(self.lock)
                self.changed.wait(min(timeout, max(next_expiry - now, 0.0)))
            finally:
                self.waiters -= 1
            return True

    def _retire(self) -> bool:
        # The caller took a free slot while a debt was owed: retire the slot
        # (True) if the debt is still owed under the lock, else keep it (False).
        with self.lock:
            if self.debt:
                self.debt -= 1
                return True
            return False

    def _resize(self, limit: int) -> None:
        # Called with the lock held. The latest caller's limit applies: raising
        # it adds free slots; lowering it retires free slots now and held ones
        # as they come back.
        grow = limit - self.limit
        if not grow:
            return
        self.limit = limit
        if grow > 0:
            repaid = min(grow, self.debt)
            self.debt -= repaid
            self.free.extend([None] * (grow - repaid))
        else:
            for _ in range(-grow):
                try:
                    self.free.pop()
                except IndexError:
                    self.debt += 1

    def expire(self, now: float) -> None:
        """Free the slots whose lease ran out; called with the lock held."""
        # list() copies the items in one step, so holders added meanwhile
        # without the lock do not upset the loop.
        for holder_id, expiry in list(self.holders.items()):
            if expiry <= now and self.holders.pop(holder_id, None) is not None:
                if self.debt:
                    self.debt -= 1
                else:
                    self.free.append(None)
