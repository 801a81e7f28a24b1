"""Circuit breaker: stop calling a dependency that keeps failing, then test it again.

``closed`` → ``open`` after ``failure_threshold`` consecutive failures; while open the
function is not called and :class:`CircuitOpenError` says when the breaker half-opens;
after ``recovery_timeout`` it admits up to ``half_open_max_calls`` concurrent trial calls
(others are refused); the first trial to succeed closes it, a failed trial opens it again
for a fresh ``recovery_timeout``. A success while closed resets the failure count.

The state belongs to the store, keyed by name: breakers with the same name and store
behave as one, across steps and (with a durable store) across runs and processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from framework0_errors.policies.exceptions import CircuitOpenError
from framework0_errors.stores.base import (
    Admission,
    BreakerCell,
    BreakerSnapshot,
    BreakerStore,
    Transition,
)

__all__ = ["CircuitBreaker"]

T = TypeVar("T")


def _any_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


class CircuitBreaker:
    """Guard calls with a named circuit breaker whose state lives in ``store``.

    Holds no mutable state of its own, so it is thread-safe whenever the store is.

    Args:
        name: Breakers with the same name and store share one state.
        failure_threshold: Consecutive failures that open the breaker.
        recovery_timeout: Seconds open before trial calls are admitted.
        half_open_max_calls: Trial calls admitted at the same time while half-open.
        store: Where the state lives.
        clock: Seconds; defaults to wall-clock time because the state may be shared
            with other processes, where a monotonic clock means nothing.
        counts_as_failure: Which exceptions count against the dependency. Others are
            re-raised and count as a success (the dependency did answer), except
            bare ``BaseException`` such as ``KeyboardInterrupt``, which counts as
            neither. Default: every :class:`Exception`.
        on_state_change: Called with ``(name, old_state, new_state)`` after each
            change this object makes; exceptions it raises propagate.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        half_open_max_calls: int = 1,
        store: BreakerStore,
        clock: Callable[[], float] = time.time,
        counts_as_failure: Callable[[BaseException], bool] = _any_exception,
        on_state_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"circuit breaker name must be a non-empty string; got {name!r}")
        # Plain ints pass without a call: a run may build a breaker per step.
        if type(failure_threshold) is not int or failure_threshold < 1:
            _check_count("failure_threshold", failure_threshold)
        if type(half_open_max_calls) is not int or half_open_max_calls < 1:
            _check_count("half_open_max_calls", half_open_max_calls)
        if not 0 < recovery_timeout < math.inf:
            raise ValueError(
                f"recovery_timeout must be a finite number of seconds > 0; got {recovery_timeout!r}"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.half_open_max_calls = half_open_max_calls
        self.store = store
        self._clock = clock
        self._counts_as_failure = counts_as_failure
        self._on_state_change = on_state_change
        # A store in this process lets the success path read the state directly.
        cell_of = getattr(store, "breaker_cell", None)
        self.cell: BreakerCell | None = cell_of(name) if cell_of is not None else None
        """The live state of this breaker, when the store keeps it in this process; else None.

        A caller that guards many calls may admit one itself while ``cell.state`` is
        ``closed`` (with ``cell.admission``), and skip :meth:`on_success` after it
        while ``cell.failures`` is also 0: what :meth:`acquire_permission` and
        :meth:`on_success` would do, without the calls."""

    def call(self, fn: Callable[[], T]) -> T:
        """Return ``fn()`` if the breaker admits the call; re-raise whatever it raises.

        Raises:
            CircuitOpenError: The breaker is open, or half-open with every trial slot
                taken; ``fn`` was not called.
        """
        admission = self.acquire_permission()
        try:
            value = fn()
        except BaseException as exc:
            self.on_error(exc, admission)
            raise
        self.on_success(admission)
        return value

    def acquire_permission(self) -> Admission:
        """Ask to make one call; hand the admission back to :meth:`on_success` or :meth:`on_error`.

        For callers that cannot wrap the call in :meth:`call` (resilience4j's
        ``acquirePermission``): exactly one verdict must follow every admission,
        or a half-open trial slot stays taken.

        Raises:
            CircuitOpenError: The breaker is open, or half-open with every trial slot
                taken.
        """
        cell = self.cell
        if cell is not None and cell.state == "closed":
            return cell.admission
        now = self._clock()
        admission = self.store.before_call(
            self.name, now=now, half_open_max_calls=self.half_open_max_calls
        )
        if admission.transition is not None:
            try:
                self._notify(admission.transition)
            except BaseException:
                # The call will not be made: free the trial slot it was given.
                if admission.trial:
                    self.store.release_trial(self.name, admission=admission)
                raise
        if not admission.allowed:
            retry_at = now if admission.retry_at is None else admission.retry_at
            raise CircuitOpenError(
                self.name,
                retry_at=retry_at,
                retry_in=max(retry_at - now, 0.0),
                state=admission.state,
            )
        return admission

    def on_success(self, admission: Admission) -> None:
        """Record that the admitted call succeeded."""
        cell = self.cell
        if cell is not None and cell.state == "closed" and not cell.failures:
            return  # what the store would do: nothing
        transition = self.store.record_success(self.name, now=self._clock(), admission=admission)
        if transition is not None:
            self._notify(transition)

    def on_not_called(self, admission: Admission) -> None:
        """Record that the admitted call was not made after all: no verdict either way.

        For a call refused further in (a full bulkhead): a half-open trial
        slot it held is freed for another trial, and the breaker stays as it is.
        """
        self.store.release_trial(self.name, admission=admission)

    def on_error(self, exc: BaseException, admission: Admission) -> None:
        """Record that the admitted call raised ``exc`` (which may not count as a failure)."""
        now = self._clock()
        if self._counts_as_failure(exc):
            transition = self.store.record_failure(
                self.name,
                now=now,
                admission=admission,
                failure_threshold=self.failure_threshold,
                recovery_timeout=self.recovery_timeout,
            )
        elif isinstance(exc, Exception):
            transition = self.store.record_success(self.name, now=now, admission=admission)
        else:
            self.store.release_trial(self.name, admission=admission)
            return
        self._notify(transition)

    def snapshot(self) -> BreakerSnapshot:
        """Return the breaker's current state."""
        return self.store.snapshot(self.name, now=self._clock())

    def reset(self) -> None:
        """Close the breaker and forget its failures."""
        self._notify(self.store.reset(self.name, now=self._clock()))

    def force_open(self, *, duration: float | None = None) -> None:
        """Open the breaker by hand for ``duration`` seconds (None: until :meth:`reset`)."""
        if duration is not None and (not math.isfinite(duration) or duration < 0):
            raise ValueError(f"duration must be a finite number of seconds >= 0; got {duration!r}")
        now = self._clock()
        until = None if duration is None else now + duration
        self._notify(self.store.force_open(self.name, now=now, until=until))

    def _notify(self, transition: Transition | None) -> None:
        if transition is not None and self._on_state_change is not None:
            self._on_state_change(transition.name, transition.old, transition.new)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
