"""One breaker and one bulkhead object per name, shared by the pipelines of a run.

A breaker or bulkhead object keeps its state in its store, not in itself, so
the steps of a run that name the same one can use one object: a run whose
thousand steps share a breaker builds it once.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import BulkheadConfig, CircuitBreakerConfig
from .policies import Bulkhead, CircuitBreaker
from .stores.base import BreakerStore, BulkheadStore
from .testing import Timing

__all__ = ["SharedPolicies"]

_StateChange = Callable[[str, str, str], None] | None


class SharedPolicies:
    """The breakers and bulkheads that pipelines built, by name, to share.

    A pipeline gets the object another one built when it asks for the same
    name with the same settings, store, clock and ``on_state_change``;
    otherwise it gets an object of its own (kept here only if the name was
    new). Thread-safe: two pipelines racing for a new name end up with one
    object.
    """

    __slots__ = ("_breakers", "_bulkheads")

    def __init__(self) -> None:
        # name -> (breaker, what it was built with), compared on a hit: keyed by
        # the name alone, whose hash is cached, a new name costs one lookup.
        self._breakers: dict[
            str, tuple[CircuitBreaker, BreakerStore, Callable[[], float], _StateChange]
        ] = {}
        self._bulkheads: dict[str, tuple[Bulkhead, BulkheadStore, Timing]] = {}

    def breaker(
        self,
        config: CircuitBreakerConfig,
        *,
        default_name: str,
        store: BreakerStore,
        clock: Callable[[], float],
        on_state_change: _StateChange,
    ) -> CircuitBreaker:
        """Return the breaker ``config`` describes (named ``default_name`` if unnamed)."""
        name = config.name or default_name
        entry = self._breakers.get(name)
        if entry is not None:
            found, its_store, its_clock, its_callback = entry
            if (
                its_store is store
                and its_clock is clock
                and its_callback == on_state_change
                and found.failure_threshold == config.failure_threshold
                and found.recovery_timeout == config.recovery_timeout
                and found.half_open_max_calls == config.half_open_max_calls
            ):
                return found
        made = CircuitBreaker(
            name,
            failure_threshold=config.failure_threshold,
            recovery_timeout=config.recovery_timeout,
            half_open_max_calls=config.half_open_max_calls,
            store=store,
            clock=clock,
            on_state_change=on_state_change,
        )
        if entry is not None:
            return made
        return self._breakers.setdefault(name, (made, store, clock, on_state_change))[0]

    def bulkhead(
        self,
        config: BulkheadConfig,
        *,
        default_name: str,
        lease_seconds: float,
        store: BulkheadStore,
        timing: Timing,
    ) -> Bulkhead:
        """Return the bulkhead ``config`` describes (named ``default_name`` if unnamed)."""
        name = config.name or default_name
        entry = self._bulkheads.get(name)
        if entry is not None:
            found, its_store, its_timing = entry
            if (
                its_store is store
                and its_timing is timing
                and found.max_concurrent == config.max_concurrent
                and found.max_wait == config.max_wait
                and found.lease_seconds == lease_seconds
            ):
                return found
        made = Bulkhead(
            name,
            max_concurrent=config.max_concurrent,
            max_wait=config.max_wait,
            store=store,
            clock=timing.wall,
            sleep=timing.sleep,
            lease_seconds=lease_seconds,
        )
        if entry is not None:
            return made
        return self._bulkheads.setdefault(name, (made, store, timing))[0]
