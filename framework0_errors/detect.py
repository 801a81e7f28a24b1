"""Detect errors a step logs, even when it returns success.

:func:`capture_log_errors` wraps one step attempt. It collects the log records
that the CURRENT THREAD emits at or above a level (``ERROR`` by default) or
whose message matches one of some regular expressions, as
:class:`DetectedLogError` items.

Steps run concurrently in worker threads, so captures must not see each
other's records. Adding and removing one handler per capture would also be
unsafe: ``Logger.callHandlers`` iterates the live handler list, and a removal
by one thread can make another thread's iteration skip a handler. So one
dispatching handler per logger is installed while any capture on it is open,
and routes each record to the captures of the thread that emitted it.

What the logging configuration drops never reaches a handler: records below
a logger's effective level, from disabled loggers, or from loggers with
``propagate = False`` below the capturing logger. Records emitted by threads
the step starts itself are not attributed to the step.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from .categories import ErrorSeverity

__all__ = ["DetectedLogError", "LogWatch", "capture_log_errors", "severity_for_level"]


@dataclass(frozen=True, slots=True)
class DetectedLogError:
    """One log record that counts as an error of the step that emitted it.

    ``time`` is the record's creation time (epoch seconds); ``pattern`` is the
    first pattern that matched the message, or ``None`` when only the level
    made it count.
    """

    logger: str
    level: str
    levelno: int
    message: str
    time: float
    pattern: str | None = None


def severity_for_level(levelno: int) -> ErrorSeverity:
    """Map a logging level to a severity: CRITICAL→CRITICAL, ERROR→HIGH, WARNING→MEDIUM."""
    if levelno >= logging.CRITICAL:
        return ErrorSeverity.CRITICAL
    if levelno >= logging.ERROR:
        return ErrorSeverity.HIGH
    if levelno >= logging.WARNING:
        return ErrorSeverity.MEDIUM
    return ErrorSeverity.LOW


class _Filter:
    # What counts as an error, fixed for a LogWatch (or one capture_log_errors
    # block); a capture is then just a (filter, found) pair, so a LogWatch
    # starts one without building an object.
    __slots__ = ("exclude", "level", "patterns")

    def __init__(
        self,
        level: int,
        patterns: tuple[re.Pattern[str], ...],
        exclude: tuple[str, ...],
    ) -> None:
        self.level = level
        self.patterns = patterns
        self.exclude = exclude

    def offer(self, record: logging.LogRecord, found: list[DetectedLogError]) -> None:
        if record.levelno < self.level and not self.patterns:
            return
        name = record.name
        if any(name == ex or name.startswith(ex + ".") for ex in self.exclude):
            return
        try:
            message = record.getMessage()
        except Exception:
            # A bad %-format or a failing __str__ in the step's own call: logging
            # reports it through handleError and so must we not raise into the
            # step; keep the raw text rather than lose the error.
            message = str(record.msg)
        pattern = next((p.pattern for p in self.patterns if p.search(message)), None)
        if record.levelno < self.level and pattern is None:
            return
        found.append(
            DetectedLogError(
                logger=name,
                level=record.levelname,
                levelno=record.levelno,
                message=message,
                time=record.created,
                pattern=pattern,
            )
        )


# (what counts, the list the errors go to); identified by the list, by identity
_Capture = tuple[_Filter, list[DetectedLogError]]
_Held = _Capture | list[_Capture]
_get_ident = threading.get_ident
_A = TypeVar("_A")


def _push(captures: dict[int, _Held], ident: int, held: _Held, capture: _Capture) -> None:
    # Open ``capture`` over ``held``, the captures ``ident`` already has open.
    if isinstance(held, list):
        held.append(capture)
    else:
        captures[ident] = [held, capture]


def _pop(captures: dict[int, _Held], ident: int, found: list[DetectedLogError]) -> None:
    # Close the capture of ``ident`` that collects into ``found``, if open.
    held = captures.get(ident)
    if isinstance(held, list):
        for i, (_, theirs) in enumerate(held):
            if theirs is found:
                del held[i]
                break
        if not held:
            del captures[ident]
    elif held is not None and held[1] is found:
        del captures[ident]


class _Dispatcher(logging.Handler):
    """Routes each record to the open captures of the thread that emits it."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        # thread ident -> its open capture, or a list of them (oldest first) once
        # nested: one capture, the usual case, needs no list. Each entry is
        # touched by its own thread only.
        self.captures: dict[int, _Held] = {}
        # LogWatch objects keeping this dispatcher installed between their captures
        self.holders = 0

    def handle(self, record: logging.LogRecord) -> bool:
        # Overridden whole (so emit is never called): no handler lock or filters
        # are needed, and a record from a thread without a capture costs one lookup.
        held = self.captures.get(_get_ident())
        if held is None:
            return True
        if isinstance(held, list):
            for flt, found in held:
                flt.offer(record, found)
        else:
            held[0].offer(record, held[1])
        return True


# Logging is process-global, so the dispatchers attached to it are too.
_dispatchers: dict[str, _Dispatcher] = {}
_dispatchers_lock = threading.Lock()


