"""End to end: events routed, aggregated and delivered to real servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from framework0_errors.notify import Notifier
from framework0_errors.redact import Redactor

from .conftest import LOCALHOST, START, FakeClock, HttpSink, MailSink, failed_event, make_record

ARG_SECRET = "pg-password-7781"
ENV_TOKEN = "tok-ENV-5f3a9c"


def all_channels(http_sink: HttpSink, smtp_sink: MailSink, **extra: Any) -> dict[str, Any]:
    """A notifications block with a webhook, a Slack hook and an e-mail channel."""
    return {
        "channels": {
            "ops_hook": {
                "type": "webhook",
                "url": http_sink.url("/hook"),
                "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},
            },
            "ops_slack": {"type": "slack", "webhook_url": "${SLACK_URL}"},
            "ops_mail": {
                "type": "email",
                "host": LOCALHOST,
                "port": smtp_sink.port,
                "from": "framework0@example.com",
                "to": ["ops@example.com"],
                "subject": "[{severity}] {recipe}: {step} {outcome} x{count} ({run_id})",
            },
        },
        "routes": [{"match": {"min_severity": "HIGH"}, "channels": ["ops_hook", "ops_slack"]}],
        **extra,
    }


def test_failed_step_reaches_every_channel_once_without_secrets(
    http_sink: HttpSink,
    smtp_sink: MailSink,
    clock: FakeClock,
    build_notifier: Callable[..., Notifier],
) -> None:
    """A final failure routed to webhook, Slack and e-mail arrives once at each, secret-free."""
    environ = {"HOOK_TOKEN": ENV_TOKEN, "SLACK_URL": http_sink.url("/slack")}
    args = {"dsn": "postgres://db", "password": ARG_SECRET}
    error = ConnectionError(f"login to db with {ARG_SECRET} failed; token {ENV_TOKEN} refused")
    record = make_record(error, redactor=Redactor.for_args(args))
    notifier = build_notifier(
        all_channels(http_sink, smtp_sink), environ=environ, clock=clock, sleep=clock.sleep
    )

    notifier.notify(failed_event(record, extra_channels=("ops_mail",)))
    report = notifier.flush(timeout=5.0)

    assert report.ok, report.to_dict()
    assert sorted(r.path for r in http_sink.requests) == ["/hook", "/slack"]
    assert len(smtp_sink.messages) == 1
    hook = next(r for r in http_sink.requests if r.path == "/hook")
    slack = next(r for r in http_sink.requests if r.path == "/slack")
    mail = smtp_sink.messages[0]

    assert hook.headers["Authorization"] == f"Bearer {ENV_TOKEN}"
    assert hook.headers["Content-Type"].startswith("application/json")
    fields = hook.json
    assert fields["recipe"] == "orders.yaml"
    assert fields["step"] == "load_orders"
    assert fields["run_id"] == "run-42"
    assert fields["outcome"] == "failed"
    assert fields["error_type"] == "ConnectionError"
    assert fields["error_message"] == "login to db with *** failed; token *** refused"
    assert (fields["category"], fields["severity"]) == ("NETWORK", "HIGH")
    assert fields["attempts"] == 3
    assert fields["hint"] == "Check that the orders API is up"
    assert (fields["count"], fields["first"], fields["last"]) == (
        1,
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20Z",
    )

    payload = slack.json
    assert payload["text"] == fields["summary"]
    assert "load_orders" in payload["text"]
    assert "ConnectionError" in json.dumps(payload["blocks"])
    assert payload["blocks"][-1]["type"] == "context"

    assert mail["Subject"] == "[HIGH] orders.yaml: load_orders failed x1 (run-42)"
    assert mail["From"] == "framework0@example.com"
    assert smtp_sink.envelopes[0].rcpt_tos == ["ops@example.com"]
    text = mail.get_content()
    assert "Run id:      run-42" in text
    assert "Hint:        Check that the orders API is up" in text

    for body in [*http_sink.bodies(), mail.as_string()]:
        assert ARG_SECRET not in body
        assert ENV_TOKEN not in body
    assert ENV_TOKEN not in json.dumps(report.to_dict())


def test_storm_of_one_fingerprint_is_one_message_per_channel(
    http_sink: HttpSink,
    smtp_sink: MailSink,
    clock: FakeClock,
    build_notifier: Callable[..., Notifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,000 identical failures inside a window make one message per channel with count 1,000."""
    config = all_channels(http_sink, smtp_sink, window=60)
    config["channels"]["ops_log"] = {"type": "log", "logger": "test.storm", "level": "WARNING"}
    config["routes"] = [{"channels": ["ops_hook", "ops_slack", "ops_mail", "ops_log"]}]
    environ = {"HOOK_TOKEN": ENV_TOKEN, "SLACK_URL": http_sink.url("/slack")}
    notifier = build_notifier(config, environ=environ, clock=clock, sleep=clock.sleep)

    for attempt in range(1000):
        record = make_record(TimeoutError(f"read timed out after {attempt} ms"), when=clock())
        notifier.notify(failed_event(record))
        clock.advance(0.05)  # 1,000 events over 50 seconds: all inside the window
    with caplog.at_level(logging.WARNING, logger="test.storm"):
        report = notifier.flush(timeout=5.0)

    assert {name: c.sent for name, c in report.channels.items()} == dict.fromkeys(
        ["ops_hook", "ops_slack", "ops_mail", "ops_log"], 1
    )
    assert len(http_sink.requests) == 2
    assert len(smtp_sink.messages) == 1
    hook = next(r for r in http_sink.requests if r.path == "/hook").json
    assert hook["count"] == 1000
    assert (hook["first"], hook["last"]) == ("2023-11-14T22:13:20Z", "2023-11-14T22:14:09Z")
    assert "1000 times" in next(r for r in http_sink.requests if r.path == "/slack").json["text"]
    assert smtp_sink.messages[0]["Subject"].endswith("failed x1000 (run-42)")
    (log_record,) = [r for r in caplog.records if r.name == "test.storm"]
    assert log_record.notification["count"] == 1000  # type: ignore[attr-defined]


