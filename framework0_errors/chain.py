"""The per-step chain: fallback → retry → circuit_breaker → bulkhead → timeout → attempt.

Built once per step per run from the step's effective ``error_handling``
block. Every failed attempt is recorded in ``errors.<step>``; the outcome
goes to ``recovery.<step>`` and to the step's line ("recovered after 3
attempts", "fallback", "short-circuited (breaker payments open)").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .classify import Selector, parse_selector
from .config import FallbackConfig, StepErrorHandling, resolve_reference
from .detect import capture_log_errors
from .orchestrator import (
    Invocation,
    MissingContextKeys,
    Next,
    Step,
    StepReturnedNonZero,
    resolve_callable,
)
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
from .runtime import RunState

__all__ = ["FallbackFailedError", "StepChain", "bare_step"]


class FallbackFailedError(Framework0Error):
    """The step failed, and so did its fallback; both errors are chained."""

    __module__ = "framework0_errors"

    def __init__(self, step: str, original: BaseException, fallback: BaseException) -> None:
        self.step = step
        self.original = original
        self.fallback = fallback
        super().__init__(
            f"step '{step}' failed ({type(original).__name__}: {original}) and its fallback "
            f"failed too ({type(fallback).__name__}: {fallback})"
        )


def bare_step(state: RunState, step: Step) -> Callable[[Invocation, Next], None]:
    """Return the middleware of a step without error handling: detect and record only."""
    journal = state.journal

    def middleware(invocation: Invocation, call_next: Next) -> None:
        with capture_log_errors(level=state.detect_level, patterns=state.detect_patterns) as found:
            try:
                call_next(invocation)
            except Exception as exc:
                journal.record(invocation, step.name, exc, attempt=1)
                raise
            finally:
                if found:
                    journal.record_detected(step.name, found, attempt=1)

    return middleware


class StepChain:
    """The composed policies of one step for one run; call it as middleware."""

    def __init__(self, step: Step, block: StepErrorHandling, state: RunState) -> None:
        self.step = step
        self.block = block
        self.state = state
        self.redactor = state.redactor_for(step.args)
        clocks = state.timing
        self.retry: Retry | None = None
        if block.retry is not None:
            cfg = block.retry
            self.retry_on = _selectors(cfg.retry_on)
            self.give_up_on = _selectors(cfg.give_up_on) or ()
            self.retry = Retry(
                max_attempts=cfg.max_attempts,
                backoff=BackoffSettings(
                    strategy=cfg.backoff_strategy,
                    initial_delay=cfg.initial_delay,
                    multiplier=cfg.multiplier,
                    max_delay=cfg.max_delay,
                    jitter=cfg.jitter,
                ),
                should_retry=self._should_retry,
                deadline=cfg.deadline,
                clock=clocks.monotonic,
                sleep=clocks.sleep,
            )
        self.breaker: CircuitBreaker | None = None
        if block.circuit_breaker is not None:
            cb = block.circuit_breaker
            name = cb.name or step.name
            state.breakers.add(name)
            self.breaker = CircuitBreaker(
                name,
                failure_threshold=cb.failure_threshold,
                recovery_timeout=cb.recovery_timeout,
                half_open_max_calls=cb.half_open_max_calls,
                store=state.store,
                clock=clocks.wall,
                counts_as_failure=_counts_for_breaker,
                on_state_change=self._breaker_changed,
            )
        self.bulkhead: Bulkhead | None = None
        if block.bulkhead is not None:
            bh = block.bulkhead
            self.bulkhead = Bulkhead(
                bh.name or step.name,
                max_concurrent=bh.max_concurrent,
                max_wait=bh.max_wait,
                store=state.store,
                clock=clocks.wall,
                sleep=clocks.sleep,
            )
        self.timeout_seconds = block.timeout.seconds if block.timeout is not None else None
        self.fallback = block.fallback
        self.fallback_on = _selectors(block.fallback.on) if block.fallback is not None else None
        self.fallback_call = _fallback_callable(block.fallback, step)

    # ------------------------------------------------------------------ the chain

    def __call__(self, invocation: Invocation, call_next: Next) -> None:
        clocks = self.state.timing
        started = clocks.monotonic()
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            number = attempts
            try:
                self._guarded(invocation, call_next, number)
            except Exception as exc:
                self.state.journal.record(
                    invocation, self.step.name, exc, attempt=number, redactor=self.redactor
                )
                raise

        try:
            if self.retry is not None:
                self.retry.call(attempt)
            else:
                attempt()
        except Exception as exc:
            if self.fallback is None or not self._fallback_applies(exc):
                self._finish(invocation, "failed", attempts, started, exc)
                raise
            try:
                self._run_fallback(invocation)
            except Exception as failed:
                self._finish(invocation, "failed", attempts, started, exc)
                raise FallbackFailedError(self.step.name, exc, failed) from failed
            self._finish(invocation, "fallback", attempts, started, exc)
            return
        self._finish(invocation, "recovered" if attempts > 1 else "succeeded", attempts, started)

    def _guarded(self, invocation: Invocation, call_next: Next, number: int) -> None:
        def innermost() -> None:
            self._attempt(invocation, call_next, number)

        call: Callable[[], None] = innermost
        if self.timeout_seconds is not None:
            call = self._timed(invocation, call_next, number)
        if self.bulkhead is not None:
            call = _bind(self.bulkhead.call, call)
        if self.breaker is not None:
            self.breaker.call(call)
        else:
            call()

    def _timed(self, invocation: Invocation, call_next: Next, number: int) -> Callable[[], None]:
        seconds = self.timeout_seconds
        assert seconds is not None
        view = invocation.context.child()
        inner = invocation.with_context(view)
        reason = f"attempt {number} of step '{self.step.name}' timed out after {seconds:g}s"
        timeout = Timeout(seconds, on_abandon=lambda: view.fence(reason))

        def timed() -> None:
            timeout.call(lambda: self._attempt(inner, call_next, number))

        return timed

    def _attempt(self, invocation: Invocation, call_next: Next, number: int) -> None:
        # Opened in the thread that runs the step's code: captures are per thread.
        with capture_log_errors(
            level=self.state.detect_level, patterns=self.state.detect_patterns
        ) as found:
            try:
                call_next(invocation)
            finally:
                if found:
                    self.state.journal.record_detected(
                        self.step.name, found, attempt=number, redactor=self.redactor
                    )

    # ------------------------------------------------------------------ decisions

    def _should_retry(self, exc: BaseException, attempt: int) -> bool:
        if isinstance(exc, CircuitOpenError):
            return False  # an open breaker ends retrying at once
        classification = self.state.journal.classify(exc)
        if any(s.matches(exc, classification) for s in self.give_up_on):
            return False
        if self.retry_on is None:
            return classification.transient
        return any(s.matches(exc, classification) for s in self.retry_on)

    def _fallback_applies(self, exc: BaseException) -> bool:
        if self.fallback_on is None:
            return True
        classification = self.state.journal.classify(exc)
        return any(s.matches(exc, classification) for s in self.fallback_on)

    def _run_fallback(self, invocation: Invocation) -> None:
        assert self.fallback is not None
        context = invocation.context
        if self.fallback_call is None:
            for key, value in (self.fallback.value or {}).items():
                context.set(key, value)
        else:
            code = self.fallback_call(context, dict(self.fallback.args))
            if code is not None and (type(code) is not int or code != 0):
                raise StepReturnedNonZero(f"{self.step.name} (fallback)", code)
        missing = [k for k in self.step.ctx_has_keys if context.get(k, _ABSENT) is _ABSENT]
        if missing:
            raise MissingContextKeys(f"{self.step.name} (fallback)", missing)

    # ------------------------------------------------------------------ reporting

    def _finish(
        self,
        invocation: Invocation,
        outcome: str,
        attempts: int,
        started: float,
        error: BaseException | None = None,
    ) -> None:
        duration = self.state.timing.monotonic() - started
        detail = _detail(outcome, attempts, error, self.fallback)
        if detail:
            invocation.notes["detail"] = detail
        invocation.notes["outcome"] = outcome
        invocation.notes["attempts"] = attempts
        strategy = {"recovered": "retry", "fallback": "fallback"}.get(outcome)
        if strategy is None and outcome == "succeeded":
            strategy = "none"
        self.state.journal.set_recovery(
            self.step.name,
            {
                "attempts": attempts,
                "outcome": outcome,
                "strategy": strategy,
                "duration": round(duration, 6),
                "error_type": type(error).__name__ if error is not None else None,
            },
        )

    def _breaker_changed(self, name: str, old: str, new: str) -> None:
        assert self.breaker is not None
        self.state.journal.set_breaker(self.breaker.snapshot())


_ABSENT: Any = object()


def _bind(
    wrapper: Callable[[Callable[[], None]], None], fn: Callable[[], None]
) -> Callable[[], None]:
    def bound() -> None:
        wrapper(fn)

    return bound


def _selectors(texts: list[str] | None) -> tuple[Selector, ...] | None:
    if texts is None:
        return None
    return tuple(parse_selector(t) for t in texts)


def _counts_for_breaker(exc: BaseException) -> bool:
    # A full bulkhead says nothing about the health of the service behind the breaker.
    return isinstance(exc, Exception) and not isinstance(exc, BulkheadFullError)


def _fallback_callable(
    fallback: FallbackConfig | None, step: Step
) -> Callable[[Any, Any], Any] | None:
    if fallback is None or fallback.scriptlet is None:
        return None
    module, function = resolve_reference(fallback.scriptlet, step.function)
    return resolve_callable(module, function)


def _detail(
    outcome: str, attempts: int, error: BaseException | None, fallback: FallbackConfig | None
) -> str | None:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if outcome == "recovered":
        return f"recovered after {tries}"
    if error is None:
        return None
    special = _special_reason(error)
    if outcome == "fallback":
        label = _fallback_label(fallback)
        return f"fallback {label}: {special}" if special else f"fallback {label} after {tries}"
    if attempts <= 1:
        return special
    return f"failed after {tries}" + (f"; last: {special}" if special else "")


def _special_reason(error: BaseException) -> str | None:
    if isinstance(error, CircuitOpenError):
        return f"short-circuited (breaker {error.breaker} open)"
    if isinstance(error, BulkheadFullError):
        return f"rejected (bulkhead {error.name} full)"
    if isinstance(error, StepTimeoutError):
        return f"timed out after {error.seconds:g}s"
    return None


def _fallback_label(fallback: FallbackConfig | None) -> str:
    if fallback is None or fallback.scriptlet is None:
        return "(value)"
    ref = fallback.scriptlet
    return ref if isinstance(ref, str) else f"{ref.module}:{ref.function or ''}"
