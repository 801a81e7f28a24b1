"""One background thread per channel that aggregates, sends and retries.

:meth:`ChannelWorker.offer` is what the step's thread calls: it counts the
event into its group under a lock and returns. The worker's daemon thread
sends each group once its window closes (or at flush), off the step's
critical path. Each message gets ``send_timeout`` seconds across its
attempts; each attempt is further limited by the channel's own timeout and by
the flush deadline, and failed attempts are retried ``send_retries`` times
after a short backoff. A channel per thread means one unreachable channel
never delays another.

Time: the injected ``clock`` decides windows, budgets and deadlines, and the
injected ``sleep`` does the backoff. Idle waits are real condition waits, cut
into polls of at most :data:`POLL` seconds, so that a clock that is not real
time (a test's) is still looked at regularly.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from framework0_errors.redact import Redactor

from .aggregate import Aggregator, Group
from .channels import Sender
from .errors import DeliveryError
from .message import Message, NotificationEvent
from .report import ChannelReport

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "MAX_ERRORS", "POLL", "ChannelWorker"]

BACKOFF_BASE = 0.2
"""Seconds before the first retry of a send; each further retry waits twice as long."""
BACKOFF_MAX = 2.0
"""Cap in seconds on one backoff wait."""
MAX_ERRORS = 10
"""Distinct error texts kept per channel."""
POLL = 1.0
"""Longest idle wait, in real seconds, before the worker looks at the clock again."""

_Outcome = Literal["sent", "failed", "unsent"]


@dataclass(slots=True)
class _Outgoing:
    group: Group
    deadline: float = math.inf  # the flush deadline, on the injected clock


class ChannelWorker:
    """Aggregates events for one channel and delivers them from a daemon thread.

    The thread starts at once; :meth:`close` stops it.

    Args:
        name: The channel's name (names the thread).
        sender: Delivers one message.
        window: Aggregation window in seconds.
        send_timeout: Seconds one message may take across its attempts.
        send_retries: Extra attempts after a failed one.
        max_pending: Messages (open groups plus queued) allowed to wait;
            events that would add one more are dropped and counted.
        redactor: Applied to every message and error text.
        clock: Time in seconds (epoch seconds, as messages show it).
        sleep: Waits between attempts.
    """

    def __init__(
        self,
        name: str,
        sender: Sender,
        *,
        window: float,
        send_timeout: float,
        send_retries: int,
        max_pending: int,
        redactor: Redactor,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.name = name
        self._sender = sender
        self._send_timeout = send_timeout
        self._send_retries = send_retries
        self._max_pending = max_pending
        self._redactor = redactor
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._aggregator = Aggregator(window=window)
        self._outbox: deque[_Outgoing] = deque()
        self._in_flight: _Outgoing | None = None
        self._closed = False
        self._sent = 0
        self._failed = 0
        self._lost = 0  # refused, dropped at close, or out of time before any attempt
        self._errors: dict[str, None] = {}  # an ordered set
        self._thread = threading.Thread(
            target=self._run, name=f"framework0-notify-{name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ caller side

    def offer(self, event: NotificationEvent, now: float) -> None:
        """Count ``event`` (seen at ``now``) into its group; never blocks on delivery."""
        with self._cond:
            if self._closed:
                self._lose(1, "events arrived after the notifier was closed")
                return
            self._queue(self._aggregator.pop_due(now))
            pending = len(self._aggregator) + len(self._outbox)
            if event.group_key not in self._aggregator and pending >= self._max_pending:
                self._lose(1, f"events dropped: {self._max_pending} messages already waiting")
                return
            self._queue(self._aggregator.add(event, now))
            self._cond.notify_all()

    def start_flush(self, deadline: float) -> None:
        """Close every open group and give every waiting message ``deadline``."""
        with self._cond:
            self._queue(self._aggregator.pop_all())
            for item in (*self._outbox, self._in_flight):
                if item is not None:
                    item.deadline = min(item.deadline, deadline)
            self._cond.notify_all()

    def wait_idle(self, deadline: float, real_deadline: float) -> None:
        """Wait until nothing is queued or in flight, or until either deadline passes.

        ``deadline`` is on the injected clock, ``real_deadline`` on
        ``time.monotonic``: the first to pass ends the wait, so the wait is
        bounded in real time even under a clock that does not move.
        """
        with self._cond:
            while (self._outbox or self._in_flight) and not self._closed:
                remaining = min(deadline - self._clock(), real_deadline - time.monotonic())
                if remaining <= 0:
                    return
                self._cond.wait(min(remaining, POLL))

    def report(self) -> ChannelReport:
        """Return this channel's counts as they stand."""
        with self._cond:
            waiting = len(self._aggregator) + len(self._outbox) + (self._in_flight is not None)
            return ChannelReport(
                sent=self._sent,
                failed=self._failed,
                errors=tuple(self._errors),
                undelivered=self._lost + waiting,
            )

    def close(self, timeout: float) -> None:
        """Drop what is still waiting (counted undelivered) and stop the thread.

        Waits at most ``timeout`` real seconds for a send in flight to end.
        """
        with self._cond:
            if not self._closed:
                self._closed = True
                dropped = len(self._aggregator.pop_all()) + len(self._outbox)
                self._outbox.clear()
                if dropped:
                    self._lose(dropped, "messages dropped: the notifier was closed before flush")
                self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------ worker side

    def _queue(self, groups: list[Group]) -> None:
        self._outbox.extend(_Outgoing(group) for group in groups)

    def _lose(self, count: int, why: str) -> None:
        self._lost += count
        self._note(why)

    def _note(self, error: str) -> None:
        if len(self._errors) < MAX_ERRORS:
            self._errors[self._redactor.redact_text(error)] = None

    def _run(self) -> None:
        while True:
            with self._cond:
                item = self._next()
                if item is None:
                    return
            outcome, error = self._deliver(item)
            with self._cond:
                self._in_flight = None
                if outcome == "sent":
                    self._sent += 1
                elif outcome == "unsent":
                    self._lose(1, "messages left unsent: the flush bound ran out")
                else:
                    self._failed += 1
                    self._note(error)
                self._cond.notify_all()

    def _next(self) -> _Outgoing | None:
        """Wait for the next message to send (lock held); ``None`` once closed."""
        while not self._closed:
            self._queue(self._aggregator.pop_due(self._clock()))
            if self._outbox:
                self._in_flight = self._outbox.popleft()
                return self._in_flight
            due = self._aggregator.next_due()
            self._cond.wait(None if due is None else min(max(due - self._clock(), 0.0), POLL))
        return None

    def _deliver(self, item: _Outgoing) -> tuple[_Outcome, str]:
        """Send one message with retries; return how it went and the last error."""
        group = item.group
        error = ""
        tried = False
        try:
            message = Message.build(
                group.event,
                count=group.count,
                first=group.first,
                last=group.last,
                redactor=self._redactor,
            )
        except Exception as exc:  # a malformed event must not kill the channel's thread
            return "failed", f"message could not be built: {type(exc).__name__}: {exc}"
        budget_end = self._clock() + self._send_timeout
        for attempt in range(self._send_retries + 1):
            if attempt:
                delay = min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX)
                if self._closed or self._clock() + delay >= min(budget_end, item.deadline):
                    break
                self._sleep(delay)
            limit = min(budget_end, item.deadline) - self._clock()
            if limit <= 0:
                break
            if self._sender.timeout is not None:
                limit = min(limit, self._sender.timeout)
            tried = True
            try:
                self._sender.send(message, timeout=limit)
            except DeliveryError as exc:
                error = str(exc)
                if not exc.retryable:
                    break
            except Exception as exc:  # a sender bug is a failure, not a crash
                error = f"{type(exc).__name__}: {exc}"
                break
            else:
                return "sent", ""
        # No attempt at all means the flush deadline had already passed.
        return ("failed" if tried else "unsent"), error
