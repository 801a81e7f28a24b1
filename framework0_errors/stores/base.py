"""Where circuit-breaker and bulkhead state lives, as atomic operations on a store.

Policies never read a state object, change it and write it back: each state change is
one store method, so a durable store (SQLite, Redis) can make it one transaction and
keep processes that share a breaker or bulkhead name consistent. Times are passed in
as ``now`` by the policy's clock; stores shared between processes need the wall clock.

Breaker state of one name: ``closed`` (counting consecutive failures), ``open`` (calls
refused until ``half_open_at``), ``half_open`` (a few trial calls admitted; the first
verdict decides). An open breaker turns half-open lazily, at the first call after
``half_open_at``. Every change of state bumps an *epoch*, so the verdict of a trial
admitted in an earlier half-open period cannot close or reopen the breaker.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

__all__ = [
    "Admission",
    "BreakerCell",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
    "BulkheadStore",
    "LocalBulkhead",
    "Transition",
]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state; policies pass it to their ``on_state_change`` callback."""

    name: str
    old: BreakerState
    new: BreakerState


@dataclass(frozen=True, slots=True)
class Admission:
    """The store's answer to "may this call go ahead?".

    Attributes:
        allowed: False: do not call; raise ``CircuitOpenError``.
        state: The breaker's state when it answered.
        trial: The call is a half-open trial; its verdict closes or reopens the breaker.
        epoch: Hand back with the verdict so stale trials are ignored.
        retry_at: When refused: when the breaker half-opens (``inf``: held open until
            reset; ``now``: half-open with every trial slot taken). None when allowed.
        transition: The state change this admission made (open → half_open), if any.
    """

    allowed: bool
    state: BreakerState
    trial: bool = False
    epoch: int = 0
    retry_at: float | None = None
    transition: Transition | None = None


class BreakerSnapshot(NamedTuple):
    """A breaker's state at one moment, for reports, the Context and the CLI.

    A named tuple: a run ends by taking one of every breaker it used, and
    tuples build fastest.

    Attributes:
        name: The breaker's name.
        state: ``closed``, ``open`` or ``half_open`` (an open breaker whose
            ``half_open_at`` has passed reads as ``half_open``).
        consecutive_failures: Failures since the last success or reset.
        opened_at: When it last opened; None when closed.
        half_open_at: When it admits (or admitted) a trial; None when closed or when
            held open until reset.
        trial_calls: Trial calls in flight while half-open.
    """

    name: str
    state: BreakerState
    consecutive_failures: int
    opened_at: float | None
    half_open_at: float | None
    trial_calls: int = 0


class BreakerStore(Protocol):
    """Atomic circuit-breaker operations keyed by breaker name.

    A name never seen is closed with no failures. ``record_success`` on a closed breaker
    with no failures must not write anything: it runs after every successful call.
    """

    def before_call(self, name: str, *, now: float, half_open_max_calls: int) -> Admission:
        """Admit or refuse one call, turning open into half_open once its time has come."""
        ...

    def record_success(self, name: str, *, now: float, admission: Admission) -> Transition | None:
        """Record that an admitted call succeeded; a current trial closes the breaker."""
        ...

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
        ...

    def release_trial(self, name: str, *, admission: Admission) -> None:
        """Free a trial slot without a verdict (the call was interrupted)."""
        ...

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        """Return the breaker's current state without changing it."""
        ...

    def reset(self, name: str, *, now: float) -> Transition | None:
        """Close the breaker and forget its failures."""
        ...

    def force_open(self, name: str, *, now: float, until: float | None = None) -> Transition | None:
        """Open the breaker by hand, until ``until`` (None: until :meth:`reset`)."""
        ...

    def breaker_names(self) -> list[str]:
        """Return the names of breakers with recorded state, sorted."""
        ...


class BulkheadStore(Protocol):
    """Atomic bulkhead slot operations keyed by bulkhead name.

    A slot is held by a ``holder_id`` unique to one execution. A lease lets a durable
    store reclaim slots of a process that died while holding them.
    """

    def try_acquire(
        self, name: str, *, limit: int, holder_id: str, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        ...

    def release(self, name: str, *, holder_id: str) -> None:
        """Give a slot back; releasing a slot not held is a no-op."""
        ...

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        """Block up to ``timeout`` seconds until a slot may be free.

        Returns True if the store waited (a slot may now be free, or time ran out;
        either way the caller tries again), or False at once if it cannot wait
        efficiently: the caller then polls with its own ``sleep``.
        """
        ...

    def in_use(self, name: str, *, now: float) -> int:
        """Return how many unexpired slots of ``name`` are held."""
        ...

    def bulkhead_names(self) -> list[str]:
        """Return the names of bulkheads with recorded state, sorted."""
        ...


class BreakerCell(Protocol):
    """The live state of one breaker kept in this process, read without a lock.

    Stores that hold breaker state in memory offer ``breaker_cell(name)``.
    While ``state`` is ``closed``, a policy may admit a call with
    ``admission`` and, when ``failures`` is 0, record its success as nothing,
    without calling the store: what the store's own methods would do. Every
    other case goes through the store's methods.
    """

    @property
    def state(self) -> BreakerState:
        """The breaker's state as last changed (open is not yet turned half-open)."""
        ...

    @property
    def failures(self) -> int:
        """Consecutive failures while closed."""
        ...

    @property
    def admission(self) -> Admission:
        """What ``before_call`` answers while the breaker stays closed."""
        ...


class LocalBulkhead(Protocol):
    """The slots of one bulkhead kept in this process, used directly by a policy.

    Stores that hold bulkhead state in memory offer
    ``local_bulkhead(name, limit=...)``: the same operations as
    :class:`BulkheadStore` without the lookup by name, and with any hashable
    holder id unique in this process. Every call for one name returns the
    same object, so a policy may keep it.
    """

    def take(
        self, holder_id: Hashable, *, limit: int, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        ...

    def give(self, holder_id: Hashable) -> None:
        """Give a slot back; giving back a slot not held is a no-op."""
        ...

    def wait(self, *, limit: int, timeout: float, now: float) -> bool:
        """Block up to ``timeout`` seconds until a slot may be free (see ``wait_for_slot``)."""
        ...
