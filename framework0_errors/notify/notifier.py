"""The notifier: route events to channels, aggregate them, deliver off the critical path.

Build one per run with :meth:`Notifier.from_config`, call :meth:`~Notifier.notify`
for every event worth telling, and :meth:`~Notifier.flush` before the run
ends; the report it returns says what each channel delivered. ``notify``
only counts the event into a group and returns; each channel's daemon thread
sends its groups when their window closes or at flush. Nothing here raises
into the run once the notifier is built: delivery problems end up in the
report.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from framework0_errors.config.models import NotificationsConfig, Route
from framework0_errors.redact import Redactor

from .channels import Sender, build_sender
from .envsubst import resolve_channel
from .errors import NotificationConfigError
from .message import NotificationEvent
from .report import ChannelReport, DeliveryReport
from .router import Router
from .sender import MAX_ERRORS, ChannelWorker

__all__ = ["CLOSE_TIMEOUT", "Notifier"]

CLOSE_TIMEOUT = 1.0
"""Real seconds :meth:`Notifier.close` waits, in all, for sends in flight to end."""


class Notifier:
    """Tells people about failures through the recipe's channels.

    Thread-safe: steps running in parallel may call :meth:`notify` at once.

    Args:
        senders: One sender per channel name.
        routes: Routes tried for every event, in order.
        window: Seconds over which repeats of an event are aggregated.
        flush_timeout: Default bound of :meth:`flush`, in seconds.
        send_timeout: Seconds one message may take on one channel, across retries.
        send_retries: Extra attempts after a failed send.
        max_pending: Messages allowed to wait per channel; events beyond are
            dropped and reported as undelivered.
        redactor: Masks secrets in every message and error text.
        clock: Time in epoch seconds; decides windows and deadlines and is
            the time messages show.
        sleep: Waits between send attempts.

    Raises:
        NotificationConfigError: a route names a channel with no sender.
    """

    def __init__(
        self,
        senders: Mapping[str, Sender],
        *,
        routes: Sequence[Route] = (),
        window: float = 60.0,
        flush_timeout: float = 5.0,
        send_timeout: float = 30.0,
        send_retries: int = 2,
        max_pending: int = 1000,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for index, route in enumerate(routes):
            for name in route.channels:
                if name not in senders:
                    known = ", ".join(sorted(senders)) or "none"
                    raise NotificationConfigError(
                        f"notification route {index} names unknown channel {name!r}; "
                        f"defined channels: {known}"
                    )
        self._router = Router(routes)
        self._flush_timeout = flush_timeout
        self._redactor = redactor if redactor is not None else Redactor()
        self._clock = clock
        self._lock = threading.Lock()
        self._unknown: Counter[str] = Counter()
        self._errors: dict[str, None] = {}
        self._workers = {
            name: ChannelWorker(
                name,
                sender,
                window=window,
                send_timeout=send_timeout,
                send_retries=send_retries,
                max_pending=max_pending,
                redactor=self._redactor,
                clock=clock,
                sleep=sleep,
            )
            for name, sender in senders.items()
        }

    @classmethod
    def from_config(
        cls,
        config: NotificationsConfig,
        *,
        environ: Mapping[str, str] = os.environ,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
        max_pending: int = 1000,
    ) -> Notifier:
        """Build the notifier of a recipe's ``notifications:`` block.

        ``${ENV_VAR}`` references in the channels are resolved from
        ``environ`` now, and every resolved value is added to the redactor.

        Args:
            config: The recipe's notification settings.
            environ: Where ``${ENV_VAR}`` references are looked up.
            redactor: The run's redactor (its key patterns are kept); ``None``
                starts from the default one.
            clock: Time in epoch seconds.
            sleep: Waits between send attempts.
            ssl_context: TLS settings for HTTPS and STARTTLS (a private CA, a
                client certificate); ``None`` trusts the system's certificates.
            max_pending: Messages allowed to wait per channel.

        Raises:
            MissingEnvVarError: a referenced variable is not set (names the
                variable and the channel).
            NotificationConfigError: a channel cannot work as configured, or a
                route names an unknown channel.
        """
        secrets: set[str] = set()
        senders: dict[str, Sender] = {}
        for name, channel in config.channels.items():
            resolved, used = resolve_channel(name, channel, environ)
            secrets.update(used)
            senders[name] = build_sender(name, resolved, ssl_context=ssl_context)
        base = redactor if redactor is not None else Redactor()
        return cls(
            senders,
            routes=config.routes,
            window=config.window,
            flush_timeout=config.flush_timeout,
            send_timeout=config.send_timeout,
            send_retries=config.send_retries,
            max_pending=max_pending,
            redactor=base.with_values(secrets),
            clock=clock,
            sleep=sleep,
        )

    @property
    def redactor(self) -> Redactor:
        """The redactor applied to messages, with the resolved ``${ENV_VAR}`` values."""
        return self._redactor

    @property
    def channels(self) -> tuple[str, ...]:
        """The names of the configured channels."""
        return tuple(self._workers)

    def notify(self, event: NotificationEvent) -> None:
        """Count ``event`` towards its channels' messages; cheap, thread-safe, never raises.

        A channel named only by the event's ``extra_channels`` that does not
        exist is reported as a failure of that channel name.
        """
        try:
            now = self._clock()
            for name in self._router.channels_for(event):
                worker = self._workers.get(name)
                if worker is None:
                    with self._lock:
                        self._unknown[name] += 1
                else:
                    worker.offer(event, now)
        except Exception as exc:  # telling must never break the run it tells about
            with self._lock:
                if len(self._errors) < MAX_ERRORS:
                    text = f"event not routed: {type(exc).__name__}: {exc}"
                    self._errors[self._redactor.redact_text(text)] = None

    def flush(self, timeout: float | None = None) -> DeliveryReport:
        """Send every open group and wait at most ``timeout`` seconds for delivery.

        ``timeout`` defaults to the configured ``flush_timeout``. The bound
        holds on the injected clock and in real time, whichever runs out
        first. Messages still queued when it runs out are not attempted
        later; one in flight may still complete after this returns.

        Returns:
            The report as it stands when the wait ends.
        """
        bound = self._flush_timeout if timeout is None else max(timeout, 0.0)
        deadline = self._clock() + bound
        real_deadline = time.monotonic() + bound
        for worker in self._workers.values():
            worker.start_flush(deadline)
        for worker in self._workers.values():
            worker.wait_idle(deadline, real_deadline)
        return self.report()

    def report(self) -> DeliveryReport:
        """Return delivery counts per channel as they stand, without waiting."""
        channels = {name: worker.report() for name, worker in self._workers.items()}
        with self._lock:
            for name, count in self._unknown.items():
                error = f"no notification channel is named {name!r}"
                channels[name] = ChannelReport(failed=count, errors=(error,))
            errors = tuple(self._errors)
        return DeliveryReport(channels=channels, errors=errors)

    def close(self) -> None:
        """Stop the channel threads; what was not flushed is dropped and reported.

        Waits at most :data:`CLOSE_TIMEOUT` real seconds in all for sends in
        flight. Calling it again does nothing.
        """
        end = time.monotonic() + CLOSE_TIMEOUT
        for worker in self._workers.values():
            worker.close(max(end - time.monotonic(), 0.0))

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
