"""Retry: call a function again after it fails, with backoff and an overall deadline.

When retrying is over, the exception of the last attempt propagates unchanged: the same
object, its traceback intact, no wrapper (stamina's rule, not tenacity's ``RetryError``).
How many attempts were made, and why retrying stopped, are told to the
``on_attempt_failed`` callback and, on success, returned by :meth:`Retry.call_with_stats`.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from framework0_errors.policies.backoff import BackoffSettings

__all__ = ["GiveUpReason", "Retry", "RetryEvent", "RetryStats"]

T = TypeVar("T")

GiveUpReason = Literal["not_retryable", "attempts_exhausted", "deadline"]


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One failed attempt, and what the retry policy does about it.

    Attributes:
        exception: What the attempt raised.
        attempt: 1-based number of the attempt that failed.
        max_attempts: The policy's limit, for messages like "attempt 2 of 3".
        will_retry: True if another attempt follows after ``delay`` seconds.
        delay: Seconds to wait before the next attempt; None when giving up.
        elapsed: Seconds since the first attempt started, by the policy's clock.
        give_up_reason: Why retrying stops; None when ``will_retry``.
    """

    exception: BaseException
    attempt: int
    max_attempts: int
    will_retry: bool
    delay: float | None
    elapsed: float
    give_up_reason: GiveUpReason | None


@dataclass(frozen=True, slots=True)
class RetryStats:
    """How a successful call went: ``attempts == 1`` means it needed no retry."""

    attempts: int
    waited: float
    elapsed: float

    @property
    def recovered(self) -> bool:
        """True if the call succeeded only after one or more retries."""
        return self.attempts > 1


def _retry_any_exception(exc: BaseException, attempt: int) -> bool:
    return True


class Retry:
    """Call a zero-argument function up to ``max_attempts`` times until it succeeds.

    Only :class:`Exception` subclasses are ever retried: ``KeyboardInterrupt``,
    ``SystemExit`` and other bare :class:`BaseException` propagate at once, without a
    callback. Per-call state lives in local variables, so one ``Retry`` may serve many
    threads at the same time.

    Args:
        max_attempts: Total attempts including the first (1 = no retry).
        backoff: Delays between attempts.
        should_retry: ``(exception, attempt) -> bool``; False gives up at once.
            Default: retry every :class:`Exception`.
        deadline: Seconds from the start of the first attempt; a wait that would not
            end before ``start + deadline`` is not started, and the last error
            propagates instead. None: no deadline.
        clock: Monotonic seconds; injected in tests.
        sleep: Blocks for the given seconds; injected in tests.
        random: Uniform float in ``[0, 1)`` for jitter.
        on_attempt_failed: Told about every failed attempt, before any wait; the event
            with ``will_retry=False`` is the final one. Exceptions it raises propagate.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 3,
        backoff: BackoffSettings | None = None,
        should_retry: Callable[[BaseException, int], bool] = _retry_any_exception,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        on_attempt_failed: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise ValueError(f"max_attempts must be an integer; got {max_attempts!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (1 means no retry); got {max_attempts}")
        if deadline is not None and (not math.isfinite(deadline) or deadline <= 0):
            raise ValueError(f"deadline must be a finite number of seconds > 0; got {deadline!r}")
        self.max_attempts = max_attempts
        self.backoff = backoff if backoff is not None else BackoffSettings()
        self.deadline = deadline
        self._should_retry = should_retry
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._on_attempt_failed = on_attempt_failed

    def call(self, fn: Callable[[], T]) -> T:
        """Return ``fn()``, retrying as configured; re-raise the last error when done."""
        start = self._clock()
        try:
            return fn()  # the common case pays for one clock read, nothing more
        except Exception as exc:
            first = exc
        return self._retry(fn, start, first)[0]

    def call_with_stats(self, fn: Callable[[], T]) -> tuple[T, RetryStats]:
        """Like :meth:`call`, and also return how many attempts and how much waiting it took."""
        start = self._clock()
        try:
            value = fn()
        except Exception as exc:
            first = exc
        else:
            return value, RetryStats(attempts=1, waited=0.0, elapsed=self._clock() - start)
        return self._retry(fn, start, first)

    def resume(self, fn: Callable[[], T], *, start: float, error: Exception) -> T:
        """Go on after a first attempt that the caller made itself and that raised ``error``.

        For callers that make the first attempt themselves, since on the common
        path it needs nothing from the policy. ``start`` is when that attempt
        started, by this policy's ``clock``. The next attempt is number 2;
        ``error`` and ``start`` are judged exactly as :meth:`call` would.
        """
        return self._retry(fn, start, error)[0]

    def _retry(self, fn: Callable[[], T], start: float, error: Exception) -> tuple[T, RetryStats]:
        delays = self.backoff.delays(random=self._random)
        waited = 0.0
        attempt = 1
        while True:
            delay, reason = self._decide(error, attempt, start, delays)
            if self._on_attempt_failed is not None:
                self._on_attempt_failed(
                    RetryEvent(
                        exception=error,
                        attempt=attempt,
                        max_attempts=self.max_attempts,
                        will_retry=reason is None,
                        delay=delay,
                        elapsed=self._clock() - start,
                        give_up_reason=reason,
                    )
                )
            if delay is None:
                # Raised outside any except block: no implicit chaining, and the
                # error's own traceback stays first in the chain.
                raise error
            self._sleep(delay)
            waited += delay
            attempt += 1
            try:
                value = fn()
            except Exception as exc:
                error = exc
            else:
                stats = RetryStats(attempts=attempt, waited=waited, elapsed=self._clock() - start)
                return value, stats

    def _decide(
        self, exc: Exception, attempt: int, start: float, delays: Iterator[float]
    ) -> tuple[float, None] | tuple[None, GiveUpReason]:
        # Attempts are checked before should_retry so a predicate with side effects
        # (a future retry budget) is not consulted for a retry that cannot happen.
        if attempt >= self.max_attempts:
            return None, "attempts_exhausted"
        if not self._should_retry(exc, attempt):
            return None, "not_retryable"
        delay = next(delays)
        if self.deadline is not None and self._clock() + delay >= start + self.deadline:
            return None, "deadline"
        return delay, None
