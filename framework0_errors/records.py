"""Error records: what the Context, the store and reports keep about one error.

An :class:`ErrorRecord` is a frozen, JSON-ready account of one failed attempt
(or one error a step logged, ``detected=True``). Its size is bounded: the
message is clipped to :data:`MAX_MESSAGE` characters, the cause chain to
:data:`MAX_CAUSES` links and the traceback to the last :data:`MAX_FRAMES`
frames. Messages, cause messages and traceback lines pass through a
:class:`~framework0_errors.redact.Redactor` before they are stored, so a
record is always safe to write out.

The ``fingerprint`` groups errors that differ only in volatile details:
numbers, hex ids, UUIDs and quoted strings are replaced by placeholders (see
:func:`normalise_message`) before hashing type, message and step.
"""

from __future__ import annotations

import hashlib
import math
import re
import time as _time
import traceback as _traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from .categories import ErrorCategory, ErrorSeverity
from .classify import Classification, Classifier, qualified_name
from .detect import DetectedLogError, severity_for_level
from .redact import Redactor

__all__ = [
    "MAX_CAUSES",
    "MAX_FRAMES",
    "MAX_MESSAGE",
    "CauseLink",
    "ErrorRecord",
    "fingerprint",
    "new_record_id",
    "normalise_message",
]

MAX_MESSAGE = 2000
MAX_CAUSES = 5
MAX_FRAMES = 10
# datetime cannot show times past the end of year 9999
_MAX_TIME = 253402300799.0
_T = TypeVar("_T")

_VOLATILE = re.compile(
    r"""(?P<str>(?<!\w)'[^'\n]*'(?!\w)|(?<!\w)"[^"\n]*"(?!\w))
      |(?P<uuid>\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)
      |(?P<hex>\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b)
      |(?P<n>\d+(?:\.\d+)*)""",
    re.IGNORECASE | re.VERBOSE,
)


def normalise_message(message: str) -> str:
    """Replace the volatile parts of a message by ``<str>``, ``<uuid>``, ``<hex>``, ``<n>``.

    ``"timeout after 3.2s on host 10.0.0.5"`` becomes
    ``"timeout after <n>s on host <n>"``. Runs of blanks collapse to one space.
    """
    return " ".join(_VOLATILE.sub(lambda m: f"<{m.lastgroup}>", message).split())


def fingerprint(exception_type: str, message: str, step: str) -> str:
    """Return a 16-hex-digit hash of type, normalised message and step."""
    key = "\0".join((exception_type, normalise_message(message), step))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def new_record_id() -> str:
    """Return a fresh random record id (32 hex digits)."""
    return uuid.uuid4().hex


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the error it belongs to
        return f"<unprintable {type(exc).__name__}>"


@dataclass(frozen=True, slots=True)
class CauseLink:
    """One link of a cause chain: ``kind`` is ``cause`` (``raise … from``) or ``context``."""

    type: str
    message: str
    kind: Literal["cause", "context"]

    def to_dict(self) -> dict[str, str]:
        """Return the JSON form."""
        return {"type": self.type, "message": self.message, "kind": self.kind}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CauseLink:
        """Read the JSON form back; raises ``ValueError`` on a malformed link."""
        kind = _field(data, "kind", str)
        if kind == "cause":
            return cls(_field(data, "type", str), _field(data, "message", str), "cause")
        if kind == "context":
            return cls(_field(data, "type", str), _field(data, "message", str), "context")
        raise ValueError(f"error record: cause kind must be cause or context, not {kind!r}")


def _cause_chain(exc: BaseException, redact: Callable[[str], str]) -> tuple[CauseLink, ...]:
    links: list[CauseLink] = []
    seen = {id(exc)}
    current = exc
    while len(links) < MAX_CAUSES:
        kind: Literal["cause", "context"]
        if current.__cause__ is not None:
            nxt, kind = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            nxt, kind = current.__context__, "context"
        else:
            break
        if id(nxt) in seen:  # chains can loop when code re-raises an ancestor
            break
        seen.add(id(nxt))
        links.append(CauseLink(qualified_name(type(nxt)), _clip(redact(_text(nxt))), kind))
        current = nxt
    return tuple(links)


