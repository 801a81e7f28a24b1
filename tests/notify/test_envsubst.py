"""``${ENV_VAR}`` references in channel settings."""

from __future__ import annotations

import pytest

from framework0_errors import Framework0Error
from framework0_errors.config.models import EmailChannel, WebhookChannel
from framework0_errors.notify import MissingEnvVarError, NotificationConfigError, resolve_channel
from framework0_errors.notify.envsubst import substitute

ENV = {"HOST": "hooks.local", "TOKEN": "tok-123456", "USER": "mailer", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected", "used"),
    [
        (
            "https://${HOST}/x?t=${TOKEN}",
            "https://hooks.local/x?t=tok-123456",
            {"hooks.local", "tok-123456"},
        ),
        ("no references", "no references", set()),
        ("$HOST and $ {HOST} and ${1X}", "$HOST and $ {HOST} and ${1X}", set()),
        ("[${EMPTY}]", "[]", {""}),
    ],
)
def test_substitute_replaces_every_reference(text: str, expected: str, used: set[str]) -> None:
    """Each ``${NAME}`` is replaced; other dollar signs stay as written."""
    assert substitute(text, ENV, channel="c", field="url") == (expected, used)


def test_missing_variable_names_variable_channel_and_field() -> None:
    """A missing variable raises a clear, public error."""
    with pytest.raises(MissingEnvVarError) as caught:
        substitute("Bearer ${HOOK_TOKEN}", ENV, channel="ops_hook", field="headers.Authorization")
    error = caught.value
    assert (error.variable, error.channel, error.field) == (
        "HOOK_TOKEN",
        "ops_hook",
        "headers.Authorization",
    )
    assert str(error) == (
        "notification channel 'ops_hook': environment variable 'HOOK_TOKEN' is not set "
        "(referenced in headers.Authorization); set it or remove the reference"
    )
    assert isinstance(error, NotificationConfigError)
    assert isinstance(error, Framework0Error)
    assert type(error).__module__ == "framework0_errors"


def test_resolve_channel_covers_strings_lists_and_mappings() -> None:
    """URL, header names and values are resolved; the used values are the secrets."""
    channel = WebhookChannel.model_validate(
        {
            "type": "webhook",
            "url": "https://${HOST}/hook",
            "headers": {"Authorization": "Bearer ${TOKEN}", "X-${USER}": "1"},
        }
    )
    resolved, secrets = resolve_channel("hook", channel, ENV)
    assert resolved.url == "https://hooks.local/hook"
    assert resolved.headers == {"Authorization": "Bearer tok-123456", "X-mailer": "1"}
    assert secrets == {"hooks.local", "tok-123456", "mailer"}
    assert channel.url == "https://${HOST}/hook"  # the configured model is untouched


def test_resolve_channel_handles_lists_and_unset_options() -> None:
    """List items are resolved one by one; options left unset stay ``None``."""
    channel = EmailChannel.model_validate(
        {
            "type": "email",
            "host": "smtp",
            "from": "f@x.y",
            "to": ["${USER}@x.y", "b@x.y"],
            "port": 25,
        }
    )
    resolved, secrets = resolve_channel("mail", channel, ENV)
    assert resolved.to == ["mailer@x.y", "b@x.y"]
    assert resolved.username is None
    assert secrets == {"mailer"}


def test_resolve_channel_names_the_list_item() -> None:
    """The error of a list item says which item."""
    channel = EmailChannel.model_validate(
        {"type": "email", "host": "smtp", "from": "f@x.y", "to": ["a@x.y", "${NOPE}"]}
    )
    with pytest.raises(MissingEnvVarError, match=r"referenced in to\[1\]"):
        resolve_channel("mail", channel, ENV)
