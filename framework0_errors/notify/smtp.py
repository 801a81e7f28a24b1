"""The e-mail channel: one plain-text mail per message, over SMTP (``smtplib``).

With ``starttls`` the connection is upgraded before anything else is sent,
and the server's certificate is checked against the system's trusted
certificates (or the ``ssl_context`` given to the notifier); a failed check is
not retried. The login, when set, follows the upgrade.
"""

from __future__ import annotations

import smtplib
import ssl
import string
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from framework0_errors.config.models import EmailChannel

from .errors import DeliveryError, NotificationConfigError
from .message import Message

__all__ = ["SUBJECT_FIELDS", "EmailSender", "email_body"]

SUBJECT_FIELDS = frozenset(
    {
        "recipe",
        "step",
        "run_id",
        "outcome",
        "category",
        "severity",
        "count",
        "breaker",
        "attempts",
        "error_type",
    }
)
"""The names a subject template may use, as ``{name}``."""

_SUBJECT_LIMIT = 250

_BODY_LINES = (
    ("Recipe", "recipe"),
    ("Step", "step"),
    ("Breaker", "breaker"),
    ("Run id", "run_id"),
    ("Outcome", "outcome"),
    ("Attempts", "attempts"),
    ("Error", "error_type"),
    ("Message", "error_message"),
    ("Category", "category"),
    ("Severity", "severity"),
    ("Hint", "hint"),
    ("Fingerprint", "fingerprint"),
)


def _check_subject(name: str, template: str) -> None:
    try:
        names = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as exc:
        raise NotificationConfigError(
            f"notification channel {name!r}: subject template {template!r} is malformed: {exc}"
        ) from None
    unknown = sorted(set(names) - SUBJECT_FIELDS)
    if unknown:
        allowed = ", ".join(f"{{{f}}}" for f in sorted(SUBJECT_FIELDS))
        raise NotificationConfigError(
            f"notification channel {name!r}: subject template {template!r} uses "
            f"{', '.join(repr(u) for u in unknown)}; allowed fields: {allowed}"
        )
    try:
        template.format_map(dict.fromkeys(SUBJECT_FIELDS, "x"))
    except ValueError as exc:  # format specs such as {count:d} on text
        raise NotificationConfigError(
            f"notification channel {name!r}: subject template {template!r}: {exc}"
        ) from None


def email_body(message: Message) -> str:
    """Return the plain-text body: the summary, then one labelled line per field."""
    fields = message.fields
    lines = [message.summary, ""]
    for label, key in _BODY_LINES:
        if fields[key] is not None:
            value = str(fields[key]).replace("\n", "\n" + " " * 13)
            lines.append(f"{label + ':':<12} {value}")
    lines.append(
        f"{'Count:':<12} {fields['count']} (first {fields['first']}, last {fields['last']})"
    )
    return "\n".join(lines) + "\n"


class EmailSender:
    """Sends each message as a plain-text e-mail.

    Args:
        name: The channel's name, for error messages.
        channel: Its settings, with ``${ENV_VAR}`` references resolved.
        ssl_context: TLS settings for STARTTLS; ``None`` trusts the system's
            certificates and checks the host name.

    Raises:
        NotificationConfigError: the subject template uses unknown fields or
            is malformed.
    """

    def __init__(
        self, name: str, channel: EmailChannel, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        _check_subject(name, channel.subject)
        self._channel = channel
        self.timeout: float | None = channel.timeout
        self._ssl_context = ssl_context
        self._where = f"SMTP {channel.host}:{channel.port}"
        _, _, domain = channel.from_addr.rpartition("@")
        # make_msgid without a domain looks up this host's name, which can be slow.
        self._domain = domain or "framework0"

    def compose(self, message: Message) -> EmailMessage:
        """Return the mail for ``message``: headers from the settings, the body from the message."""
        channel = self._channel
        subject = channel.subject.format_map(message.format_fields())
        subject = " ".join(subject.split())  # header values must not contain line breaks
        if len(subject) > _SUBJECT_LIMIT:
            subject = subject[: _SUBJECT_LIMIT - 1] + "…"
        mail = EmailMessage()
        mail["From"] = channel.from_addr
        mail["To"] = ", ".join(channel.to)
        mail["Subject"] = subject
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = make_msgid(domain=self._domain)
        mail.set_content(email_body(message))
        return mail

    def send(self, message: Message, *, timeout: float) -> None:
        """Connect, upgrade and log in as configured, and send the mail."""
        channel = self._channel
        mail = self.compose(message)
        try:
            with smtplib.SMTP(channel.host, channel.port, timeout=timeout) as smtp:
                if channel.starttls:
                    context = self._ssl_context or ssl.create_default_context()
                    smtp.starttls(context=context)
                if channel.username is not None:
                    smtp.login(channel.username, channel.password or "")
                smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{self._where}: login rejected ({exc.smtp_code})", retryable=False
            ) from None
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise DeliveryError(f"{self._where}: {exc}", retryable=False) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{self._where}: {exc}", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                f"{self._where}: {exc.smtp_code} {text}", retryable=400 <= exc.smtp_code < 500
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{self._where}: {exc.verify_message}", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            text = str(exc) or type(exc).__name__
            raise DeliveryError(f"{self._where}: {text}", retryable=True) from None
