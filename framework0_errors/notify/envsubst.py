"""Resolve ``${ENV_VAR}`` references in channel settings, collecting the secrets.

Every string of a channel (including the items of lists and the keys and
values of mappings, such as webhook headers) may reference environment
variables as ``${NAME}``. They are resolved once, when the notifier is built.
The value of every referenced variable counts as a secret: the notifier
registers it with its redactor, so it never shows up in a message body or a
delivery report. There is no escape syntax; a ``$`` not followed by
``{NAME}`` stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel

from .errors import MissingEnvVarError

__all__ = ["ENV_REFERENCE", "resolve_channel", "substitute"]

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A ``${NAME}`` reference; the same pattern the recipe validator checks."""

_M = TypeVar("_M", bound=BaseModel)


def substitute(
    text: str, environ: Mapping[str, str], *, channel: str, field: str
) -> tuple[str, set[str]]:
    """Return ``text`` with every ``${NAME}`` replaced, and the values used.

    Raises:
        MissingEnvVarError: a referenced variable is not in ``environ``; the
            error names the variable, the channel and the field.
    """
    used: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MissingEnvVarError(name, channel=channel, field=field)
        used.add(environ[name])
        return environ[name]

    return ENV_REFERENCE.sub(replace, text), used


def resolve_channel(
    name: str, channel: _M, environ: Mapping[str, str]
) -> tuple[_M, frozenset[str]]:
    """Return a copy of a channel model with its references resolved, and the secrets.

    Every field holding a string, a list of strings or a string mapping is
    resolved, so fields added to the channel models later are covered too.

    Raises:
        MissingEnvVarError: a referenced variable is not set.
    """
    secrets: set[str] = set()
    update: dict[str, object] = {}

    def resolve(text: str, field: str) -> str:
        value, used = substitute(text, environ, channel=name, field=field)
        secrets.update(used)
        return value

    for field in type(channel).model_fields:
        value = getattr(channel, field)
        if isinstance(value, str):
            update[field] = resolve(value, field)
        elif isinstance(value, list):
            update[field] = [
                resolve(item, f"{field}[{i}]") if isinstance(item, str) else item
                for i, item in enumerate(value)
            ]
        elif isinstance(value, dict):
            update[field] = {
                resolve(str(k), f"{field} key {k!r}"): (
                    resolve(v, f"{field}.{k}") if isinstance(v, str) else v
                )
                for k, v in value.items()
            }
    return channel.model_copy(update=update), frozenset(secrets)
