"""The e-mail channel against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from framework0_errors.config.models import EmailChannel
from framework0_errors.notify import (
    DeliveryError,
    EmailSender,
    Message,
    NotificationConfigError,
    NotificationEvent,
)
from framework0_errors.redact import Redactor

from .conftest import (
    LOCALHOST,
    START,
    Certificate,
    MailSink,
    failed_event,
    make_record,
    running_smtp,
)


def channel(port: int, **changes: Any) -> EmailChannel:
    """E-mail settings for the test server."""
    values: dict[str, Any] = {
        "type": "email",
        "host": LOCALHOST,
        "port": port,
        "from": "framework0@example.com",
        "to": ["ops@example.com", "dev@example.com"],
    }
    values.update(changes)
    return EmailChannel.model_validate(values)


def message(event: NotificationEvent | None = None, count: int = 1) -> Message:
    """A message about a failed ``load_orders``."""
    event = event or failed_event(make_record(ConnectionError("orders API\ndown")))
    return Message.build(event, count=count, first=START, last=START + 30, redactor=Redactor())


def test_mail_carries_subject_headers_and_body(smtp_sink: MailSink) -> None:
    """The default subject, sender, recipients and a labelled plain-text body arrive."""
    EmailSender("mail", channel(smtp_sink.port)).send(message(count=2), timeout=5)

    (mail,) = smtp_sink.messages
    assert mail["Subject"] == "[framework0] orders.yaml: load_orders failed"
    assert mail["To"] == "ops@example.com, dev@example.com"
    assert mail["Message-ID"].endswith("@example.com>")
    assert smtp_sink.envelopes[0].rcpt_tos == ["ops@example.com", "dev@example.com"]
    body = mail.get_content().replace("\r\n", "\n")
    assert body.splitlines()[0].startswith("orders.yaml: step 'load_orders' failed after 3")
    assert "Message:     orders API\n             down" in body
    assert "Count:       2 (first 2023-11-14T22:13:20Z, last 2023-11-14T22:13:50Z)" in body
    assert "Breaker" not in body


def test_login_over_plain_smtp(smtp_sink: MailSink) -> None:
    """With a username, the sender logs in (here without TLS) before sending."""
    settings = channel(smtp_sink.port, username="mailer", password="s3cret-pass")
    EmailSender("mail", settings).send(message(), timeout=5)

    assert smtp_sink.logins == [("mailer", "s3cret-pass")]
    assert len(smtp_sink.messages) == 1


def test_rejected_login_is_not_retried(smtp_sink: MailSink) -> None:
    """A rejected login is a failure that another attempt cannot fix; the text hides the login."""
    settings = channel(smtp_sink.port, username="mailer", password="wrong-pass")
    with pytest.raises(DeliveryError, match=r"login rejected \(535\)") as caught:
        EmailSender("mail", settings).send(message(), timeout=5)
    assert not caught.value.retryable
    assert "wrong-pass" not in str(caught.value)
    assert smtp_sink.messages == []


def test_starttls_with_a_self_signed_certificate(certificate: Certificate) -> None:
    """STARTTLS upgrades the connection (the certificate is checked) before the login."""
    with running_smtp(tls_context=certificate.server_context(), require_starttls=True) as sink:
        settings = channel(sink.port, starttls=True, username="mailer", password="s3cret-pass")
        sender = EmailSender("mail", settings, ssl_context=certificate.client_context())
        sender.send(message(), timeout=5)

    assert sink.logins == [("mailer", "s3cret-pass")]
    assert len(sink.messages) == 1


def test_starttls_refuses_an_untrusted_certificate(certificate: Certificate) -> None:
    """A certificate the client does not trust fails the send, without a retry."""
    with running_smtp(tls_context=certificate.server_context(), require_starttls=True) as sink:
        sender = EmailSender("mail", channel(sink.port, starttls=True))
        with pytest.raises(DeliveryError, match="certificate") as caught:
            sender.send(message(), timeout=5)
    assert not caught.value.retryable
    assert sink.messages == []


def test_starttls_against_a_server_without_tls(smtp_sink: MailSink) -> None:
    """A server that does not offer STARTTLS fails the send, without a retry."""
    with pytest.raises(DeliveryError, match="STARTTLS") as caught:
        EmailSender("mail", channel(smtp_sink.port, starttls=True)).send(message(), timeout=5)
    assert not caught.value.retryable


def test_refused_recipient_is_not_retried(smtp_sink: MailSink) -> None:
    """A recipient the server refuses (550) is a permanent failure."""
    settings = channel(smtp_sink.port, to=["nobody@example.com"])
    with pytest.raises(DeliveryError, match=r"nobody@example\.com") as caught:
        EmailSender("mail", settings).send(message(), timeout=5)
    assert not caught.value.retryable


@pytest.mark.parametrize(("reply", "retryable"), [("451 try again later", True), ("554 no", False)])
def test_data_rejection_is_retried_only_when_temporary(
    reply: str, retryable: bool, smtp_sink: MailSink
) -> None:
    """A 4xx answer to the mail is worth retrying; a 5xx is not."""
    smtp_sink.data_reply = reply
    with pytest.raises(DeliveryError, match=reply) as caught:
        EmailSender("mail", channel(smtp_sink.port)).send(message(), timeout=5)
    assert caught.value.retryable is retryable


def test_unreachable_server_is_retryable(closed_port: int) -> None:
    """A refused connection may work next time."""
    with pytest.raises(DeliveryError, match=f"SMTP {LOCALHOST}:{closed_port}") as caught:
        EmailSender("mail", channel(closed_port)).send(message(), timeout=5)
    assert caught.value.retryable


def test_subject_is_one_clipped_line() -> None:
    """Line breaks in subject fields are flattened and long subjects clipped."""
    record = make_record(ConnectionError("x"), step="a\nb" + "c" * 400)
    sender = EmailSender("mail", channel(25, subject="{step}"))
    subject = str(sender.compose(message(failed_event(record)))["Subject"])
    assert "\n" not in subject
    assert subject.startswith("a b")
    assert len(subject) == 250


def test_subject_shows_a_dash_for_missing_fields() -> None:
    """Fields that do not apply, such as the severity of a breaker event, show as ``-``."""
    event = NotificationEvent("r.yaml", None, "run-1", "breaker_opened", None, breaker="api")
    sender = EmailSender("mail", channel(25, subject="{breaker} {outcome} {severity} {step}"))
    assert sender.compose(message(event))["Subject"] == "api breaker_opened - -"


@pytest.mark.parametrize(
    ("subject", "complaint"),
    [
        ("{recipe} {password}", "uses 'password'"),
        ("{}", "uses ''"),
        ("{recipe.__class__}", "uses 'recipe.__class__'"),
        ("{recipe", "malformed"),
        ("{count:d}", "Unknown format code"),
    ],
)
def test_bad_subject_templates_are_refused(subject: str, complaint: str) -> None:
    """Subject templates may only use the documented fields, as text."""
    with pytest.raises(NotificationConfigError, match="'mail'") as caught:
        EmailSender("mail", channel(25, subject=subject))
    assert complaint in str(caught.value)
