"""The notifier's guarantees: never raising, bounded waits, budgets and honest reports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from framework0_errors.config.models import NotificationsConfig, Route
from framework0_errors.notify import (
    DeliveryError,
    DeliveryReport,
    Message,
    MissingEnvVarError,
    NotificationConfigError,
    NotificationEvent,
    Notifier,
)
from framework0_errors.notify.report import ChannelReport
from framework0_errors.records import ErrorRecord
from framework0_errors.redact import Redactor

from .conftest import FakeClock, HttpSink, failed_event, make_record

EVERYTHING = [Route.model_validate({"channels": ["c"]})]


class ScriptedSender:
    """Answers each attempt from a script (``None`` delivers), advancing the fake clock."""

    def __init__(
        self,
        script: list[BaseException | None],
        clock: FakeClock,
        *,
        takes: float = 0.0,
        timeout: float | None = 3.0,
    ) -> None:
        self.script = script
        self.clock = clock
        self.takes = takes
        self.timeout = timeout
        self.calls: list[tuple[Message, float]] = []

    def send(self, message: Message, *, timeout: float) -> None:
        self.calls.append((message, timeout))
        self.clock.advance(self.takes)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome


class BlockingSender:
    """Blocks each send until released, like a server that hangs."""

    timeout: float | None = 30.0

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.sent: list[Message] = []

    def send(self, message: Message, *, timeout: float) -> None:
        self.started.set()
        self.release.wait(10)
        self.sent.append(message)


@pytest.fixture
def notifiers() -> Iterator[Callable[..., Notifier]]:
    """Build notifiers from senders; all are closed after the test."""
    made: list[Notifier] = []

    def build(senders: dict[str, Any], **kwargs: Any) -> Notifier:
        kwargs.setdefault("routes", EVERYTHING)
        notifier = Notifier(senders, **kwargs)
        made.append(notifier)
        return notifier

    yield build
    for notifier in made:
        notifier.close()


def event(text: str = "down", **changes: Any) -> NotificationEvent:
    """A failure whose fingerprint follows ``text``."""
    return failed_event(make_record(ConnectionError(text)), **changes)


def retryable() -> DeliveryError:
    return DeliveryError("503", retryable=True)


def test_send_timeout_is_a_budget_across_attempts(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """Attempts get min(channel timeout, budget left); no retry starts past the budget."""
    sender = ScriptedSender([retryable()] * 10, clock, takes=4.0, timeout=3.0)
    notifier = notifiers(
        {"c": sender}, send_timeout=10, send_retries=5, clock=clock, sleep=clock.sleep
    )
    notifier.notify(event())
    report = notifier.flush(timeout=60)

    assert [t for _, t in sender.calls] == pytest.approx([3.0, 3.0, 1.4])
    assert clock.sleeps == [0.2, 0.4]
    assert report.channels["c"] == ChannelReport(failed=1, errors=("503",))


def test_the_flush_deadline_cuts_attempts_and_retries(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """On the injected clock, no attempt or backoff runs past the flush deadline."""
    sender = ScriptedSender([retryable()] * 10, clock, takes=0.5, timeout=None)
    notifier = notifiers({"c": sender}, send_retries=5, clock=clock, sleep=clock.sleep)
    start = clock()
    notifier.notify(event())
    report = notifier.flush(timeout=1.0)

    assert [t for _, t in sender.calls] == pytest.approx([1.0, 0.3])
    assert clock() - start == pytest.approx(1.2)  # the last attempt itself overran
    assert report.channels["c"].failed == 1


def test_flush_is_bounded_in_real_time_and_abandons_the_rest(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """A hanging channel: flush returns after its bound; queued messages are not sent later."""
    sender = BlockingSender()
    notifier = notifiers({"c": sender}, flush_timeout=0.2, clock=clock, sleep=clock.sleep)
    notifier.notify(event("first"))
    notifier.notify(event("second failure", step="other"))

    started = time.perf_counter()
    report = notifier.flush()  # the configured flush_timeout; the fake clock stands still
    assert time.perf_counter() - started < 2.0
    assert report.channels["c"] == ChannelReport(undelivered=2)

    clock.advance(1.0)  # the deadline has passed on the injected clock too
    sender.release.set()
    report = notifier.flush(timeout=5.0)
    assert len(sender.sent) == 1
    assert report.channels["c"] == ChannelReport(
        sent=1, errors=("messages left unsent: the flush bound ran out",), undelivered=1
    )


def test_close_is_bounded_while_a_send_hangs(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """close() waits about a second at most; the hanging message stays undelivered."""
    sender = BlockingSender()
    notifier = notifiers({"c": sender}, clock=clock, sleep=clock.sleep)
    notifier.notify(event())
    notifier.flush(timeout=0.1)  # real time: the fake clock stands still
    assert sender.started.wait(5)

    started = time.perf_counter()
    notifier.close()
    assert time.perf_counter() - started < 3.0
    assert notifier.flush(timeout=5.0).channels["c"].undelivered == 1  # returns at once
    sender.release.set()


def test_close_drops_what_was_not_flushed(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """Open groups at close, and events after it, are reported undelivered."""
    sender = ScriptedSender([], clock)
    with notifiers({"c": sender}, clock=clock, sleep=clock.sleep) as notifier:
        notifier.notify(event("one"))
        notifier.notify(event("two", step="other"))
    notifier.close()  # a second close does nothing
    notifier.notify(event("three"))

    assert sender.calls == []
    assert notifier.report().channels["c"] == ChannelReport(
        errors=(
            "messages dropped: the notifier was closed before flush",
            "events arrived after the notifier was closed",
        ),
        undelivered=3,
    )


def test_too_many_waiting_messages_drop_new_keys_only(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """Past ``max_pending``, events of new keys are dropped; repeats still count."""
    sender = ScriptedSender([], clock)
    notifier = notifiers({"c": sender}, max_pending=2, clock=clock, sleep=clock.sleep)
    for text, step in [("a", "s1"), ("b", "s2"), ("c", "s3"), ("a", "s1")]:
        notifier.notify(event(text, step=step))
    report = notifier.flush(timeout=5.0)

    assert [m.fields["count"] for m, _ in sender.calls] == [2, 1]
    assert report.channels["c"] == ChannelReport(
        sent=2, errors=("events dropped: 2 messages already waiting",), undelivered=1
    )


def test_unknown_step_channels_are_reported(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """A ``notify:`` channel that does not exist shows up as failures of that name."""
    notifier = notifiers({"c": ScriptedSender([], clock)}, routes=[], clock=clock)
    notifier.notify(event(extra_channels=("c", "nope")))
    notifier.notify(event(extra_channels=("nope",)))
    report = notifier.flush(timeout=5.0)

    assert report.channels["c"].sent == 1
    assert report.channels["nope"] == ChannelReport(
        failed=2, errors=("no notification channel is named 'nope'",)
    )
    assert not report.ok


def test_notify_never_raises(clock: FakeClock, notifiers: Callable[..., Notifier]) -> None:
    """An event that breaks routing is reported, not raised into the step."""
    broken = cast(ErrorRecord, SimpleNamespace(severity="HIGH", fingerprint="f"))
    routes = [Route.model_validate({"match": {"min_severity": "LOW"}, "channels": ["c"]})]
    notifier = notifiers({"c": ScriptedSender([], clock)}, routes=routes, clock=clock)
    notifier.notify(NotificationEvent("r", "s", "run", "failed", broken))
    report = notifier.report()

    (error,) = report.errors
    assert error.startswith("event not routed: TypeError")
    assert report.to_dict()["errors"] == [error]


def test_notifier_errors_are_bounded(clock: FakeClock, notifiers: Callable[..., Notifier]) -> None:
    """At most ten distinct routing errors are kept."""
    routes = [Route.model_validate({"match": {"min_severity": "LOW"}, "channels": ["c"]})]
    notifier = notifiers({"c": ScriptedSender([], clock)}, routes=routes, clock=clock)
    severities: list[object] = [
        "x",
        1,
        1.5,
        b"x",
        (),
        [],
        {},
        set(),
        frozenset(),
        1j,
        None,
        object(),
    ]
    for severity in severities:
        broken = cast(ErrorRecord, SimpleNamespace(severity=severity, fingerprint="f"))
        notifier.notify(NotificationEvent("r", "s", "run", "failed", broken))
    assert len(notifier.report().errors) == 10


def test_a_message_that_cannot_be_built_is_a_failure(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """A malformed record fails its message; the channel's thread goes on."""
    broken = cast(ErrorRecord, SimpleNamespace(fingerprint="f", attempt=1, exception_type="E"))
    sender = ScriptedSender([], clock)
    notifier = notifiers({"c": sender}, clock=clock, sleep=clock.sleep)
    notifier.notify(NotificationEvent("r", "s", "run", "failed", broken))
    notifier.notify(event())
    report = notifier.flush(timeout=5.0)

    assert report.channels["c"].sent == 1
    assert report.channels["c"].failed == 1
    assert report.channels["c"].errors[0].startswith("message could not be built: AttributeError")


