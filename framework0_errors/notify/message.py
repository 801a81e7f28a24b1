"""What is worth telling (:class:`NotificationEvent`) and what is told (:class:`Message`).

An event is one occurrence: a step's final failure, a recovery, a rollback or
a circuit breaker changing state. Events that repeat within the aggregation
window are grouped, and one :class:`Message` tells the group: the latest
event's details plus how many there were and when the first and last came.
Every text of a message passes through the notifier's redactor when the
message is built, so the channels only ever format redacted text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from framework0_errors.records import ErrorRecord
from framework0_errors.redact import Redactor

__all__ = ["OUTCOMES", "Message", "NotificationEvent"]

OUTCOMES: Final = ("failed", "recovered", "rolled_back", "breaker_opened", "breaker_closed")
"""The outcomes an event may report."""

_SUMMARY_ERROR = 300  # characters of the error message kept in the one-line summary

_VERBS: Final = {
    "failed": "failed",
    "recovered": "recovered",
    "rolled_back": "was rolled back",
    "breaker_opened": "opened",
    "breaker_closed": "closed",
}


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One thing worth telling, as the runner reports it.

    ``extra_channels`` are the step's ``notify:`` channels; they only apply to
    a ``failed`` event. ``breaker`` names the circuit breaker of a
    ``breaker_opened``/``breaker_closed`` event. Routing on severity or
    category needs ``record``: an event without one matches no route that
    sets ``min_severity``, ``severity`` or ``categories``.

    Raises:
        ValueError: ``outcome`` is not one of :data:`OUTCOMES`.
    """

    recipe: str
    step: str | None
    run_id: str
    outcome: str
    record: ErrorRecord | None
    attempts: int | None = None
    extra_channels: tuple[str, ...] = ()
    breaker: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(
                f"notification outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}"
            )

    @property
    def group_key(self) -> tuple[str, ...]:
        """What repeats of this event share: breaker and outcome, else fingerprint and outcome.

        The outcome is part of every key, so a recovery never counts as a
        failure of the same error.
        """
        if self.breaker is not None:
            return ("breaker", self.breaker, self.outcome)
        if self.record is not None:
            return ("error", self.record.fingerprint, self.outcome)
        return ("step", self.step or "", self.outcome)


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Message:
    """One notification ready to send: redacted JSON fields and a one-line summary.

    ``fields`` is what a webhook receives and a log record carries; its keys
    are ``recipe``, ``step``, ``run_id``, ``outcome``, ``breaker``,
    ``error_type``, ``error_message``, ``category``, ``severity``,
    ``transient``, ``attempts``, ``hint``, ``fingerprint``, ``count``,
    ``first``, ``last`` (ISO-8601 UTC) and ``summary``; fields that do not
    apply are ``None``.
    """

    fields: Mapping[str, Any]

    @property
    def summary(self) -> str:
        """The one-line summary (also ``fields["summary"]``)."""
        return str(self.fields["summary"])

    def format_fields(self) -> dict[str, str]:
        """The fields as text for templates: ``None`` becomes ``-``."""
        return {k: "-" if v is None else str(v) for k, v in self.fields.items()}

    @classmethod
    def build(
        cls, event: NotificationEvent, *, count: int, first: float, last: float, redactor: Redactor
    ) -> Message:
        """Tell ``event`` (the latest of its group) with the group's count and times.

        Every string field is passed through ``redactor``, including names,
        because the redactor also holds resolved ``${ENV_VAR}`` values.
        """
        record = event.record
        attempts = event.attempts
        if attempts is None and record is not None:
            attempts = record.attempt
        fields: dict[str, Any] = {
            "recipe": event.recipe,
            "step": event.step,
            "run_id": event.run_id,
            "outcome": event.outcome,
            "breaker": event.breaker,
            "error_type": record.exception_type if record else None,
            "error_message": record.message if record else None,
            "category": record.category.value if record else None,
            "severity": record.severity.name if record else None,
            "transient": record.transient if record else None,
            "attempts": attempts,
            "hint": record.hint if record else None,
            "fingerprint": record.fingerprint if record else None,
            "count": count,
            "first": _iso(first),
            "last": _iso(last),
        }
        fields = {
            k: redactor.redact_text(v) if isinstance(v, str) else v for k, v in fields.items()
        }
        fields["summary"] = _summary(fields)
        return cls(fields)


def _summary(fields: Mapping[str, Any]) -> str:
    """``recipe: step 'x' failed after 3 attempts: Type: message [NETWORK/MEDIUM]``, etc."""
    if fields["breaker"] is not None:
        subject = f"circuit breaker {fields['breaker']!r}"
    elif fields["step"] is not None:
        subject = f"step {fields['step']!r}"
    else:
        subject = "recipe"
    text = f"{fields['recipe']}: {subject} {_VERBS[fields['outcome']]}"
    if fields["attempts"] is not None and fields["outcome"] != "breaker_closed":
        plural = "" if fields["attempts"] == 1 else "s"
        text += f" after {fields['attempts']} attempt{plural}"
    if fields["error_type"] is not None:
        message = _first_line(fields["error_message"] or "", _SUMMARY_ERROR)
        text += f": {fields['error_type']}: {message}" if message else f": {fields['error_type']}"
        text += f" [{fields['category']}/{fields['severity']}]"
    if fields["count"] > 1:
        text += f" ({fields['count']} times, {fields['first']} to {fields['last']})"
    return text
