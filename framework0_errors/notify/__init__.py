"""Notifications: tell people when steps fail, recover or trip a circuit breaker.

Channels (``log``, ``webhook``, ``slack``, ``email``) and routes come from the
recipe's ``error_handling.notifications`` block. The runner builds one
:class:`Notifier` per run, calls :meth:`Notifier.notify` with a
:class:`NotificationEvent` for each thing worth telling, and
:meth:`Notifier.flush` before the run ends, which returns a
:class:`DeliveryReport`. See ``docs/notifications.md``.
"""

from .channels import LogSender, Sender, build_sender
from .envsubst import resolve_channel
from .errors import DeliveryError, MissingEnvVarError, NotificationConfigError
from .message import OUTCOMES, Message, NotificationEvent
from .notifier import Notifier
from .report import ChannelReport, DeliveryReport
from .router import Router, route_matches
from .smtp import EmailSender
from .webhook import SlackSender, WebhookSender, slack_payload

__all__ = [
    "OUTCOMES",
    "ChannelReport",
    "DeliveryError",
    "DeliveryReport",
    "EmailSender",
    "LogSender",
    "Message",
    "MissingEnvVarError",
    "NotificationConfigError",
    "NotificationEvent",
    "Notifier",
    "Router",
    "Sender",
    "SlackSender",
    "WebhookSender",
    "build_sender",
    "resolve_channel",
    "route_matches",
    "slack_payload",
]
