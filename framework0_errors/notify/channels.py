"""Channel senders: the objects that deliver one message to one channel.

A sender has a ``send(message, *, timeout)`` method that either delivers or
raises :class:`~framework0_errors.notify.errors.DeliveryError` (any other
exception counts as a failure that is not retried), and a ``timeout``
attribute: the channel's own limit on one attempt, or ``None`` for channels
that do not touch the network. Senders are called from the notifier's
background threads, one thread per channel, so a sender never runs
concurrently with itself.
"""

from __future__ import annotations

import logging
import ssl
from typing import Protocol

from framework0_errors.config.models import (
    EmailChannel,
    LogChannel,
    SlackChannel,
    WebhookChannel,
)

from .message import Message
from .smtp import EmailSender
from .webhook import SlackSender, WebhookSender

__all__ = ["LogSender", "Sender", "build_sender"]

AnyChannel = LogChannel | WebhookChannel | SlackChannel | EmailChannel


class Sender(Protocol):
    """Delivers messages to one channel."""

    @property
    def timeout(self) -> float | None:
        """Seconds one attempt may take, or ``None`` for no network (no limit applies)."""

    def send(self, message: Message, *, timeout: float) -> None:
        """Deliver ``message`` within ``timeout`` seconds or raise ``DeliveryError``."""


class LogSender:
    """Writes each message as one log record.

    The record's message is the one-line summary; its ``notification``
    attribute (passed through ``extra``) holds the message's JSON fields, for
    structured (JSON) log formatters. The fields live under one attribute
    because some of their names (``message`` among the ones a formatter may
    add) would clash with the attributes of a ``LogRecord``.

    Args:
        logger: Logger name.
        level: Level name, such as ``"ERROR"``.
    """

    timeout: float | None = None

    def __init__(self, *, logger: str, level: str) -> None:
        self._logger = logging.getLogger(logger)
        self._level = logging.getLevelNamesMapping()[level]

    def send(self, message: Message, *, timeout: float) -> None:
        """Log the message (``timeout`` does not apply to logging)."""
        self._logger.log(
            self._level, "%s", message.summary, extra={"notification": dict(message.fields)}
        )


def build_sender(
    name: str, channel: AnyChannel, *, ssl_context: ssl.SSLContext | None = None
) -> Sender:
    """Return the sender for a channel whose ``${ENV_VAR}`` references are resolved.

    Args:
        name: The channel's name, for error messages.
        channel: Its settings.
        ssl_context: TLS settings for HTTPS and STARTTLS; ``None`` uses the
            system's trusted certificates.

    Raises:
        NotificationConfigError: the settings cannot work (a URL that is not
            http(s), a subject template with unknown fields).
    """
    if isinstance(channel, LogChannel):
        return LogSender(logger=channel.logger, level=channel.level)
    if isinstance(channel, WebhookChannel):
        return WebhookSender(
            name,
            url=channel.url,
            headers=channel.headers,
            timeout=channel.timeout,
            ssl_context=ssl_context,
        )
    if isinstance(channel, SlackChannel):
        return SlackSender(
            name, url=channel.webhook_url, timeout=channel.timeout, ssl_context=ssl_context
        )
    return EmailSender(name, channel, ssl_context=ssl_context)
