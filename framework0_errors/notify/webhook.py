"""HTTP channels: a JSON POST to a webhook, and a Slack incoming-webhook post.

Only the standard library is used (``urllib.request``). Redirects are not
followed: a webhook that answers 3xx has moved, and following it could send
the message somewhere nobody configured. Proxies come from the usual
``http_proxy``/``https_proxy``/``no_proxy`` variables, read when the sender is
built. Error texts name the scheme, host and port, never the path or query,
which often carry a token (Slack's URL is itself the secret).
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from framework0_errors._version import __version__

from .errors import DeliveryError, NotificationConfigError
from .message import Message

__all__ = ["RETRY_STATUSES", "SlackSender", "WebhookSender", "slack_payload"]

RETRY_STATUSES = frozenset({408, 425, 429})
"""HTTP statuses below 500 that are worth another attempt."""

_MAX_RESPONSE = 64 * 1024  # bytes of a response body read (and discarded)
_SLACK_TEXT = 2900  # Slack caps a section's text at 3000 characters
_SLACK_FIELD = 1900  # ... and a field's at 2000


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class _JsonPoster:
    """POSTs JSON bodies to one URL."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise NotificationConfigError(
                f"notification channel {name!r}: the URL must start with http:// or "
                f"https:// and name a host"
            )
        self.timeout: float | None = timeout
        self._url = url
        port = f":{parts.port}" if parts.port else ""
        self._where = f"{parts.scheme}://{parts.hostname}{port}"
        self._headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"framework0-errors/{__version__}",
            **headers,
        }
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def post(self, payload: Mapping[str, Any], *, timeout: float) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(_MAX_RESPONSE)
        except urllib.error.HTTPError as exc:
            exc.close()
            retryable = exc.code >= 500 or exc.code in RETRY_STATUSES
            raise DeliveryError(
                f"POST {self._where}: HTTP {exc.code} {exc.reason}", retryable=retryable
            ) from None
        except urllib.error.URLError as exc:
            raise DeliveryError(f"POST {self._where}: {exc.reason}", retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:
            # Timeouts while reading, resets, malformed responses.
            text = str(exc) or type(exc).__name__
            raise DeliveryError(f"POST {self._where}: {text}", retryable=True) from None


class WebhookSender(_JsonPoster):
    """POSTs each message's JSON fields to a URL, with the configured headers.

    Raises:
        NotificationConfigError: the URL is not http(s).
    """

    def send(self, message: Message, *, timeout: float) -> None:
        """POST ``message.fields``; any 2xx answer counts as delivered."""
        self.post(message.fields, timeout=timeout)


class SlackSender(_JsonPoster):
    """Posts each message to a Slack incoming webhook as ``{"text", "blocks"}``.

    Raises:
        NotificationConfigError: the URL is not http(s).
    """

    def __init__(
        self, name: str, *, url: str, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        super().__init__(name, url=url, headers={}, timeout=timeout, ssl_context=ssl_context)

    def send(self, message: Message, *, timeout: float) -> None:
        """POST :func:`slack_payload` of the message."""
        self.post(slack_payload(message), timeout=timeout)


def _escape(text: str) -> str:
    # The three characters Slack's mrkdwn wants escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(text, limit)}


def slack_payload(message: Message) -> dict[str, Any]:
    """Return the Slack payload: the summary as ``text`` and readable ``blocks``.

    The blocks are a bold summary, up to ten labelled fields, the error in a
    code block and the hint, if any, as context.
    """
    fields = message.fields
    who = ("Breaker", "breaker") if fields["breaker"] is not None else ("Step", "step")
    labels = [
        ("Recipe", "recipe"),
        who,
        ("Run", "run_id"),
        ("Outcome", "outcome"),
        ("Severity", "severity"),
        ("Category", "category"),
        ("Attempts", "attempts"),
        ("Count", "count"),
        ("First", "first"),
        ("Last", "last"),
    ]
    shown = [
        _mrkdwn(f"*{label}*\n{_escape(str(fields[key]))}", _SLACK_FIELD)
        for label, key in labels
        if fields[key] is not None
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _mrkdwn(f"*{_escape(message.summary)}*", _SLACK_TEXT)},
        {"type": "section", "fields": shown},
    ]
    if fields["error_type"] is not None:
        # Backticks in the message would end the code block early.
        error = f"{fields['error_type']}: {fields['error_message'] or ''}".replace("`", "'")
        text = f"*Error*\n```{_clip(_escape(error), _SLACK_TEXT - 20)}```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if fields["hint"] is not None:
        hint = _mrkdwn(f"Hint: {_escape(fields['hint'])}", _SLACK_FIELD)
        blocks.append({"type": "context", "elements": [hint]})
    return {"text": message.summary, "blocks": blocks}