@contextmanager
def capture_log_errors(
    *,
    level: int = logging.ERROR,
    patterns: Sequence[str] = (),
    logger_name: str = "",
    exclude_loggers: Sequence[str] = ("framework0_errors",),
) -> Iterator[list[DetectedLogError]]:
    """Collect the current thread's error log records while the block runs.

    Args:
        level: Records at or above this level count.
        patterns: Regular expressions searched case-insensitively in each
            message; a record matching one counts at any level.
        logger_name: Logger to listen on; ``""`` is the root logger.
        exclude_loggers: Loggers (and their children) never counted, by
            default the framework's own, which log about steps, not for them.

    Yields:
        The list the detected errors are appended to, in emission order.

    Raises:
        ValueError: A pattern is not a valid regular expression.
    """
    found: list[DetectedLogError] = []
    capture = (_Filter(level, _compile(patterns), tuple(exclude_loggers)), found)
    ident = _get_ident()
    with _dispatchers_lock:
        dispatcher = _install(logger_name)
        held = dispatcher.captures.setdefault(ident, capture)
        if held is not capture:
            _push(dispatcher.captures, ident, held, capture)
    try:
        yield found
    finally:
        with _dispatchers_lock:
            _pop(dispatcher.captures, ident, found)
            _uninstall_if_idle(logger_name, dispatcher)


class LogWatch:
    """Captures for many step attempts at the cost of a dict update each.

    :func:`capture_log_errors` sets up and tears down per use; a run wraps
    thousands of attempts, so it builds one ``LogWatch`` (patterns compiled
    and the dispatcher installed once), calls :meth:`start` and :meth:`stop`
    around each attempt in the thread that runs it, and :meth:`close` at the
    end. Same arguments and semantics as :func:`capture_log_errors`.
    """

    def __init__(
        self,
        *,
        level: int = logging.ERROR,
        patterns: Sequence[str] = (),
        logger_name: str = "",
        exclude_loggers: Sequence[str] = ("framework0_errors",),
    ) -> None:
        self._filter = _Filter(level, _compile(patterns), tuple(exclude_loggers))
        self._logger_name = logger_name
        with _dispatchers_lock:
            self._dispatcher = _install(logger_name)
            self._dispatcher.holders += 1
        # The dispatcher's table, looked up once: start and stop run per attempt.
        self._captures = self._dispatcher.captures
        self._closed = False

    def start(self) -> list[DetectedLogError]:
        """Start capturing the current thread's records; return the list they go to."""
        found: list[DetectedLogError] = []
        capture = (self._filter, found)
        # Only this thread touches its own entry, so no lock is needed.
        ident = _get_ident()
        held = self._captures.setdefault(ident, capture)
        if held is not capture:
            _push(self._captures, ident, held, capture)
        return found

    def stop(self, found: list[DetectedLogError]) -> None:
        """Stop the capture that :meth:`start` returned ``found`` for, in the same thread."""
        captures = self._captures
        ident = _get_ident()
        held = captures.get(ident)
        if type(held) is tuple and held[1] is found:
            del captures[ident]  # the usual case: the thread's only capture
        else:
            _pop(captures, ident, found)

    def call(self, fn: Callable[[_A], object], arg: _A, found: list[DetectedLogError]) -> None:
        """Run ``fn(arg)``, capturing the current thread's records into ``found``.

        :meth:`start` and :meth:`stop` around the call, in one step. ``found``
        holds what was captured also when ``fn`` raises; pass a new list, not
        one an open capture collects into (it would get each record twice).
        """
        capture = (self._filter, found)
        captures = self._captures
        ident = _get_ident()
        held = captures.setdefault(ident, capture)
        if held is not capture:
            _push(captures, ident, held, capture)
        try:
            fn(arg)
        finally:
            left = captures.pop(ident, None)
            if left is not capture and left is not None:  # nested: put back what stays open
                captures[ident] = left
                _pop(captures, ident, found)

    def close(self) -> None:
        """Let the dispatcher go once no capture or watch needs it; idempotent."""
        with _dispatchers_lock:
            if self._closed:
                return
            # Marked and released with no call in between: an interrupt cannot
            # land there and leave the dispatcher installed for good.
            self._closed = True
            self._dispatcher.holders -= 1
            _uninstall_if_idle(self._logger_name, self._dispatcher)


def _compile(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for text in patterns:
        try:
            compiled.append(re.compile(text, re.IGNORECASE))
        except re.error as err:
            raise ValueError(f"invalid log pattern {text!r}: {err}") from None
    return tuple(compiled)


def _install(logger_name: str) -> _Dispatcher:
    # Called with _dispatchers_lock held.
    logger = logging.getLogger(logger_name)
    dispatcher = _dispatchers.get(logger_name)
    if dispatcher is None:
        dispatcher = _dispatchers[logger_name] = _Dispatcher()
    if dispatcher not in logger.handlers:  # also repairs a logging reconfiguration
        logger.addHandler(dispatcher)
    return dispatcher


def _uninstall_if_idle(logger_name: str, dispatcher: _Dispatcher) -> None:
    # Called with _dispatchers_lock held.
    if not dispatcher.captures and not dispatcher.holders:
        logging.getLogger(logger_name).removeHandler(dispatcher)
        if _dispatchers.get(logger_name) is dispatcher:
            del _dispatchers[logger_name]