def test_unreachable_webhook_is_reported_within_the_flush_bound(
    closed_port: int, clock: FakeClock, build_notifier: Callable[..., Notifier]
) -> None:
    """A webhook on a closed port: notify returns at once, flush keeps its bound and reports."""
    config = {
        "channels": {"hook": {"type": "webhook", "url": f"http://{LOCALHOST}:{closed_port}/x"}},
        "routes": [{"channels": ["hook"]}],
        "send_retries": 2,
    }
    notifier = build_notifier(config, clock=clock, sleep=clock.sleep)
    record = make_record(ConnectionError("orders API down"))

    started = time.perf_counter()
    notifier.notify(failed_event(record))
    notified = time.perf_counter() - started
    report = notifier.flush(timeout=1.0)
    flushed = time.perf_counter() - started

    assert clock() - START <= 1.0  # the injected clock: retries waited inside the bound
    assert clock.sleeps == [0.2, 0.4]
    assert notified < 0.5
    assert flushed < 3.0  # generous wall-time sanity bound for a real socket
    channel = report.channels["hook"]
    assert (channel.sent, channel.failed, channel.undelivered) == (0, 1, 0)
    (error,) = channel.errors
    assert f"POST http://{LOCALHOST}:{closed_port}" in error
    assert "refused" in error.lower()
    assert not report.ok


@pytest.mark.parametrize(
    ("match", "sent"),
    [
        ({}, 1),
        ({"min_severity": "HIGH"}, 1),
        ({"min_severity": "CRITICAL"}, 0),
        ({"severity": ["LOW", "HIGH"]}, 1),
        ({"categories": ["SECURITY"]}, 0),
        ({"steps": ["load_orders"], "outcomes": ["failed"]}, 1),
        ({"steps": ["other"]}, 0),
    ],
)
def test_routes_decide_what_a_channel_receives(
    match: dict[str, Any],
    sent: int,
    http_sink: HttpSink,
    clock: FakeClock,
    build_notifier: Callable[..., Notifier],
) -> None:
    """Only events matching a route reach its channel."""
    config = {
        "channels": {"hook": {"type": "webhook", "url": http_sink.url()}},
        "routes": [{"match": match, "channels": ["hook"]}],
    }
    notifier = build_notifier(config, clock=clock, sleep=clock.sleep)
    notifier.notify(failed_event(make_record(ConnectionError("down"))))
    assert notifier.flush(timeout=5.0).channels["hook"].sent == sent
    assert len(http_sink.requests) == sent


def test_a_closed_window_is_sent_without_flush(
    http_sink: HttpSink, build_notifier: Callable[..., Notifier]
) -> None:
    """The sender thread sends a group once its window closes, with the count so far."""
    config = {
        "channels": {"hook": {"type": "webhook", "url": http_sink.url()}},
        "routes": [{"channels": ["hook"]}],
        "window": 0.2,
    }
    notifier = build_notifier(config)  # the real clock: the window really closes
    record = make_record(ConnectionError("down"))
    for _ in range(3):
        notifier.notify(failed_event(record))

    assert http_sink.wait_for(1)
    assert http_sink.requests[0].json["count"] == 3
    assert notifier.flush(timeout=5.0).channels["hook"].sent == 1  # nothing left to send
    assert len(http_sink.requests) == 1


