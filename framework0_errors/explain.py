"""Describe a step's effective chain in one line, for ``framework0 explain``."""

from __future__ import annotations

from .config import StepErrorHandling, seconds_text, worst_case_seconds
from .config.models import FallbackConfig, RetryConfig

__all__ = ["describe_chain", "worst_case"]


def describe_chain(block: StepErrorHandling, *, step_name: str) -> str:
    """Return ``fallback(...) → retry(...) → … ; worst case …`` for ``block``."""
    parts: list[str] = []
    if block.fallback is not None:
        parts.append(f"fallback({_fallback(block.fallback)})")
    if block.retry is not None:
        parts.append(f"retry({_retry(block.retry)})")
    if block.circuit_breaker is not None:
        cb = block.circuit_breaker
        trials = f", {cb.half_open_max_calls} trial calls" if cb.half_open_max_calls != 1 else ""
        parts.append(
            f"circuit_breaker({cb.name or step_name}: {cb.failure_threshold} failures, "
            f"{_s(cb.recovery_timeout)}{trials})"
        )
    if block.bulkhead is not None:
        bh = block.bulkhead
        parts.append(
            f"bulkhead({bh.name or step_name}: {bh.max_concurrent} at once, "
            f"wait ≤{_s(bh.max_wait)})"
        )
    if block.timeout is not None:
        parts.append(f"timeout({_s(block.timeout.seconds)})")
    chain = " → ".join([*parts, "step"]) if parts else "step"
    extras = [f"worst case {worst_case(block)}"]
    if block.on_failure is not None:
        extras.append(f"on_failure {block.on_failure}")
    if block.rollback is not None:
        extras.append(f"rollback {_ref(block.rollback.scriptlet)}")
    if block.notify:
        extras.append("notify " + ", ".join(block.notify))
    return chain + "; " + "; ".join(extras)


def worst_case(block: StepErrorHandling) -> str:
    """Return the longest the step can take, or why it is unbounded."""
    timeout = block.timeout.seconds if block.timeout is not None else None
    wait = block.bulkhead.max_wait if block.bulkhead is not None else 0.0
    if timeout is None:
        return "unbounded (no timeout)"
    if block.retry is None:
        return seconds_text(timeout + wait)
    total, _ = worst_case_seconds(block.retry, timeout + wait)
    if block.retry.deadline is not None:
        # No wait starts past the deadline, but the attempt begun before it may run on.
        total = min(total, block.retry.deadline + timeout + wait)
    return seconds_text(total)


def _retry(cfg: RetryConfig) -> str:
    words = [f"{cfg.max_attempts} attempts"]
    first, cap = _s(cfg.initial_delay), _s(cfg.max_delay)
    if cfg.backoff_strategy == "exponential":
        words.append(f"exponential {first}×{cfg.multiplier:g} ≤{cap}")
    elif cfg.backoff_strategy == "linear":
        words.append(f"linear {first}·n ≤{cap}")
    else:
        words.append(f"fixed {first}")
    if cfg.jitter != "none":
        words.append(f"{cfg.jitter} jitter")
    words.append("on " + (", ".join(cfg.retry_on) if cfg.retry_on else "transient errors"))
    if cfg.give_up_on:
        words.append("never on " + ", ".join(cfg.give_up_on))
    if cfg.deadline is not None:
        words.append(f"deadline {_s(cfg.deadline)}")
    return ", ".join(words)


def _fallback(cfg: FallbackConfig) -> str:
    target = (
        _ref(cfg.scriptlet)
        if cfg.scriptlet is not None
        else "value: " + ", ".join(sorted(cfg.value or {}))
    )
    if cfg.on:
        target += " on " + ", ".join(cfg.on)
    return target


def _ref(ref: object) -> str:
    if isinstance(ref, str):
        return ref
    module = getattr(ref, "module", "?")
    function = getattr(ref, "function", None)
    return f"{module}:{function}" if function else str(module)


def _s(seconds: float) -> str:
    return f"{seconds:g}s"
