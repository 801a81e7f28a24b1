"""Keep secrets out of error records, logs and reports.

A :class:`Redactor` knows two things: which mapping keys name secrets
(``password``, ``api_key``, ...) and which secret values are in play (the
values found under those keys in a step's ``args``, plus any the caller adds,
such as resolved ``${ENV_VAR}`` references). It masks the first in data and
the second anywhere in free text, such as an exception message that echoes a
connection string.

Key patterns are plain case-insensitive substrings, compared after dropping
``_`` and ``-`` from both sides, so ``api_key`` also catches ``apiKey``,
``API-KEY`` and ``x_api_key``. Values shorter than :data:`MIN_SECRET_LENGTH`
characters are not masked in text: masking ``"1"`` or ``"abc"`` everywhere
would destroy messages while hiding nothing worth hiding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_SECRET_KEYS", "MASK", "MIN_SECRET_LENGTH", "Redactor"]

DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "private_key",
)
MASK = "***"
MIN_SECRET_LENGTH = 4


def _squash(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


class Redactor:
    """Masks secret-looking mapping values and known secret values in text.

    Immutable: derive a redactor with more values through :meth:`with_values`
    or :meth:`for_args`. Text masking uses one compiled alternation of all
    values, longest first, so a value that contains another is masked whole.

    Args:
        key_patterns: Substrings that mark a mapping key as secret.
        secret_values: Values to mask wherever they appear in text.
    """

    __slots__ = ("_key_patterns", "_squashed", "_value_re", "_values")

    def __init__(
        self,
        *,
        key_patterns: Sequence[str] = DEFAULT_SECRET_KEYS,
        secret_values: Iterable[str] = (),
    ) -> None:
        if isinstance(key_patterns, str):
            raise TypeError("key_patterns must be a sequence of strings, not one string")
        self._key_patterns = tuple(key_patterns)
        self._squashed = tuple(p for p in (_squash(k) for k in self._key_patterns) if p)
        self._values = frozenset(v for v in secret_values if len(v) >= MIN_SECRET_LENGTH)
        self._value_re: re.Pattern[str] | None = None
        if self._values:
            ordered = sorted(self._values, key=lambda v: (-len(v), v))
            self._value_re = re.compile("|".join(re.escape(v) for v in ordered))

    @property
    def key_patterns(self) -> tuple[str, ...]:
        """The substrings that mark a key as secret, as given."""
        return self._key_patterns

    @property
    def secret_values(self) -> frozenset[str]:
        """The values masked in text (those of at least ``MIN_SECRET_LENGTH`` characters)."""
        return self._values

    def __repr__(self) -> str:
        # Never show the values themselves: a repr ends up in logs.
        return f"Redactor(key_patterns={self._key_patterns!r}, secret_values=<{len(self._values)}>)"

    def is_secret_key(self, key: object) -> bool:
        """Whether a mapping key names a secret (non-string keys are compared as ``str``)."""
        squashed = _squash(str(key))
        return any(p in squashed for p in self._squashed)

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every known secret value replaced by ``***``."""
        if self._value_re is None or not text:
            return text
        return self._value_re.sub(MASK, text)

    def redact_mapping(self, obj: Any) -> Any:
        """Return a deep copy of ``obj`` fit to show.

        Mappings become dicts and lists/tuples become lists. Every value under a
        secret key is replaced by ``***`` whatever its type (a nested mapping
        under ``credentials`` is hidden whole), and strings elsewhere go through
        :meth:`redact_text`. Other leaves are returned as they are.
        """
        if isinstance(obj, Mapping):
            return {
                k: MASK if self.is_secret_key(k) else self.redact_mapping(v) for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.redact_mapping(item) for item in obj]
        if isinstance(obj, str):
            return self.redact_text(obj)
        return obj

    def collect_values(self, obj: Any) -> set[str]:
        """Return the secret values in ``obj``: every string or number under a secret key.

        Nested mappings and lists are searched; under a secret key, all their
        leaves count (``credentials: {user: u, pass: p}`` yields both).
        """
        found: set[str] = set()
        self._collect(obj, secret=False, found=found)
        return found

    def _collect(self, obj: Any, *, secret: bool, found: set[str]) -> None:
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                self._collect(value, secret=secret or self.is_secret_key(key), found=found)
        elif isinstance(obj, list | tuple | set | frozenset):
            for item in obj:
                self._collect(item, secret=secret, found=found)
        elif secret and isinstance(obj, str | int | float) and not isinstance(obj, bool):
            found.add(str(obj))

    def with_values(self, values: Iterable[str]) -> Redactor:
        """Return a redactor with the same key patterns and ``values`` added."""
        return Redactor(key_patterns=self._key_patterns, secret_values=[*self._values, *values])

    @classmethod
    def for_args(
        cls,
        args: Any,
        extra_values: Iterable[str] = (),
        *,
        key_patterns: Sequence[str] = DEFAULT_SECRET_KEYS,
    ) -> Redactor:
        """Build a redactor that masks the secrets found in a step's ``args``.

        Args:
            args: The step's arguments (nested mappings and lists).
            extra_values: Further values to mask, such as resolved ``${ENV_VAR}``s.
            key_patterns: Substrings that mark a key as secret.
        """
        finder = cls(key_patterns=key_patterns)
        return cls(
            key_patterns=key_patterns,
            secret_values=[*finder.collect_values(args), *extra_values],
        )