def _frames(exc: BaseException, redact: Callable[[str], str]) -> tuple[str, ...]:
    last: deque[str] = deque(maxlen=MAX_FRAMES)
    for frame, lineno in _traceback.walk_tb(exc.__traceback__):
        last.append(redact(f"{frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}"))
    return tuple(last)


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One error of one step attempt, as stored in ``errors.<step>`` and the store.

    ``time`` is epoch seconds (UTC); ``timestamp`` renders it as ISO-8601.
    ``exception_type`` is ``module.QualName`` (builtins bare), or
    ``logging.<LEVEL>`` for a detected error, whose ``logger`` is then set.
    ``rule`` names the classification rule that decided.
    """

    id: str
    run_id: str
    recipe: str
    step: str
    attempt: int
    time: float
    exception_type: str
    message: str
    category: ErrorCategory
    severity: ErrorSeverity
    transient: bool
    fingerprint: str
    causes: tuple[CauseLink, ...] = ()
    traceback: tuple[str, ...] = ()
    hint: str | None = None
    rule: str = ""
    detected: bool = False
    logger: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time) and -_MAX_TIME <= self.time <= _MAX_TIME):
            raise ValueError(f"error record: time must be epoch seconds, not {self.time!r}")

    @property
    def timestamp(self) -> str:
        """``time`` as ISO-8601 UTC, e.g. ``2024-05-01T12:00:00.250000Z``."""
        moment = datetime.fromtimestamp(self.time, tz=UTC)
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form; :meth:`from_dict` reads it back unchanged."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "recipe": self.recipe,
            "step": self.step,
            "attempt": self.attempt,
            "time": self.time,
            "timestamp": self.timestamp,
            "exception_type": self.exception_type,
            "message": self.message,
            "category": self.category.value,
            "severity": self.severity.name,
            "transient": self.transient,
            "fingerprint": self.fingerprint,
            "causes": [c.to_dict() for c in self.causes],
            "traceback": list(self.traceback),
            "hint": self.hint,
            "rule": self.rule,
            "detected": self.detected,
            "logger": self.logger,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorRecord:
        """Read the JSON form back.

        ``time`` is authoritative (``timestamp`` is derived and ignored);
        unknown keys are ignored, so newer records stay readable.

        Raises:
            ValueError: A required key is missing or has the wrong type.
        """
        causes = _field(data, "causes", list)
        frames = _field(data, "traceback", list)
        if not all(isinstance(c, Mapping) for c in causes):
            raise ValueError("error record: every cause must be a mapping")
        if not all(isinstance(f, str) for f in frames):
            raise ValueError("error record: every traceback line must be a string")
        hint, logger = data.get("hint"), data.get("logger")
        if not (hint is None or isinstance(hint, str)) or not (
            logger is None or isinstance(logger, str)
        ):
            raise ValueError("error record: hint and logger must be strings or null")
        time_ = data.get("time")
        if not isinstance(time_, int | float) or isinstance(time_, bool):
            raise ValueError(f"error record: 'time' must be a number, not {time_!r}")
        try:
            category = ErrorCategory.parse(_field(data, "category", str))
            severity = ErrorSeverity.parse(_field(data, "severity", str))
        except ValueError as err:
            raise ValueError(f"error record: {err}") from None
        return cls(
            id=_field(data, "id", str),
            run_id=_field(data, "run_id", str),
            recipe=_field(data, "recipe", str),
            step=_field(data, "step", str),
            attempt=_field(data, "attempt", int),
            time=float(time_),
            exception_type=_field(data, "exception_type", str),
            message=_field(data, "message", str),
            category=category,
            severity=severity,
            transient=_field(data, "transient", bool),
            fingerprint=_field(data, "fingerprint", str),
            causes=tuple(CauseLink.from_dict(c) for c in causes),
            traceback=tuple(frames),
            hint=hint,
            rule=_field(data, "rule", str) if "rule" in data else "",
            detected=_field(data, "detected", bool) if "detected" in data else False,
            logger=logger,
        )

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        classification: Classification,
        run_id: str,
        recipe: str,
        step: str,
        attempt: int,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = _time.time,
        id_factory: Callable[[], str] = new_record_id,
    ) -> ErrorRecord:
        """Record a raised exception, redacting message, causes and traceback.

        Args:
            exc: The exception the attempt raised.
            classification: What the classifier made of it.
            run_id: Id of the ``framework0 run``.
            recipe: Recipe name or path.
            step: Step name.
            attempt: 1-based attempt number.
            redactor: Masks secrets; ``None`` stores text as it is.
            clock: Wall clock in epoch seconds.
            id_factory: Makes the record id.
        """
        redact = redactor.redact_text if redactor is not None else str
        exception_type = qualified_name(type(exc))
        message = _clip(redact(_text(exc)))
        return cls(
            id=id_factory(),
            run_id=run_id,
            recipe=recipe,
            step=step,
            attempt=attempt,
            time=clock(),
            exception_type=exception_type,
            message=message,
            category=classification.category,
            severity=classification.severity,
            transient=classification.transient,
            fingerprint=fingerprint(exception_type, message, step),
            causes=_cause_chain(exc, redact),
            traceback=_frames(exc, redact),
            hint=classification.hint,
            rule=classification.rule,
        )

    @classmethod
    def from_detected(
        cls,
        detected: DetectedLogError,
        *,
        classifier: Classifier,
        run_id: str,
        recipe: str,
        step: str,
        attempt: int,
        redactor: Redactor | None = None,
        id_factory: Callable[[], str] = new_record_id,
    ) -> ErrorRecord:
        """Record an error a step logged (``detected=True``).

        It is UNKNOWN and not transient unless a recipe rule that matches on
        ``message`` alone says otherwise; its severity follows the log level
        (see :func:`~framework0_errors.detect.severity_for_level`) unless the
        rule sets one. Its time is the log record's.
        """
        why = f"log pattern /{detected.pattern}/" if detected.pattern else f"log {detected.level}"
        base = Classification(
            ErrorCategory.UNKNOWN, severity_for_level(detected.levelno), False, None, why
        )
        classification = classifier.classify_message(detected.message, base=base)
        exception_type = f"logging.{detected.level}"
        message = _clip(
            detected.message if redactor is None else redactor.redact_text(detected.message)
        )
        return cls(
            id=id_factory(),
            run_id=run_id,
            recipe=recipe,
            step=step,
            attempt=attempt,
            time=detected.time,
            exception_type=exception_type,
            message=message,
            category=classification.category,
            severity=classification.severity,
            transient=classification.transient,
            fingerprint=fingerprint(exception_type, message, step),
            hint=classification.hint,
            rule=classification.rule,
            detected=True,
            logger=detected.logger,
        )


def _field(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    if key not in data:
        raise ValueError(f"error record: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"error record: {key!r} must be {kind.__name__}, not {value!r}")
    return value
