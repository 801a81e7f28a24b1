"""Stores that hold circuit-breaker and bulkhead state shared by name."""

from framework0_errors.stores.base import (
    Admission,
    BreakerSnapshot,
    BreakerState,
    BreakerStore,
    BulkheadStore,
    Transition,
)
from framework0_errors.stores.memory import MemoryStore

__all__ = [
    "Admission",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
    "BulkheadStore",
    "MemoryStore",
    "Transition",
]
