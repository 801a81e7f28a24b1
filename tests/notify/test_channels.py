"""Channel senders one by one: log records, webhook posts and the Slack payload."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import pytest

from framework0_errors.categories import ErrorCategory
from framework0_errors.config.models import EmailChannel, LogChannel, SlackChannel, WebhookChannel
from framework0_errors.notify import (
    DeliveryError,
    EmailSender,
    LogSender,
    Message,
    NotificationConfigError,
    NotificationEvent,
    SlackSender,
    WebhookSender,
    build_sender,
    slack_payload,
)
from framework0_errors.redact import Redactor

from .conftest import LOCALHOST, START, HttpSink, failed_event, make_record


def message(event: NotificationEvent | None = None, count: int = 1) -> Message:
    """A message about a failed ``load_orders``, unless another event is given."""
    event = event or failed_event(make_record(ConnectionError("orders API down")))
    return Message.build(event, count=count, first=START, last=START, redactor=Redactor())


def test_log_channel_writes_one_structured_record(caplog: pytest.LogCaptureFixture) -> None:
    """The record's message is the summary; its ``notification`` extra holds the fields."""
    sender = LogSender(logger="acme.alerts", level="CRITICAL")
    with caplog.at_level(logging.DEBUG, logger="acme.alerts"):
        sender.send(message(), timeout=1)

    (record,) = caplog.records
    assert (record.name, record.levelno) == ("acme.alerts", logging.CRITICAL)
    assert record.getMessage().startswith("orders.yaml: step 'load_orders' failed")
    fields: dict[str, Any] = record.notification  # type: ignore[attr-defined]
    assert fields["error_message"] == "orders API down"
    assert fields["step"] == "load_orders"
    assert sender.timeout is None


def test_webhook_posts_the_fields_with_its_headers(http_sink: HttpSink) -> None:
    """The body is the message's JSON fields; configured headers win over the defaults."""
    sender = WebhookSender(
        "hook",
        url=http_sink.url("/in"),
        headers={"X-Team": "ops", "User-Agent": "acme"},
        timeout=5,
        ssl_context=None,
    )
    sender.send(message(count=7), timeout=5)

    (request,) = http_sink.requests
    assert request.path == "/in"
    assert request.headers["X-Team"] == "ops"
    assert request.headers["User-Agent"] == "acme"
    assert request.json["count"] == 7
    assert request.json["summary"].endswith(
        "(7 times, 2023-11-14T22:13:20Z to 2023-11-14T22:13:20Z)"
    )


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (408, True), (403, False)])
def test_webhook_statuses_decide_retryability(
    status: int, retryable: bool, http_sink: HttpSink
) -> None:
    """5xx, 408, 425 and 429 may pass next time; other 4xx will not."""
    http_sink.statuses.append(status)
    sender = WebhookSender("hook", url=http_sink.url(), headers={}, timeout=5, ssl_context=None)
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        sender.send(message(), timeout=5)
    assert caught.value.retryable is retryable


def test_webhook_timeout_is_retryable(silent_port: int) -> None:
    """A server that does not answer in time fails the attempt, retryably."""
    url = f"http://{LOCALHOST}:{silent_port}/x"
    sender = WebhookSender("hook", url=url, headers={}, timeout=5, ssl_context=None)
    with pytest.raises(DeliveryError, match="timed out") as caught:
        sender.send(message(), timeout=0.1)
    assert caught.value.retryable


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "127.0.0.1:80/hook", "http:///nohost"]
)
def test_http_channels_need_an_http_url(url: str) -> None:
    """Only http(s) URLs with a host are accepted (urllib would also read files)."""
    with pytest.raises(NotificationConfigError, match=r"'hook'.*http:// or https://"):
        WebhookSender("hook", url=url, headers={}, timeout=5, ssl_context=None)


def test_slack_posts_text_and_blocks(http_sink: HttpSink) -> None:
    """Slack receives ``text`` (the summary) and ``blocks``."""
    sender = SlackSender(
        "slack", url=http_sink.url("/services/T0/B0/xyz"), timeout=5, ssl_context=None
    )
    sender.send(message(), timeout=5)

    (request,) = http_sink.requests
    assert set(request.json) == {"text", "blocks"}


def test_slack_payload_is_readable_and_escaped() -> None:
    """Summary in bold, labelled fields, the error as code, the hint as context; <>& escaped."""
    record = make_record(ValueError("bad <row> & `code`"), category=ErrorCategory.VALIDATION)
    payload = slack_payload(message(failed_event(record)))

    summary, fields, error, hint = payload["blocks"]
    assert summary["text"]["text"].startswith("*orders.yaml: step 'load_orders' failed")
    assert "&lt;row&gt; &amp;" in summary["text"]["text"]
    labels = [f["text"].split("\n")[0] for f in fields["fields"]]
    assert labels == [
        "*Recipe*", "*Step*", "*Run*", "*Outcome*", "*Severity*",
        "*Category*", "*Attempts*", "*Count*", "*First*", "*Last*",
    ]  # fmt: skip
    assert error["text"]["text"] == "*Error*\n```ValueError: bad &lt;row&gt; &amp; 'code'```"
    assert hint == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "Hint: Check that the orders API is up"}],
    }
    assert payload["text"] == message(failed_event(record)).summary


def test_slack_payload_of_a_breaker_event() -> None:
    """A breaker event shows the breaker instead of the step, and no error or hint."""
    event = NotificationEvent("r.yaml", "s", "run-1", "breaker_opened", None, breaker="api")
    blocks = slack_payload(message(event))["blocks"]
    assert len(blocks) == 2
    labels = [f["text"].split("\n")[0] for f in blocks[1]["fields"]]
    assert labels == ["*Recipe*", "*Breaker*", "*Run*", "*Outcome*", "*Count*", "*First*", "*Last*"]


def test_slack_payload_respects_slack_limits() -> None:
    """Long texts are clipped under Slack's per-block limits."""
    record = make_record(RuntimeError("x" * 1900), hint="h" * 5000, step="s" * 1900)
    blocks = slack_payload(message(failed_event(record)))["blocks"]
    assert len(blocks[0]["text"]["text"]) <= 3000
    assert all(len(f["text"]) <= 2000 for f in blocks[1]["fields"])
    assert len(blocks[2]["text"]["text"]) <= 3000
    assert len(blocks[3]["elements"][0]["text"]) <= 2000


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({"type": "log"}, LogSender),
        ({"type": "webhook", "url": "https://hooks.example.com/x"}, WebhookSender),
        ({"type": "slack", "webhook_url": "https://hooks.slack.com/x"}, SlackSender),
        ({"type": "email", "host": "smtp", "from": "a@b.c", "to": ["d@e.f"]}, EmailSender),
    ],
)
def test_build_sender_picks_the_channel_kind(settings: dict[str, Any], kind: type) -> None:
    """Each channel type gets its sender; an SSL context is accepted by all of them."""
    models: dict[str, Any] = {
        "log": LogChannel,
        "webhook": WebhookChannel,
        "slack": SlackChannel,
        "email": EmailChannel,
    }
    channel = models[settings["type"]].model_validate(settings)
    sender = build_sender("c", channel, ssl_context=ssl.create_default_context())
    assert isinstance(sender, kind)