def test_an_event_after_the_window_opens_a_new_group(
    http_sink: HttpSink, clock: FakeClock, build_notifier: Callable[..., Notifier]
) -> None:
    """Repeats after the window closed start a new message; each carries its own count."""
    config = {
        "channels": {"hook": {"type": "webhook", "url": http_sink.url()}},
        "routes": [{"channels": ["hook"]}],
        "window": 10,
    }
    notifier = build_notifier(config, clock=clock, sleep=clock.sleep)
    record = make_record(ConnectionError("down"))
    for _ in range(4):
        notifier.notify(failed_event(record))
    clock.advance(10)
    notifier.notify(failed_event(record))  # closes the first window and opens another

    assert http_sink.wait_for(1)
    report = notifier.flush(timeout=5.0)
    assert [r.json["count"] for r in http_sink.requests] == [4, 1]
    assert report.channels["hook"].sent == 2


def test_breaker_events_group_by_breaker_and_outcome(
    http_sink: HttpSink, clock: FakeClock, build_notifier: Callable[..., Notifier]
) -> None:
    """Breaker events aggregate per breaker name and outcome, without an error record."""
    config = {
        "channels": {"hook": {"type": "webhook", "url": http_sink.url()}},
        "routes": [
            {"match": {"outcomes": ["breaker_opened", "breaker_closed"]}, "channels": ["hook"]}
        ],
    }
    notifier = build_notifier(config, clock=clock, sleep=clock.sleep)
    from framework0_errors.notify import NotificationEvent

    def breaker(name: str, outcome: str) -> NotificationEvent:
        return NotificationEvent("r.yaml", "s", "run-1", outcome, None, breaker=name)

    for event in [breaker("api", "breaker_opened")] * 3 + [
        breaker("api", "breaker_closed"),
        breaker("db", "breaker_opened"),
    ]:
        notifier.notify(event)
    notifier.flush(timeout=5.0)

    got = sorted(
        (r.json["breaker"], r.json["outcome"], r.json["count"]) for r in http_sink.requests
    )
    assert got == [
        ("api", "breaker_closed", 1),
        ("api", "breaker_opened", 3),
        ("db", "breaker_opened", 1),
    ]
    assert http_sink.requests[0].json["summary"].startswith("r.yaml: circuit breaker")


def test_retries_use_the_injected_sleep_until_a_send_succeeds(
    http_sink: HttpSink, clock: FakeClock, build_notifier: Callable[..., Notifier]
) -> None:
    """A 503 then a 429 are retried after 0.2 s and 0.4 s; the third attempt is delivered."""
    http_sink.statuses.extend([503, 429])
    config = {
        "channels": {"hook": {"type": "webhook", "url": http_sink.url()}},
        "routes": [{"channels": ["hook"]}],
        "send_retries": 2,
    }
    notifier = build_notifier(config, clock=clock, sleep=clock.sleep)
    notifier.notify(failed_event(make_record(ConnectionError("down"))))
    report = notifier.flush(timeout=5.0)

    assert clock.sleeps == [0.2, 0.4]
    assert len(http_sink.requests) == 3
    assert report.channels["hook"].to_dict() == {
        "sent": 1,
        "failed": 0,
        "errors": [],
        "undelivered": 0,
    }


@pytest.mark.parametrize("status", [400, 404, 301])
def test_client_errors_are_not_retried(
    status: int, http_sink: HttpSink, clock: FakeClock, build_notifier: Callable[..., Notifier]
) -> None:
    """HTTP 4xx and redirects fail at once: no retry, no redirect followed."""
    http_sink.statuses.append(status)
    config = {
        "channels": {"hook": {"type": "webhook", "url": http_sink.url("/hook?key=abc")}},
        "routes": [{"channels": ["hook"]}],
    }
    notifier = build_notifier(config, clock=clock, sleep=clock.sleep)
    notifier.notify(failed_event(make_record(ConnectionError("down"))))
    channel = notifier.flush(timeout=5.0).channels["hook"]

    assert clock.sleeps == []
    assert [r.path for r in http_sink.requests] == ["/hook?key=abc"]
    assert channel.failed == 1
    (error,) = channel.errors
    assert error.startswith(f"POST http://{LOCALHOST}:{http_sink.port}: HTTP {status}")
    assert "key=abc" not in error


def test_a_silent_server_costs_one_channel_timeout_per_attempt(
    silent_port: int, http_sink: HttpSink, build_notifier: Callable[..., Notifier]
) -> None:
    """A server that never answers times out per attempt; other channels are not delayed."""
    config = {
        "channels": {
            "slow": {
                "type": "webhook",
                "url": f"http://{LOCALHOST}:{silent_port}/",
                "timeout": 0.2,
            },
            "fast": {"type": "webhook", "url": http_sink.url()},
        },
        "routes": [{"channels": ["slow", "fast"]}],
        "send_retries": 0,
    }
    sleeps: list[float] = []
    notifier = build_notifier(config, sleep=sleeps.append)
    notifier.notify(failed_event(make_record(ConnectionError("down"))))
    assert http_sink.wait_for(0)
    report = notifier.flush(timeout=5.0)

    assert report.channels["fast"].sent == 1
    slow = report.channels["slow"]
    assert (slow.failed, slow.undelivered) == (1, 0)
    assert "timed out" in slow.errors[0]
