"""Errors of the notification layer: bad channel settings and failed deliveries."""

from __future__ import annotations

from framework0_errors.orchestrator.problems import Framework0Error

__all__ = ["DeliveryError", "MissingEnvVarError", "NotificationConfigError"]


class NotificationConfigError(Framework0Error):
    """A notification channel or route cannot be built from its settings."""

    __module__ = "framework0_errors"


class MissingEnvVarError(NotificationConfigError):
    """A channel setting references an ``${ENV_VAR}`` that is not set."""

    __module__ = "framework0_errors"

    def __init__(self, variable: str, *, channel: str, field: str) -> None:
        self.variable = variable
        self.channel = channel
        self.field = field
        super().__init__(
            f"notification channel {channel!r}: environment variable {variable!r} "
            f"is not set (referenced in {field}); set it or remove the reference"
        )


class DeliveryError(Framework0Error):
    """One attempt to deliver a notification failed.

    ``retryable`` says whether another attempt may succeed (a refused
    connection, a timeout, HTTP 5xx or 429) or cannot (HTTP 4xx, a rejected
    SMTP login).
    """

    __module__ = "framework0_errors"

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)
