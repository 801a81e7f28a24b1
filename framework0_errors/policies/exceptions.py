"""Errors the resilience policies raise on purpose.

Exhausted retries raise no error of their own: when :class:`~framework0_errors.policies.Retry`
gives up, the exception of the last attempt propagates unchanged (the same object, its
traceback intact), so ``except ConnectionError`` works the same with or without a retry
policy around the call. How many attempts were made is reported through the retry
callback and statistics instead.
"""

from __future__ import annotations

import math
from typing import Any

from framework0_errors.orchestrator.problems import Framework0Error

__all__ = ["BulkheadFullError", "CircuitOpenError", "StepTimeoutError"]


class CircuitOpenError(Framework0Error):
    """A circuit breaker refused the call, so the step was not attempted."""

    __module__ = "framework0_errors"

    def __init__(
        self, breaker: str, *, retry_at: float, retry_in: float, state: str = "open"
    ) -> None:
        self.breaker = breaker
        self.retry_at = retry_at
        self.retry_in = retry_in
        self.state = state
        if state == "half_open":
            message = (
                f"circuit breaker {breaker!r} is half-open and its trial calls are in progress"
            )
        elif math.isinf(retry_in):
            message = f"circuit breaker {breaker!r} is open until it is reset"
        else:
            # Tenths of a second, unless that takes more digits than anyone reads.
            wait = f"{retry_in:.1f}" if retry_in < 1e7 else f"{retry_in:.3g}"
            message = f"circuit breaker {breaker!r} is open; it will half-open in {wait}s"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"retry_at": self.retry_at, "retry_in": self.retry_in, "state": self.state}
        return (_rebuild, (type(self), (self.breaker,), kwargs))


class BulkheadFullError(Framework0Error):
    """Every slot of a bulkhead stayed taken for as long as the caller could wait."""

    __module__ = "framework0_errors"

    def __init__(self, name: str, *, max_concurrent: int, waited: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.waited = waited
        super().__init__(
            f"bulkhead {name!r} is full ({max_concurrent} concurrent executions); "
            f"waited {waited:.1f}s for a slot"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"max_concurrent": self.max_concurrent, "waited": self.waited}
        return (_rebuild, (type(self), (self.name,), kwargs))


class StepTimeoutError(Framework0Error, TimeoutError):
    """One attempt ran longer than its timeout; it may still be running in its thread."""

    __module__ = "framework0_errors"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"attempt timed out after {seconds:g}s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.seconds,), {}))


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Keyword-only constructors defeat BaseException's default pickling, which replays
    # ``self.args``; errors must survive pickling to cross process boundaries.
    return cls(*args, **kwargs)
