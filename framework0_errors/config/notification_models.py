"""The ``notifications:`` block of a recipe's ``error_handling:`` as models.

Channels (log, webhook, Slack, e-mail), the routes that pick them, and the
settings of delivery. Part of :mod:`.models`, which re-exports them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .fields import Category, ConfigModel, Int, Name, Outcome, Severity

__all__ = [
    "Channel",
    "EmailChannel",
    "LogChannel",
    "NotificationsConfig",
    "Route",
    "RouteMatch",
    "SlackChannel",
    "WebhookChannel",
]

_TIMEOUT_HELP = "Seconds one delivery attempt may take."
_ENV_HELP = " May contain `${ENV_VAR}` references, resolved when sending."


class LogChannel(ConfigModel):
    """Write notifications to a Python logger."""

    type: Literal["log"] = Field(description="Channel kind.", examples=["log"])
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="ERROR", description="Log level of the records.", examples=["WARNING"]
    )
    logger: Name = Field(
        default="framework0.notifications", description="Logger name.", examples=["acme.alerts"]
    )


class WebhookChannel(ConfigModel):
    """POST each notification as JSON to a URL."""

    type: Literal["webhook"] = Field(description="Channel kind.", examples=["webhook"])
    url: Name = Field(
        description="Where to POST." + _ENV_HELP, examples=["https://hooks.example.com/${HOOK_ID}"]
    )
    headers: dict[str, str] = Field(
        default={},
        description="Extra HTTP headers." + _ENV_HELP,
        examples=[{"Authorization": "Bearer ${HOOK_TOKEN}"}],
    )
    timeout: float = Field(default=5.0, gt=0, description=_TIMEOUT_HELP, examples=[10])


class SlackChannel(ConfigModel):
    """Post each notification to a Slack incoming webhook."""

    type: Literal["slack"] = Field(description="Channel kind.", examples=["slack"])
    webhook_url: Name = Field(
        description="The incoming-webhook URL; a secret, so give it as `${ENV_VAR}`.",
        examples=["${SLACK_WEBHOOK_URL}"],
    )
    timeout: float = Field(default=5.0, gt=0, description=_TIMEOUT_HELP, examples=[10])


class EmailChannel(ConfigModel):
    """Send each notification as an e-mail over SMTP."""

    type: Literal["email"] = Field(description="Channel kind.", examples=["email"])
    host: Name = Field(
        description="SMTP server host name." + _ENV_HELP, examples=["smtp.example.com"]
    )
    port: Int = Field(default=25, ge=1, le=65535, description="SMTP server port.", examples=[587])
    starttls: bool = Field(
        default=False, description="Upgrade the connection with STARTTLS.", examples=[True]
    )
    username: Name | None = Field(
        default=None,
        description="SMTP login; null for none." + _ENV_HELP,
        examples=["${SMTP_USER}"],
    )
    password: Name | None = Field(
        default=None,
        description="SMTP password; null for none." + _ENV_HELP,
        examples=["${SMTP_PASSWORD}"],
    )
    from_addr: Name = Field(
        alias="from", description="Sender address.", examples=["framework0@example.com"]
    )
    to: list[Name] = Field(
        min_length=1, description="Recipient addresses.", examples=[["ops@example.com"]]
    )
    subject: Name = Field(
        default="[framework0] {recipe}: {step} {outcome}",
        description="Subject template; `{recipe}`, `{step}`, `{outcome}`, `{category}` and "
        "`{severity}` are filled in.",
        examples=["[{severity}] {step} {outcome}"],
    )
    timeout: float = Field(default=10.0, gt=0, description=_TIMEOUT_HELP, examples=[30])


Channel = Annotated[
    LogChannel | WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="type")
]


class RouteMatch(ConfigModel):
    """Which notifications a route takes; every condition given must hold."""

    min_severity: Severity | None = Field(
        default=None, description="Lowest severity taken; null for any.", examples=["HIGH"]
    )
    severity: list[Severity] | None = Field(
        default=None,
        description="Severities taken; null for any.",
        examples=[["CRITICAL", "FATAL"]],
    )
    categories: list[Category] | None = Field(
        default=None,
        description="Categories taken; null for any.",
        examples=[["NETWORK", "SECURITY"]],
    )
    steps: list[Name] | None = Field(
        default=None, description="Step names taken; null for any.", examples=[["load_orders"]]
    )
    outcomes: list[Outcome] | None = Field(
        default=None,
        description="Events taken: `failed` (final failure), `recovered`, `rolled_back`, "
        "`breaker_opened`, `breaker_closed`; null for any.",
        examples=[["failed", "breaker_opened"]],
    )


class Route(ConfigModel):
    """Send matching notifications to channels."""

    match: RouteMatch = Field(
        default=RouteMatch.model_validate({}),
        json_schema_extra={"default": {}},
        description="Conditions; left out, every notification.",
        examples=[{"min_severity": "HIGH"}],
    )
    channels: list[Name] = Field(
        min_length=1, description="Names of channels in `channels`.", examples=[["ops_slack"]]
    )


class NotificationsConfig(ConfigModel):
    """Channels that tell people about failures, and routes that pick them."""

    channels: dict[str, Channel] = Field(
        default={},
        description="Channels by name, each with a `type`: `log`, `webhook`, `slack` or `email`.",
        examples=[{"ops_slack": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}}],
    )
    routes: list[Route] = Field(
        default=[],
        description="Routes tried for every notification; each matching route sends it to "
        "its channels. Steps' `notify` channels are added for their final failures.",
        examples=[[{"match": {"min_severity": "CRITICAL"}, "channels": ["ops_email"]}]],
    )
    window: float = Field(
        default=60.0,
        gt=0,
        description="Seconds over which repeats of the same error are aggregated into one message.",
        examples=[300],
    )
    flush_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds to wait at the end of a run for pending notifications.",
        examples=[10],
    )
    send_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one notification may take on one channel, across its retries.",
        examples=[60],
    )
    send_retries: Int = Field(
        default=2, ge=0, description="Extra delivery attempts after a failed send.", examples=[3]
    )
