"""Bulkhead: a named limit on how many executions run at the same time.

Every bulkhead with the same name and store shares one pool of ``max_concurrent`` slots.
A caller waits up to ``max_wait`` seconds for a slot, then gets
:class:`BulkheadFullError`. A slot is given back whatever way the call ends, including
``KeyboardInterrupt`` and timeouts.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from typing import TypeVar

from framework0_errors.policies.exceptions import BulkheadFullError
from framework0_errors.stores.base import BulkheadStore, LocalBulkhead

__all__ = ["Bulkhead", "next_holder_id"]

T = TypeVar("T")


_holder_numbers = itertools.count()

next_holder_id: Callable[[], int] = functools.partial(next, _holder_numbers)
"""Return a holder id unique in this process, for slots taken on a store's local bulkhead.

The ids :meth:`Bulkhead.acquire` gives such slots, for a caller that takes
them directly (see :class:`~framework0_errors.stores.base.LocalBulkhead`).
"""
_holder_prefix = ""


def _new_holder_prefix() -> None:
    global _holder_prefix  # noqa: PLW0603 - per-process identity, renewed after fork
    _holder_prefix = f"{os.getpid()}-{uuid.uuid4().hex[:12]}-"


_new_holder_prefix()
os.register_at_fork(after_in_child=_new_holder_prefix)


class Bulkhead:
    """Run calls only while a slot of the named bulkhead is free.

    Args:
        name: Bulkheads with the same name and store share their slots.
        max_concurrent: Slots; executions allowed at the same time.
        max_wait: Seconds to wait for a slot before giving up (0: do not wait).
        store: Where the slots live.
        clock: Seconds; wall-clock time by default because leases may be compared
            by other processes sharing the store.
        sleep: Used between polls when the store cannot block until a release.
        lease_seconds: How long a slot stays held if its holder never gives it back
            (its process died); None: until released. Durable stores need a lease.
        poll_interval: Longest pause between polls of a store that cannot block.
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_wait: float = 0.0,
        store: BulkheadStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease_seconds: float | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"bulkhead name must be a non-empty string; got {name!r}")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ValueError(f"max_concurrent must be an integer; got {max_concurrent!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1; got {max_concurrent}")
        # Checked inline first, as the chained comparisons _check_seconds makes
        # (NaN fails them too): a run may build a bulkhead per step.
        if not 0.0 <= max_wait < math.inf:
            _check_seconds("max_wait", max_wait, allow_zero=True)
        if lease_seconds is not None and not 0.0 < lease_seconds < math.inf:
            _check_seconds("lease_seconds", lease_seconds, allow_zero=False)
        if not 0.0 < poll_interval < math.inf:
            _check_seconds("poll_interval", poll_interval, allow_zero=False)
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self.store = store
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep
        # A store in this process hands out its slots directly, with plain
        # numbers as holder ids; they are asked for at the first acquire, so
        # that a bulkhead never used leaves no trace in the store. (Looked up
        # then too: a bound method kept per bulkhead is one more object.)
        self._local = getattr(store, "local_bulkhead", None) is not None
        self.slots: LocalBulkhead | None = None
        """This bulkhead's slots, once :meth:`acquire` found that the store keeps them in
        this process; else None. A caller may give back a holder id of that
        process with ``slots.give(holder_id)`` instead of :meth:`release`."""

    def call(self, fn: Callable[[], T]) -> T:
        """Return ``fn()`` run while holding a slot; re-raise whatever it raises.

        Raises:
            BulkheadFullError: No slot came free within ``max_wait``; ``fn`` was not called.
        """
        holder_id = self.acquire()
        try:
            return fn()
        finally:
            self.release(holder_id)

    def acquire(self) -> Hashable:
        """Take a slot (waiting up to ``max_wait``) and return its holder id.

        For callers whose work outlives the call that started it (an attempt
        abandoned after its timeout keeps running): they must give the slot
        back with :meth:`release` when that work really ends.

        Raises:
            BulkheadFullError: No slot came free within ``max_wait``.
        """
        local = self.slots
        if local is None and self._local:
            local_of: Callable[..., LocalBulkhead] = self.store.local_bulkhead  # type: ignore[attr-defined]
            local = self.slots = local_of(self.name, limit=self.max_concurrent)
        if local is not None:
            holder_id: Hashable = next_holder_id()  # the slots live in this process only
            now = self._clock()
            if local.take(
                holder_id, limit=self.max_concurrent, lease_seconds=self.lease_seconds, now=now
            ):
                return holder_id
        else:
            # Unique across threads, processes and machines sharing a durable store;
            # a counter after a per-process random prefix is far cheaper than a uuid.
            holder_id = _holder_prefix + str(next(_holder_numbers))
            now = self._clock()
            if self._try(holder_id, now):
                return holder_id
        self._wait(holder_id, now)
        return holder_id

    def release(self, holder_id: Hashable) -> None:
        """Give back the slot :meth:`acquire` returned ``holder_id`` for."""
        local = self.slots
        if local is not None:
            local.give(holder_id)
        else:
            assert isinstance(holder_id, str)
            self.store.release(self.name, holder_id=holder_id)

    def _try(self, holder_id: Hashable, now: float) -> bool:
        local = self.slots
        if local is not None:
            return local.take(
                holder_id, limit=self.max_concurrent, lease_seconds=self.lease_seconds, now=now
            )
        assert isinstance(holder_id, str)
        return self.store.try_acquire(
            self.name,
            limit=self.max_concurrent,
            holder_id=holder_id,
            lease_seconds=self.lease_seconds,
            now=now,
        )

    def in_use(self) -> int:
        """Return how many slots are held now, by every user of this name and store."""
        return self.store.in_use(self.name, now=self._clock())

    def _wait(self, holder_id: Hashable, start: float) -> None:
        # The first try failed: wait for a release (or poll) until max_wait runs out.
        deadline = start + self.max_wait
        now = start
        while True:
            remaining = deadline - now
            if remaining <= 0:
                raise BulkheadFullError(
                    self.name, max_concurrent=self.max_concurrent, waited=now - start
                )
            # A wait beyond TIMEOUT_MAX (about 292 years) overflows the clock of
            # the platform; waiting that long again after it is as good.
            wait = min(remaining, threading.TIMEOUT_MAX)
            if not self.store.wait_for_slot(
                self.name, limit=self.max_concurrent, timeout=wait, now=now
            ):
                self._sleep(min(self.poll_interval, remaining))
            now = self._clock()
            if self._try(holder_id, now):
                return


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> None:
    # One chained comparison: NaN fails it too.
    if not (0.0 <= value < math.inf if allow_zero else 0.0 < value < math.inf):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}; got {value!r}")
