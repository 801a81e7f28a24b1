"""The resilience pipeline of one ``error_handling`` block, independent of recipes.

``fallback → retry → circuit_breaker → bulkhead → timeout → attempt``, built
once from a block and run many times. Recipe steps (:mod:`.chain`) and
Python code (:mod:`.api`) both run through it, so YAML and code mean the
same thing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .classify import Classification, Selector, parse_selector
from .config import StepErrorHandling
from .orchestrator.problems import Framework0Error
from .policies import (
    BackoffSettings,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Retry,
    StepTimeoutError,
    Timeout,
)
from .stores.base import BreakerStore, BulkheadStore
from .testing import Timing

__all__ = ["Abandon", "FallbackFailedError", "Pipeline", "Tally", "slot_lease"]

T = TypeVar("T")


class FallbackFailedError(Framework0Error):
    """The call failed, and so did its fallback; both errors are chained."""

    __module__ = "framework0_errors"

    def __init__(self, name: str, original: BaseException, fallback: BaseException) -> None:
        self.name = name
        self.original = original
        self.fallback = fallback
        super().__init__(
            f"'{name}' failed ({type(original).__name__}: {original}) and its fallback "
            f"failed too ({type(fallback).__name__}: {fallback})"
        )


class Abandon:
    """Tells an attempt that its caller stopped waiting for it (its timeout expired).

    Callbacks added before or after :meth:`set` run exactly once, with the reason.
    """

    __slots__ = ("_callbacks", "_lock", "reason")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []
        self.reason: str | None = None

    def add(self, callback: Callable[[str], None]) -> None:
        """Run ``callback(reason)`` when the attempt is abandoned (now, if it already was)."""
        with self._lock:
            reason = self.reason
            if reason is None:
                self._callbacks.append(callback)
                return
        callback(reason)

    def set(self, reason: str) -> None:
        """Abandon the attempt."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(reason)


@dataclass(slots=True)
class Tally:
    """How one run of the pipeline went: attempts made, last error, outcome.

    ``outcome`` is ``succeeded``, ``recovered`` (after retries), ``fallback``
    or ``failed``.
    """

    attempts: int = 0
    error: BaseException | None = None
    outcome: str = ""


Attempt = Callable[[int, Abandon], T]


