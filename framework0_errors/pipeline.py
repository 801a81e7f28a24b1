"""The resilience pipeline of one ``error_handling`` block, independent of recipes.

``fallback → retry → circuit_breaker → bulkhead → timeout → attempt``, built
once from a block and run many times. Recipe steps (:mod:`.chain`) and
Python code (:mod:`.api`) both run through it, so YAML and code mean the
same thing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Generic, TypeVar

from .attempt import NEVER, Abandon, Attempt, Tally, report_first
from .classify import Classification, Selector, parse_selector
from .config import StepErrorHandling
from .orchestrator.problems import Framework0Error
from .policies import (
    BackoffSettings,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Jitter,
    Retry,
    StepTimeoutError,
    Strategy,
    Timeout,
)
from .shared_policies import SharedPolicies
from .stores.base import Admission, BreakerStore, BulkheadStore
from .testing import Timing

# Abandon, Attempt, Tally and report_first live in .attempt; they are still
# importable from here.
__all__ = [
    "Abandon",
    "Attempt",
    "FallbackFailedError",
    "Pipeline",
    "Tally",
    "report_first",
    "slot_lease",
    "tell_breaker",
]

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


Guarded = Callable[[Attempt[T], int], T]


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
        shared: Breakers and bulkheads other pipelines built, to use instead of
            building equal ones (see
            :class:`~framework0_errors.shared_policies.SharedPolicies`).
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
        shared: SharedPolicies | None = None,
    ) -> None:
        self.name = name
        self.block = block
        self._classify = classify
        self._timing = timing
        # Read before the first attempt: retry's deadline counts from there.
        self._retry_clock: Callable[[], float] = (
            _no_clock if block.retry is None else timing.monotonic
        )
        shared = shared if shared is not None else SharedPolicies()
        self.breaker: CircuitBreaker | None = None
        if block.circuit_breaker is not None:
            self.breaker = shared.breaker(
                block.circuit_breaker,
                default_name=name,
                store=breaker_store,
                clock=timing.wall,
                on_state_change=on_breaker_change,
            )
        self.bulkhead: Bulkhead | None = None
        if block.bulkhead is not None:
            self.bulkhead = shared.bulkhead(
                block.bulkhead,
                default_name=name,
                lease_seconds=slot_lease(block),
                store=bulkhead_store,
                timing=timing,
            )
        self.timeout_seconds = block.timeout.seconds if block.timeout is not None else None
        self._timeout = Timeout(block.timeout.seconds) if block.timeout is not None else None
        # Composed once, from the policies the block has, so that a call runs
        # through no layer it does not need.
        self._limited: Guarded[T]
        if self._timeout is not None:
            self._limited = self._timed_attempt
        elif self.bulkhead is not None:
            self._limited = self._slot
        else:
            self._limited = self._plain
        self.guarded: Guarded[T]
        """``guarded(attempt, number)``: one attempt through breaker, bulkhead and
        timeout, without retry or fallback (see :meth:`recover`)."""
        if self.breaker is None:
            self.guarded = self._limited
        elif self._timeout is None and self.bulkhead is not None:
            self.guarded = self._guarded_slot
        else:
            self.guarded = self._guarded

    @functools.cached_property
    def retry(self) -> Retry | None:
        """The block's retry policy; built when first needed (after a failed attempt)."""
        cfg = self.block.retry
        if cfg is None:
            return None
        return Retry(
            max_attempts=cfg.max_attempts,
            backoff=_backoff(
                cfg.backoff_strategy,
                cfg.initial_delay,
                cfg.multiplier,
                cfg.max_delay,
                cfg.jitter,
            ),
            should_retry=self.should_retry,
            deadline=cfg.deadline,
            clock=self._timing.monotonic,
            sleep=self._timing.sleep,
        )

    # The selectors are needed only once an attempt fails: most steps never get
    # that far, so they are parsed then, not with the pipeline.
    @functools.cached_property
    def _retry_selectors(self) -> tuple[tuple[Selector, ...] | None, tuple[Selector, ...]]:
        cfg = self.block.retry
        if cfg is None:
            return None, ()
        return _selectors(cfg.retry_on), _selectors(cfg.give_up_on) or ()

    @functools.cached_property
    def _fallback_on(self) -> tuple[Selector, ...] | None:
        fallback = self.block.fallback
        return _selectors(fallback.on) if fallback is not None else None

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
        started = self._retry_clock()
        if tally is not None:
            tally.attempts = 1
        try:
            # The first attempt needs nothing from retry: it is made here, and
            # retrying starts only if it fails.
            value = self.guarded(attempt, 1)
        except Exception as exc:
            first = exc if on_error is None else report_first(exc, on_error)
        else:
            if tally is not None:
                tally.outcome = "succeeded"
            return value
        # Outside the except block, so later errors are not chained to the first.
        return self.recover(
            first, attempt, started=started, fallback=fallback, on_error=on_error, tally=tally
        )

    def recover(
        self,
        first: Exception,
        attempt: Attempt[T],
        *,
        started: float,
        fallback: Callable[[BaseException], T] | None = None,
        on_error: Callable[[BaseException, int], None] | None = None,
        tally: Tally | None = None,
        name: str | None = None,
    ) -> T:
        """Go on after the first attempt, made with :meth:`guarded`, failed with ``first``.

        What :meth:`run` does after a failed first attempt, for callers that
        make the first attempt themselves to keep their success path short.
        ``first`` has been told to ``on_error`` already, with
        :func:`report_first`; ``on_error`` hears of later attempts here.
        ``started`` is when that attempt began, on the pipeline's monotonic
        clock (``retry.deadline`` counts from it). Call it outside the
        ``except`` block, so that later errors are not chained to the first.
        ``name`` is what a :class:`FallbackFailedError` calls the failed call
        (by default, the pipeline's name). Raises as :meth:`run` does.
        """
        count = tally if tally is not None else Tally()
        count.attempts = 1
        guarded = self.guarded

        def again() -> T:
            count.attempts += 1
            number = count.attempts
            try:
                return guarded(attempt, number)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc, number)
                raise

        try:
            retry = self.retry
            if retry is None:
                raise first
            value = retry.resume(again, start=started, error=first)
        except Exception as exc:
            count.error = exc
            if fallback is None or not self.fallback_applies(exc):
                count.outcome = "failed"
                raise
            try:
                value = fallback(exc)
            except Exception as failed:
                count.outcome = "failed"
                raise FallbackFailedError(name or self.name, exc, failed) from failed
            count.outcome = "fallback"
            return value
        count.outcome = "recovered"
        return value

    def _guarded(self, attempt: Attempt[T], number: int) -> T:
        # The breaker judges whatever happens inside it: bulkhead, timeout, attempt.
        breaker = self.breaker
        assert breaker is not None
        admission = breaker.acquire_permission()
        try:
            value = self._limited(attempt, number)
        except BaseException as exc:
            tell_breaker(breaker, exc, admission)
            raise
        breaker.on_success(admission)
        return value

    def _guarded_slot(self, attempt: Attempt[T], number: int) -> T:
        # _guarded around _slot, in one frame: the most common block on its success path.
        breaker, bulkhead = self.breaker, self.bulkhead
        assert breaker is not None
        assert bulkhead is not None
        # A closed breaker kept in this process admits the call and takes its
        # success as it is, with no call (see CircuitBreaker.cell).
        cell = breaker.cell
        if cell is not None and cell.state == "closed":
            admission = cell.admission
        else:
            admission = breaker.acquire_permission()
        try:
            holder = bulkhead.acquire()
            slots = bulkhead.slots  # known once acquire has run
            try:
                value = attempt(number, NEVER)
            finally:
                if slots is not None:
                    slots.give(holder)
                else:
                    bulkhead.release(holder)
        except BaseException as exc:
            tell_breaker(breaker, exc, admission)
            raise
        if cell is None or cell.failures or cell.state != "closed":
            breaker.on_success(admission)
        return value

    def _slot(self, attempt: Attempt[T], number: int) -> T:
        bulkhead = self.bulkhead
        assert bulkhead is not None
        holder = bulkhead.acquire()
        try:
            return attempt(number, NEVER)
        finally:
            bulkhead.release(holder)

    @staticmethod
    def _plain(attempt: Attempt[T], number: int) -> T:
        return attempt(number, NEVER)

    def _timed_attempt(self, attempt: Attempt[T], number: int) -> T:
        assert self._timeout is not None
        return self._timed(attempt, number, self._timeout)

    def _timed(self, attempt: Attempt[T], number: int, timeout: Timeout) -> T:
        abandon = Abandon()

        def abandoned() -> None:
            abandon.set(f"attempt {number} of '{self.name}' timed out after {timeout.seconds:g}s")

        bulkhead = self.bulkhead
        if bulkhead is None:
            return timeout.call(lambda: attempt(number, abandon), on_abandon=abandoned)
        # The slot is given back by the thread running the attempt, when the
        # attempt really ends: an abandoned attempt still holds it, so the
        # limit counts what actually runs. Whoever pops the ticket first, the
        # attempt (to start) or this thread (on timeout), owns the slot: list.pop
        # is atomic, so no lock is needed.
        holder = bulkhead.acquire()
        ticket = [holder]

        def held() -> T:
            try:
                ticket.pop()
            except IndexError:  # abandoned before it started
                raise StepTimeoutError(timeout.seconds) from None
            try:
                return attempt(number, abandon)
            finally:
                bulkhead.release(holder)

        try:
            return timeout.call(held, on_abandon=abandoned)
        except BaseException:
            try:
                ticket.pop()
            except IndexError:
                pass  # the attempt started: it gives the slot back when it ends
            else:
                bulkhead.release(holder)
            raise

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether ``exc`` is worth another attempt under ``retry_on``/``give_up_on``."""
        if isinstance(exc, CircuitOpenError):
            return False  # an open breaker ends retrying at once
        retry_on, give_up_on = self._retry_selectors
        classification = self._classify(exc)
        if any(s.matches(exc, classification) for s in give_up_on):
            return False
        if retry_on is None:
            return classification.transient
        return any(s.matches(exc, classification) for s in retry_on)

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
    attempt timeout plus a minute, or an hour for attempts without a timeout,
    and never more than :data:`LONGEST_LEASE` (a lease must be finite).
    """
    if block.timeout is None:
        return 3600.0
    return min(3 * block.timeout.seconds + 60.0, LONGEST_LEASE)


LONGEST_LEASE = 1e9
"""The longest slot lease, in seconds (about 32 years): for timeouts beyond any real wait."""


def tell_breaker(breaker: CircuitBreaker, exc: BaseException, admission: Admission) -> None:
    """Tell ``breaker`` that the call it admitted with ``admission`` ended in ``exc``.

    A call that a full bulkhead refused was never made: it says nothing of the
    service, so the breaker hears that it was not called.
    """
    if isinstance(exc, BulkheadFullError):
        breaker.on_not_called(admission)
    else:
        breaker.on_error(exc, admission)


def _no_clock() -> float:
    return 0.0


@functools.lru_cache(maxsize=256)
def _backoff(
    strategy: Strategy, initial_delay: float, multiplier: float, max_delay: float, jitter: Jitter
) -> BackoffSettings:
    # Frozen and validated once: the steps of a run mostly share their backoff.
    return BackoffSettings(
        strategy=strategy,
        initial_delay=initial_delay,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter=jitter,
    )


def _selectors(texts: list[str] | None) -> tuple[Selector, ...] | None:
    if texts is None:
        return None
    return tuple([parse_selector(t) for t in texts]) if texts else ()
