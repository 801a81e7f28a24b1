"""One attempt of a pipeline: its signature, its abandon signal, and how a run of them went."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["NEVER", "Abandon", "Attempt", "Tally", "report_first"]

T = TypeVar("T")


class Abandon:
    """Tells an attempt that its caller stopped waiting for it (its timeout expired).

    Callbacks added before or after :meth:`set` run exactly once, with the reason.
    Only the waiting caller calls :meth:`set`; the attempt's thread calls :meth:`add`.
    """

    __slots__ = ("_callbacks", "reason")

    def __init__(self) -> None:
        # No lock: one is made per timed attempt, and deque appends and pops are
        # atomic, so each callback is claimed by exactly one thread (see _drain).
        self._callbacks: deque[Callable[[str], None]] = deque()
        self.reason: str | None = None

    def add(self, callback: Callable[[str], None]) -> None:
        """Run ``callback(reason)`` when the attempt is abandoned (now, if it already was)."""
        self._callbacks.append(callback)
        # Appended before reading reason, while set() writes reason before draining:
        # whichever runs second sees the other's step and runs the callback.
        if self.reason is not None:
            self._drain()

    def set(self, reason: str) -> None:
        """Abandon the attempt."""
        if self.reason is None:
            self.reason = reason
        self._drain()

    def _drain(self) -> None:
        reason = self.reason
        assert reason is not None
        while True:
            try:
                callback = self._callbacks.popleft()
            except IndexError:
                return
            callback(reason)


class _Never(Abandon):
    """The abandon signal of an attempt without a timeout: it is never set."""

    __slots__ = ()

    def add(self, callback: Callable[[str], None]) -> None:
        """Nothing to wait for."""


NEVER: Abandon = _Never()
"""The abandon signal of every attempt without a timeout: never set."""


@dataclass(slots=True)
class Tally:
    """How one run of the pipeline went: attempts made, last error, outcome.

    ``outcome`` is ``succeeded``, ``recovered`` (after retries), ``fallback``
    or ``failed``.
    """

    attempts: int = 0
    error: BaseException | None = None
    outcome: str = ""


Attempt = Callable[[int, Abandon], T]
"""One attempt: ``attempt(number, abandon)``, numbered from 1."""


def report_first(exc: Exception, on_error: Callable[[BaseException, int], None]) -> Exception:
    """Tell ``on_error`` that the first attempt failed with ``exc``; return the error to go on with.

    Call it in the ``except`` block that caught ``exc``, as :meth:`Pipeline.run`
    does, so that ``on_error`` sees ``exc`` as the error being handled. An
    :class:`Exception` that ``on_error`` raises is what happens next instead,
    as if a later attempt had failed with it.
    """
    try:
        on_error(exc, 1)
    except Exception as failed:
        return failed
    return exc