class Pipeline(Generic[T]):
    """The policies of one block, composed in the fixed order.

    Args:
        block: The effective ``error_handling`` block.
        name: Default name of the breaker and the bulkhead (the step's name).
        breaker_store: Where breaker state lives (shared by name).
        bulkhead_store: Where bulkhead slots live (shared by name).
        timing: Clocks and sleep.
        classify: The classifier, for ``retry_on``, ``give_up_on`` and ``fallback.on``.
        on_breaker_change: Told ``(name, old, new)`` after each breaker transition.
    """

    def __init__(
        self,
        block: StepErrorHandling,
        *,
        name: str,
        breaker_store: BreakerStore,
        bulkhead_store: BulkheadStore,
        timing: Timing,
        classify: Callable[[BaseException], Classification],
        on_breaker_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.block = block
        self._classify = classify
        self.retry: Retry | None = None
        self._retry_on: tuple[Selector, ...] | None = None
        self._give_up_on: tuple[Selector, ...] = ()
        if block.retry is not None:
            cfg = block.retry
            self._retry_on = _selectors(cfg.retry_on)
            self._give_up_on = _selectors(cfg.give_up_on) or ()
            self.retry = Retry(
                max_attempts=cfg.max_attempts,
                backoff=BackoffSettings(
                    strategy=cfg.backoff_strategy,
                    initial_delay=cfg.initial_delay,
                    multiplier=cfg.multiplier,
                    max_delay=cfg.max_delay,
                    jitter=cfg.jitter,
                ),
                should_retry=self.should_retry,
                deadline=cfg.deadline,
                clock=timing.monotonic,
                sleep=timing.sleep,
            )
        self.breaker: CircuitBreaker | None = None
        if block.circuit_breaker is not None:
            cb = block.circuit_breaker
            self.breaker = CircuitBreaker(
                cb.name or name,
                failure_threshold=cb.failure_threshold,
                recovery_timeout=cb.recovery_timeout,
                half_open_max_calls=cb.half_open_max_calls,
                store=breaker_store,
                clock=timing.wall,
                counts_as_failure=_counts_for_breaker,
                on_state_change=on_breaker_change,
            )
        self.bulkhead: Bulkhead | None = None
        if block.bulkhead is not None:
            bh = block.bulkhead
            self.bulkhead = Bulkhead(
                bh.name or name,
                max_concurrent=bh.max_concurrent,
                max_wait=bh.max_wait,
                store=bulkhead_store,
                clock=timing.wall,
                sleep=timing.sleep,
                lease_seconds=slot_lease(block),
            )
        self.timeout_seconds = block.timeout.seconds if block.timeout is not None else None
        self._fallback_on = _selectors(block.fallback.on) if block.fallback is not None else None

    def run(
        self,
        attempt: Attempt[T],
        *,
        fallback: Callable[[BaseException], T] | None = None,
        on_error: Callable[[BaseException, int], None] | None = None,
        tally: Tally | None = None,
    ) -> T:
        """Run ``attempt(number, abandon)`` through the pipeline and return its value.

        ``on_error(exc, number)`` is told about every failed attempt (including
        ones refused by the breaker or the bulkhead). ``fallback(exc)`` runs when
        everything inside it failed with an error ``fallback.on`` selects.

        Raises:
            Exception: the last attempt's error, unchanged, when there is no
                fallback for it; :class:`FallbackFailedError` when the fallback
                failed too.
        """
        count = tally if tally is not None else Tally()
        guarded = self._guarded

        def once() -> T:
            count.attempts += 1
            number = count.attempts
            try:
                return guarded(attempt, number)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc, number)
                raise

        try:
            value = self.retry.call(once) if self.retry is not None else once()
        except Exception as exc:
            count.error = exc
            if fallback is None or not self.fallback_applies(exc):
                count.outcome = "failed"
                raise
            try:
                value = fallback(exc)
            except Exception as failed:
                count.outcome = "failed"
                raise FallbackFailedError(self.name, exc, failed) from failed
            count.outcome = "fallback"
            return value
        count.outcome = "recovered" if count.attempts > 1 else "succeeded"
        return value

    def _guarded(self, attempt: Attempt[T], number: int) -> T:
        if self.timeout_seconds is None and self.bulkhead is None and self.breaker is None:
            return attempt(number, _NEVER)
        call: Callable[[], T]
        if self.timeout_seconds is not None:
            call = self._timed(attempt, number, self.timeout_seconds)
        elif self.bulkhead is not None:
            bulkhead = self.bulkhead

            def call() -> T:
                return bulkhead.call(lambda: attempt(number, _NEVER))

        else:

            def call() -> T:
                return attempt(number, _NEVER)

        return self.breaker.call(call) if self.breaker is not None else call()

    def _timed(self, attempt: Attempt[T], number: int, seconds: float) -> Callable[[], T]:
        abandon = Abandon()
        reason = f"attempt {number} of '{self.name}' timed out after {seconds:g}s"
        timeout = Timeout(seconds, on_abandon=lambda: abandon.set(reason))
        bulkhead = self.bulkhead
        if bulkhead is None:
            return lambda: timeout.call(lambda: attempt(number, abandon))

        def timed() -> T:
            # The slot is given back by the thread running the attempt, when the
            # attempt really ends: an abandoned attempt still holds it, so the
            # limit counts what actually runs.
            holder = bulkhead.acquire()
            gate = threading.Lock()
            state = ["pending"]

            def held() -> T:
                with gate:
                    if state[0] == "cancelled":  # abandoned before it started
                        raise StepTimeoutError(seconds)
                    state[0] = "running"
                try:
                    return attempt(number, abandon)
                finally:
                    bulkhead.release(holder)

            try:
                return timeout.call(held)
            except BaseException:
                with gate:
                    never_ran = state[0] == "pending"
                    state[0] = "cancelled"
                if never_ran:
                    bulkhead.release(holder)
                raise

        return timed

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether ``exc`` is worth another attempt under ``retry_on``/``give_up_on``."""
        if isinstance(exc, CircuitOpenError):
            return False  # an open breaker ends retrying at once
        classification = self._classify(exc)
        if any(s.matches(exc, classification) for s in self._give_up_on):
            return False
        if self._retry_on is None:
            return classification.transient
        return any(s.matches(exc, classification) for s in self._retry_on)

    def fallback_applies(self, exc: BaseException) -> bool:
        """Whether ``exc`` is one that ``fallback.on`` selects (any, when unset)."""
        if self._fallback_on is None:
            return True
        classification = self._classify(exc)
        return any(s.matches(exc, classification) for s in self._fallback_on)


def slot_lease(block: StepErrorHandling) -> float:
    """Seconds a bulkhead slot stays held if its holder never gives it back.

    A process killed while holding a slot cannot release it; the lease lets
    others reclaim it. It must outlast any live attempt: three times the
    attempt timeout plus a minute, or an hour for attempts without a timeout.
    """
    if block.timeout is None:
        return 3600.0
    return 3 * block.timeout.seconds + 60.0


class _Never(Abandon):
    """The abandon signal of an attempt without a timeout: it is never set."""

    __slots__ = ()

    def add(self, callback: Callable[[str], None]) -> None:
        """Nothing to wait for."""


_NEVER = _Never()


def _selectors(texts: list[str] | None) -> tuple[Selector, ...] | None:
    if texts is None:
        return None
    return tuple(parse_selector(t) for t in texts)


def _counts_for_breaker(exc: BaseException) -> bool:
    # A full bulkhead says nothing about the health of the service behind the breaker.
    return isinstance(exc, Exception) and not isinstance(exc, BulkheadFullError)
