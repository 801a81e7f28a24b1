"""A testing switch: run recipes on a fake clock so retries and breakers never sleep.

``with fake_time() as clock:`` makes every chain built inside the block use
``clock`` for time and for sleeping; ``clock.sleeps`` lists every wait that
was requested. Outside the block, the real clocks are used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["FakeClock", "Timing", "fake_time", "timing"]


@dataclass(frozen=True, slots=True)
class Timing:
    """The clocks and the sleep every policy of a run uses.

    ``monotonic`` measures durations and deadlines; ``wall`` stamps records
    and breaker state shared with other processes; ``sleep`` waits.
    """

    monotonic: Callable[[], float]
    wall: Callable[[], float]
    sleep: Callable[[float], None]


_REAL = Timing(time.monotonic, time.time, time.sleep)
_current = _REAL


def timing() -> Timing:
    """Return the clocks policies should use now (real ones unless faked)."""
    return _current


class FakeClock:
    """A clock that only moves when something sleeps on it (or :meth:`advance`)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self.sleeps: list[float] = []
        """Every wait requested, in order."""

    def now(self) -> float:
        """Return the current fake time."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Record the wait and move time forward by it, at once."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        with self._lock:
            self._now += seconds


@contextmanager
def fake_time(start: float = 1_700_000_000.0) -> Iterator[FakeClock]:
    """Make chains built inside the block run on a :class:`FakeClock`."""
    global _current  # noqa: PLW0603 - the one global STYLE allows: a testing switch
    clock = FakeClock(start)
    previous = _current
    _current = Timing(clock.now, clock.now, clock.sleep)
    try:
        yield clock
    finally:
        _current = previous
