"""SIGTERM, as schedulers send it to stop a run, handled as Ctrl-C is."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["EXIT_TERMINATED", "TerminationSignal"]

EXIT_TERMINATED = 128 + signal.SIGTERM
"""The exit code of a run stopped by SIGTERM, as shells report a process it killed."""


class TerminationSignal:
    """While entered, SIGTERM raises KeyboardInterrupt in the main thread and is noted.

    cron's ``timeout``, systemd, Kubernetes and CI runners stop a process
    with SIGTERM; by default Python then dies at once, without committing
    what the steps that ended did or sending pending notifications. Raised
    as KeyboardInterrupt, it stops the run as Ctrl-C does: no new step
    starts; a step running in the main thread is interrupted, and steps
    running under ``--workers`` are waited for, until a second signal
    (SIGTERM or Ctrl-C) abandons them. ``received`` says whether SIGTERM came. Does
    nothing outside the main thread, where Python cannot take signals; the
    handler found is put back on exit.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> TerminationSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        raise KeyboardInterrupt
