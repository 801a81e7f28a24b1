"""What kind of error it is, and how bad: the two scales every error record carries.

Both enums parse case-insensitively from the strings recipe authors write
(``category: network``, ``severity: High``) and serialise as their upper-case
names, so JSON and YAML hold ``"NETWORK"`` and ``"HIGH"``.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import TypeVar

__all__ = ["ErrorCategory", "ErrorSeverity"]

_E = TypeVar("_E", bound=Enum)


def _parse(enum: type[_E], text: str | _E, what: str) -> _E:
    if isinstance(text, enum):
        return text
    if isinstance(text, str):
        member = enum.__members__.get(text.strip().upper())
        if member is not None:
            return member
    allowed = ", ".join(enum.__members__)
    raise ValueError(f"unknown {what} {text!r}; allowed: {allowed}")


class ErrorCategory(StrEnum):
    """Where an error comes from; decides default transience and severity."""

    SYSTEM = "SYSTEM"
    NETWORK = "NETWORK"
    VALIDATION = "VALIDATION"
    BUSINESS = "BUSINESS"
    SECURITY = "SECURITY"
    FRAMEWORK = "FRAMEWORK"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, text: str | ErrorCategory) -> ErrorCategory:
        """Return the category named ``text``, ignoring case and surrounding blanks.

        Raises:
            ValueError: ``text`` names no category; the message lists the allowed ones.
        """
        return _parse(cls, text, "error category")


class ErrorSeverity(Enum):
    """How bad an error is; members order ``LOW < MEDIUM < HIGH < CRITICAL < FATAL``.

    Comparisons with anything but another severity are unsupported (they raise
    ``TypeError`` like any unordered pair), so a severity is never silently
    compared with a bare number.
    """

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4
    FATAL = 5

    @classmethod
    def parse(cls, text: str | ErrorSeverity) -> ErrorSeverity:
        """Return the severity named ``text``, ignoring case and surrounding blanks.

        Raises:
            ValueError: ``text`` names no severity; the message lists the allowed ones.
        """
        return _parse(cls, text, "error severity")

    def __lt__(self, other: object) -> bool:
        if isinstance(other, ErrorSeverity):
            return self.value < other.value
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, ErrorSeverity):
            return self.value <= other.value
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, ErrorSeverity):
            return self.value > other.value
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, ErrorSeverity):
            return self.value >= other.value
        return NotImplemented
