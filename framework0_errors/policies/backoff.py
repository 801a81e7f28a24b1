"""Delays between retry attempts: fixed, linear or exponential, optionally jittered.

The delay before retry *n* (n = 1 for the first retry, after the first failed attempt),
before jitter and with every value capped at ``max_delay``:

- ``fixed``: ``initial_delay`` every time.
- ``linear``: ``initial_delay * n`` (1 s, 2 s, 3 s …): each retry waits one
  ``initial_delay`` longer than the one before; ``multiplier`` does not apply.
- ``exponential``: ``initial_delay * multiplier^(n-1)`` (1 s, 2 s, 4 s, 8 s …), the rule of
  AWS Step Functions retriers (``IntervalSeconds * BackoffRate^(n-1)``, capped at
  ``MaxDelaySeconds``).

Jitter follows the AWS Architecture Blog's "Exponential Backoff And Jitter": with ``full``
jitter the sleep is uniform in ``[0, d)``, with ``equal`` jitter it is ``d/2`` plus a uniform
value in ``[0, d/2)``. Jitter spreads out retries of many callers that failed together.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["BackoffSettings", "Jitter", "Strategy", "delays", "worst_case_total"]

Strategy = Literal["fixed", "linear", "exponential"]
Jitter = Literal["none", "full", "equal"]
_STRATEGIES = get_args(Strategy)
_JITTERS = get_args(Jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffSettings:
    """How long to wait before each retry; validated when built.

    Attributes:
        strategy: ``fixed``, ``linear`` or ``exponential`` (see the module docstring).
        initial_delay: Seconds before the first retry (>= 0).
        multiplier: Growth factor of ``exponential`` (>= 1); ignored by the others.
        max_delay: Cap on any one delay, in seconds (>= 0).
        jitter: ``none``, ``full`` or ``equal``.
    """

    strategy: Strategy = "exponential"
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: Jitter = "none"

    def __post_init__(self) -> None:
        if self.strategy not in _STRATEGIES:
            raise ValueError(
                f"backoff strategy must be one of fixed, linear, exponential; got {self.strategy!r}"
            )
        if self.jitter not in _JITTERS:
            raise ValueError(f"jitter must be one of none, full, equal; got {self.jitter!r}")
        _check_seconds("initial_delay", self.initial_delay)
        _check_seconds("max_delay", self.max_delay)
        if not math.isfinite(self.multiplier) or self.multiplier < 1.0:
            raise ValueError(f"multiplier must be a finite number >= 1; got {self.multiplier!r}")

    def delay(self, n: int) -> float:
        """Return the capped, unjittered delay before retry ``n`` (1-based)."""
        if n < 1:
            raise ValueError(f"retry number must be >= 1; got {n}")
        if self.strategy == "fixed":
            raw = self.initial_delay
        elif self.strategy == "linear":
            raw = self.initial_delay * n
        else:
            try:
                raw = self.initial_delay * self.multiplier ** (n - 1)
            except OverflowError:
                raw = math.inf
        return min(raw, self.max_delay)

    def delays(self, *, random: Callable[[], float] = _random.random) -> Iterator[float]:
        """Yield the delay before retry 1, 2, 3 … forever, jittered with ``random``.

        ``random`` returns a float in ``[0, 1)``; inject a fixed one in tests.
        """
        n = 0
        capped = False
        while True:
            n += 1
            # Every strategy is non-decreasing, so once a delay hits the cap the rest
            # do too; stop computing powers that would only overflow.
            base = self.max_delay if capped else self.delay(n)
            capped = base >= self.max_delay
            yield self._jittered(base, random)

    def worst_case_total(self, retries: int) -> float:
        """Return the longest total wait over ``retries`` retries (jitter only shortens)."""
        if retries < 0:
            raise ValueError(f"retries must be >= 0; got {retries}")
        total = 0.0
        for n in range(1, retries + 1):
            d = self.delay(n)
            if d >= self.max_delay:
                return total + d * (retries - n + 1)
            total += d
        return total

    def _jittered(self, base: float, random: Callable[[], float]) -> float:
        if self.jitter == "full":
            return base * random()
        if self.jitter == "equal":
            half = base / 2
            return half + half * random()
        return base


def delays(
    *,
    strategy: Strategy,
    initial_delay: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 60.0,
    jitter: Jitter = "none",
    random: Callable[[], float] = _random.random,
) -> Iterator[float]:
    """Yield the delay before retry 1, 2, 3 … forever; knobs are validated at once.

    Raises:
        ValueError: A knob is out of range (before anything is yielded).
    """
    settings = BackoffSettings(
        strategy=strategy,
        initial_delay=initial_delay,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter=jitter,
    )
    return settings.delays(random=random)


def worst_case_total(
    retries: int,
    *,
    strategy: Strategy,
    initial_delay: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 60.0,
) -> float:
    """Return the sum of the first ``retries`` capped delays, for validators and ``explain``.

    With ``max_attempts`` attempts there are ``max_attempts - 1`` retries.
    """
    settings = BackoffSettings(
        strategy=strategy,
        initial_delay=initial_delay,
        multiplier=multiplier,
        max_delay=max_delay,
    )
    return settings.worst_case_total(retries)


def _check_seconds(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0; got {value!r}")