def test_an_unexpected_sender_error_is_not_retried(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """A sender raising something other than DeliveryError fails the message at once."""
    sender = ScriptedSender([RuntimeError("boom"), None], clock)
    notifier = notifiers({"c": sender}, clock=clock, sleep=clock.sleep)
    notifier.notify(event())
    report = notifier.flush(timeout=5.0)

    assert len(sender.calls) == 1
    assert report.channels["c"] == ChannelReport(failed=1, errors=("RuntimeError: boom",))


def test_error_texts_are_redacted_and_bounded(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """Error texts pass the redactor; at most ten distinct ones are kept."""
    errors: list[BaseException | None] = [
        DeliveryError(f"denied for tok-secret-{i}", retryable=False) for i in range(12)
    ]
    sender = ScriptedSender(errors, clock)
    redactor = Redactor(secret_values=[f"tok-secret-{i}" for i in range(12)])
    notifier = notifiers({"c": sender}, redactor=redactor, clock=clock, sleep=clock.sleep)
    for i in range(12):
        notifier.notify(event(f"error {'x' * i}"))  # twelve distinct fingerprints
    channel = notifier.flush(timeout=5.0).channels["c"]

    assert channel.failed == 12
    assert channel.errors == ("denied for ***",)
    assert notifier.redactor is redactor


def test_at_most_ten_distinct_errors_are_kept(
    clock: FakeClock, notifiers: Callable[..., Notifier]
) -> None:
    """The report keeps the first ten distinct error texts of a channel."""
    errors: list[BaseException | None] = [
        DeliveryError(f"rejected #{i}", retryable=False) for i in range(12)
    ]
    notifier = notifiers({"c": ScriptedSender(errors, clock)}, clock=clock, sleep=clock.sleep)
    for i in range(12):
        notifier.notify(event(f"error {'x' * i}"))
    channel = notifier.flush(timeout=5.0).channels["c"]
    assert channel.failed == 12
    assert channel.errors == tuple(f"rejected #{i}" for i in range(10))


def test_from_config_resolves_secrets_into_the_redactor(http_sink: HttpSink) -> None:
    """Resolved ``${ENV_VAR}`` values join the given redactor, whose key patterns stay."""
    config = NotificationsConfig.model_validate(
        {
            "channels": {
                "hook": {"type": "webhook", "url": http_sink.url("/${HOOK_ID}")},
                "log": {"type": "log"},
            },
            "routes": [{"channels": ["hook"]}],
        }
    )
    base = Redactor(key_patterns=["pin"])
    with Notifier.from_config(config, environ={"HOOK_ID": "hook-id-77"}, redactor=base) as notifier:
        assert notifier.channels == ("hook", "log")
        assert notifier.redactor.secret_values == {"hook-id-77"}
        assert notifier.redactor.key_patterns == ("pin",)


def test_from_config_refuses_a_missing_variable() -> None:
    """A missing variable fails the build with the variable and channel named; no thread starts."""
    config = NotificationsConfig.model_validate(
        {
            "channels": {
                "log": {"type": "log"},
                "ops_slack": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"},
            }
        }
    )
    before = threading.active_count()
    with pytest.raises(MissingEnvVarError, match=r"'ops_slack'.*'SLACK_WEBHOOK_URL'"):
        Notifier.from_config(config, environ={})
    assert threading.active_count() == before


def test_routes_must_name_configured_channels() -> None:
    """A route to an unknown channel is refused when the notifier is built."""
    config = NotificationsConfig.model_validate({"routes": [{"channels": ["ops"]}]})
    with pytest.raises(NotificationConfigError, match="route 0 names unknown channel 'ops'"):
        Notifier.from_config(config)


def test_report_json_form() -> None:
    """The report serialises per channel, plus notifier-level errors."""
    report = DeliveryReport(
        channels={"a": ChannelReport(sent=2), "b": ChannelReport(failed=1, errors=("x",))},
        errors=(),
    )
    assert report.to_dict() == {
        "channels": {
            "a": {"sent": 2, "failed": 0, "errors": [], "undelivered": 0},
            "b": {"sent": 0, "failed": 1, "errors": ["x"], "undelivered": 0},
        },
        "errors": [],
    }
    assert not report.ok
    assert DeliveryReport(channels={"a": ChannelReport(sent=1)}).ok
    assert not DeliveryReport(errors=("e",)).ok
