"""Resilience policies: each wraps a zero-argument callable with ``policy.call(fn)``.

The building blocks of the per-step chain
``fallback → retry → circuit_breaker → bulkhead → timeout → attempt``; they know nothing
of recipes or configuration files.
"""

from framework0_errors.policies.backoff import (
    BackoffSettings,
    Jitter,
    Strategy,
    delays,
    worst_case_total,
)
from framework0_errors.policies.bulkhead import Bulkhead, next_holder_id
from framework0_errors.policies.circuit_breaker import CircuitBreaker
from framework0_errors.policies.exceptions import (
    BulkheadFullError,
    CircuitOpenError,
    StepTimeoutError,
)
from framework0_errors.policies.retry import GiveUpReason, Retry, RetryEvent, RetryStats
from framework0_errors.policies.timeout import Timeout

__all__ = [
    "BackoffSettings",
    "Bulkhead",
    "BulkheadFullError",
    "CircuitBreaker",
    "CircuitOpenError",
    "GiveUpReason",
    "Jitter",
    "Retry",
    "RetryEvent",
    "RetryStats",
    "StepTimeoutError",
    "Strategy",
    "Timeout",
    "delays",
    "next_holder_id",
    "worst_case_total",
]
