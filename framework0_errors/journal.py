"""Write error records and recovery state into the Context, and tell other plugins."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from .classify import Classification, Classifier
from .detect import DetectedLogError
from .orchestrator import Context, Invocation, Run
from .records import ErrorRecord
from .redact import Redactor
from .stores.base import BreakerSnapshot
from .stores.select import StoreUnavailableError

__all__ = [
    "RECOVERY_PREFIX",
    "SUCCEEDED",
    "WHO",
    "ErrorJournal",
    "recovery_key",
    "succeeded_text",
]

WHO = "framework0.error_handling"
"""The ``who`` of every Context write this plugin makes."""


RECOVERY_PREFIX = "recovery."
"""What the Context keys of recovery records start with: ``recovery.<step>``."""


def recovery_key(step: str) -> str:
    """Return the Context key of ``step``'s recovery record: ``recovery.<step>``."""
    return RECOVERY_PREFIX + step


SUCCEEDED: Mapping[str, Any] = MappingProxyType(
    {"attempts": 1, "outcome": "succeeded", "strategy": "none", "duration": 0.0, "error_type": None}
)
"""The recovery record of a step whose first attempt succeeded, but for its ``duration``."""

# Its JSON text around the duration: what json.dumps writes before and after
# it (duration comes before the other null, error_type).
_SUCCEEDED_HEAD, _SUCCEEDED_TAIL = json.dumps({**SUCCEEDED, "duration": None}).split("null", 1)


def succeeded_text(duration: float) -> str:
    """Return ``json.dumps`` of :data:`SUCCEEDED` with ``duration``, for a fraction of its cost.

    A checkpoint saves every such record: json's encoder would cost several times
    more. ``duration`` must be a finite float (json writes a float as repr does).
    """
    return f"{_SUCCEEDED_HEAD}{duration!r}{_SUCCEEDED_TAIL}"


class ErrorHistory(Protocol):
    """Where error records are kept across runs (the state store)."""

    def append_error(self, record: Mapping[str, Any]) -> None:
        """Add one record."""
        ...


class ErrorJournal:
    """Keeps ``errors.<step>`` (the newest ``keep`` records) and ``recovery.<step>``.

    One per run. Every recorded error is also emitted as a
    ``framework0_step_error`` hook event carrying its JSON record.
    """

    def __init__(
        self,
        run: Run,
        *,
        classifier: Classifier,
        redactor: Redactor,
        keep: int,
        wall: Callable[[], float],
        history: ErrorHistory | None = None,
        on_store_lost: Callable[[Exception], None] | None = None,
    ) -> None:
        self.run = run
        self.context: Context = run.context
        self.classifier = classifier
        self.redactor = redactor
        self.keep = keep
        self.wall = wall
        self.history = history
        self.on_store_lost = on_store_lost
        self._lock = threading.Lock()
        self._kept: dict[str, list[dict[str, Any]]] = {}
        self.last: dict[str, ErrorRecord] = {}
        """The newest record of each step, for notifications and reports."""

    def classify(self, exc: BaseException) -> Classification:
        """Classify ``exc`` with the recipe's rules, then the built-in ones."""
        return self.classifier.classify(exc)

    def record(
        self,
        invocation: Invocation,
        step: str,
        exc: BaseException,
        *,
        attempt: int,
        redactor: Redactor | None = None,
        classification: Classification | None = None,
    ) -> ErrorRecord:
        """Record one failed attempt of ``step`` and emit the hook event."""
        record = ErrorRecord.from_exception(
            exc,
            classification=classification or self.classify(exc),
            run_id=self.run.run_id,
            recipe=self.run.recipe.name,
            step=step,
            attempt=attempt,
            redactor=redactor or self.redactor,
            clock=self.wall,
        )
        data = self._keep(step, record)
        self.run.report_step_error(invocation, exc, attempt=attempt, record=data)
        return record

    def record_detected(
        self,
        step: str,
        found: Sequence[DetectedLogError],
        *,
        attempt: int,
        redactor: Redactor | None = None,
    ) -> None:
        """Record errors a step logged while it ran (even when it succeeded)."""
        for item in found:
            record = ErrorRecord.from_detected(
                item,
                classifier=self.classifier,
                run_id=self.run.run_id,
                recipe=self.run.recipe.name,
                step=step,
                attempt=attempt,
                redactor=redactor or self.redactor,
            )
            self._keep(step, record)

    def set_recovery(self, step: str, state: dict[str, Any]) -> None:
        """Write ``recovery.<step>``.

        ``state`` is handed over as it is: plain JSON values, never changed
        afterwards. It is written on every step, so it skips ``set()``'s copy
        (a step's chain calls ``Context.set_owned`` with :func:`recovery_key` itself).
        """
        self.context.set_owned(recovery_key(step), state, who=WHO)

    def set_breaker(self, snapshot: BreakerSnapshot) -> dict[str, Any]:
        """Write ``circuit_breakers.<name>`` from a breaker's snapshot; return what was written."""
        return self.set_breakers([snapshot])[snapshot.name]

    def set_breakers(self, snapshots: Iterable[BreakerSnapshot]) -> dict[str, dict[str, Any]]:
        """Write ``circuit_breakers.<name>`` of each snapshot; return what was written, by name.

        The values returned are the caller's: changing them changes no Context value.
        """
        written = {}
        items = []
        closed: dict[str, Any] | None = None
        for snapshot in snapshots:
            if snapshot[1:5] == _UNTOUCHED:
                # Most breakers of a run end closed with no failure. They share one
                # record: Context values are never changed in place, and a checkpoint
                # encodes an object many keys share once.
                if closed is None:
                    closed = dict(_CLOSED)
                state = closed
            else:
                # Every field is made a plain JSON value here, whichever store it
                # came from, so that the record can be handed over without set()'s check.
                opened_at, half_open_at = snapshot.opened_at, snapshot.half_open_at
                state = {
                    "state": str(snapshot.state),
                    "consecutive_failures": int(snapshot.consecutive_failures),
                    "opened_at": None if opened_at is None else _json_seconds(opened_at),
                    "half_open_at": None if half_open_at is None else _json_seconds(half_open_at),
                }
            items.append(("circuit_breakers." + snapshot.name, state))
            written[snapshot.name] = state.copy()
        self.context.set_owned_many(items, WHO)
        return written

    def _keep(self, step: str, record: ErrorRecord) -> dict[str, Any]:
        data = record.to_dict()
        with self._lock:
            kept = self._kept.setdefault(step, [])
            kept.append(data)
            del kept[: -self.keep]
            self.last[step] = record
            self.context.set(f"errors.{step}", kept, who=WHO)
        if self.history is not None:
            try:
                self.history.append_error(data)  # error history outlives the run
            except StoreUnavailableError as exc:
                self.history = None
                if self.on_store_lost is not None:
                    self.on_store_lost(exc)
        return data


# (state, consecutive_failures, opened_at, half_open_at) of a closed breaker with no failure.
_UNTOUCHED = ("closed", 0, None, None)
_CLOSED = {"state": "closed", "consecutive_failures": 0, "opened_at": None, "half_open_at": None}


def _json_seconds(value: float) -> float | None:
    # An infinite half_open_at (held open by hand, forever) means what None
    # means; JSON holds neither infinity nor NaN.
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None
