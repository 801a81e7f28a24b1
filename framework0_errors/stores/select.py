"""Choose the state store from a URL: ``sqlite:PATH``, ``redis://HOST:PORT/DB``, ``memory:``.

Durable stores (SQLite, Redis) are shared between processes, so every ``now`` they
receive must be wall-clock time: whoever builds the policies must give them
``clock=time.time`` (their default) when the store is durable, never ``time.monotonic``.

The ``--state`` option names the store; without it, :data:`STATE_ENV_VAR`
(``FRAMEWORK0_STATE``) does, and without that the embedded default
:data:`DEFAULT_STATE_URL` (SQLite under ``.framework0/`` in the working directory).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.stores.base import BreakerSnapshot, BreakerStore, BulkheadStore
from framework0_errors.stores.memory import MemoryStore

__all__ = [
    "DEFAULT_STATE_URL",
    "STATE_ENV_VAR",
    "Checkpoint",
    "JsonText",
    "MemoryStateStore",
    "RunSummary",
    "Store",
    "StoreURLError",
    "StoreUnavailableError",
    "default_state_url",
    "open_store",
]

STATE_ENV_VAR = "FRAMEWORK0_STATE"
DEFAULT_STATE_URL = "sqlite:.framework0/state.db"
_FORMS = (
    "sqlite:PATH (default: sqlite:.framework0/state.db), "
    "redis://HOST:PORT/DB (optionally ?prefix=NAME), or memory:"
)


class StoreURLError(Framework0Error, ValueError):
    """A state store URL is not one of the accepted forms."""

    __module__ = "framework0_errors"

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"bad state store URL {_redact(url)!r}: {reason}; use {_FORMS}")


class StoreUnavailableError(Framework0Error):
    """The state store cannot be reached or used (server down, database locked, closed)."""

    __module__ = "framework0_errors"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run of a recipe as the store knows it; ``outcome`` is None while it runs."""

    run_id: str
    recipe_path: str
    recipe_hash: str
    started_at: float
    updated_at: float
    finished_at: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Checkpoint(RunSummary):
    """A run's Context and step outcomes, each assembled from every save, as JSON data."""

    context: dict[str, Any] = field(default_factory=dict)
    step_outcomes: dict[str, Any] = field(default_factory=dict)


class Store(BreakerStore, BulkheadStore, Protocol):
    """Everything a run keeps between processes: breakers, bulkheads, history, checkpoints.

    Error history keeps the newest ``error_retention`` records; runs keep the newest
    ``run_retention`` runs. Lists come newest first. Records, Context values and step
    outcomes must be JSON-serialisable; they come back as JSON data (tuples become lists).
    Context keys and step names must be strings.
    """

    def snapshots(self, names: Sequence[str], *, now: float) -> list[BreakerSnapshot]:
        """Return ``snapshot(name, now=now)`` of each of ``names``, in that order.

        What a run asks at its end, for every breaker it used, and what
        ``framework0 breakers`` lists: in one read of the store where it can,
        not one per name.
        """
        ...

    def append_error(self, record: Mapping[str, Any]) -> None:
        """Add one error record (``ErrorRecord.to_dict()``) to the history."""
        ...

    def recent_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return up to ``limit`` error records, newest first."""
        ...

    def save_checkpoint(
        self,
        run_id: str,
        *,
        recipe_path: str,
        recipe_hash: str,
        context: Mapping[str, Any],
        step_outcomes: Mapping[str, Any],
    ) -> None:
        """Merge ``context`` and ``step_outcomes`` into what the run has stored.

        In one transaction; the run counts as running again. The run's Context and its
        step outcomes are merged alike: each entry given is added to the run's map, or
        replaces the stored value of the same key (Context key or step name); keys not
        given keep their stored value. Nothing is ever deleted, as the Context never
        deletes keys, so a caller passes only the keys set and the outcomes noted since
        its last save (``Context.changes_since``). The first save of a run stores what it
        is given; passing everything again is correct but costs what it passes. A save
        costs in proportion to the entries given, not to what the run has stored. Both
        maps load in the order their keys were first saved. If a key is not a string or
        a value is not JSON-serialisable (TypeError), nothing is saved. A
        :class:`JsonText` value is saved as the JSON it holds.
        """
        ...

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Return the run's Context and step outcomes as merged so far, or None if unknown."""
        ...

    def latest_run(self, recipe_path: str) -> Checkpoint | None:
        """Return the checkpoint of the run of ``recipe_path`` started last, or None."""
        ...

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Return up to ``limit`` runs, the last started first."""
        ...

    def finish_run(self, run_id: str, outcome: str) -> None:
        """Mark the run finished with ``outcome``; raises KeyError for an unknown run."""
        ...

    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
        ...


def default_state_url(environ: Mapping[str, str]) -> str:
    """Return the store URL to use when no ``--state`` is given.

    ``environ[STATE_ENV_VAR]`` if it is set and not blank, else :data:`DEFAULT_STATE_URL`.
    """
    return environ.get(STATE_ENV_VAR, "").strip() or DEFAULT_STATE_URL


def open_store(
    url: str, *, error_retention: int = 1000, run_retention: int = 1000, timeout: float = 2.0
) -> Store:
    """Open the store a URL names; the caller must :meth:`~Store.close` it.

    Args:
        url: ``sqlite:PATH`` (relative to the working directory; folders are created;
            ``sqlite:`` alone means ``.framework0/state.db``), ``redis://HOST:PORT/DB``
            (also ``rediss://`` and ``redis://USER:PASSWORD@…``; ``?prefix=NAME`` keeps
            the keys of separate fleets apart; default prefix ``framework0``) or
            ``memory:`` (this process only).
        error_retention: Error records kept in the history.
        run_retention: Runs (with their checkpoints) kept.
        timeout: Seconds to wait for a Redis server to answer.

    Raises:
        StoreURLError: ``url`` is none of the forms above.
        StoreUnavailableError: The database cannot be opened or the server does not answer.
    """
    url = url.strip()
    knobs: dict[str, Any] = {"error_retention": error_retention, "run_retention": run_retention}
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise StoreURLError(url, "no scheme")
    if scheme == "memory":
        if rest:
            raise StoreURLError(url, "memory: takes nothing after the colon")
        return MemoryStateStore(**knobs)
    if scheme == "sqlite":
        from framework0_errors.stores.sqlite import SQLiteStore

        return SQLiteStore(_sqlite_path(url, rest), **knobs)
    if scheme in ("redis", "rediss"):
        from framework0_errors.stores.redis import RedisStore

        server_url, prefix = _redis_parts(url)
        return RedisStore(server_url, prefix=prefix, timeout=timeout, **knobs)
    raise StoreURLError(url, f"unknown scheme {scheme!r}")


def _sqlite_path(url: str, text: str) -> Path:
    text = text or DEFAULT_STATE_URL.removeprefix("sqlite:")
    if text == ":memory:":
        raise StoreURLError(url, "an in-memory SQLite database is not shared; use memory:")
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def _redis_parts(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError:
        raise StoreURLError(url, "the port must be a number from 0 to 65535") from None
    if not re.fullmatch(r"/?(\d+)?", parts.path):
        raise StoreURLError(url, f"the database must be a number, not {parts.path[1:]!r}")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"prefix"})
    if unknown or parts.fragment:
        extra = ", ".join(unknown) or f"#{parts.fragment}"
        raise StoreURLError(url, f"only ?prefix=NAME may follow the database, not {extra}")
    prefixes = query.get("prefix", ["framework0"])
    if len(prefixes) != 1 or not prefixes[0]:
        raise StoreURLError(url, "give one non-empty ?prefix=NAME")
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")), prefixes[0]


def _redact(url: str) -> str:
    # Never print a password given in a URL's user-info part.
    return re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)


class MemoryStateStore(MemoryStore):
    """:class:`MemoryStore` with error history and run checkpoints: ``memory:``.

    Everything lives as long as the object, in this process. Records, Context values and
    step outcomes are kept as JSON text, so they behave exactly as in the durable stores.
    """

    def __init__(
        self,
        *,
        error_retention: int = 1000,
        run_retention: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.error_retention = check_retention("error_retention", error_retention)
        self.run_retention = check_retention("run_retention", run_retention)
        self._clock = clock
        self._errors: list[str] = []
        # run_id -> row; dicts keep insertion order, which is start order
        self._runs: dict[str, dict[str, Any]] = {}
        # run_id -> (kind, key) -> JSON text, in the order the keys were first saved
        self._entries: dict[str, dict[tuple[str, str], str]] = {}

    def append_error(self, record: Mapping[str, Any]) -> None:
        """Add one error record (``ErrorRecord.to_dict()``) to the history."""
        text = json.dumps(dict(record))
        with self._lock:
            self._errors.append(text)
            del self._errors[: -self.error_retention]

    def recent_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return up to ``limit`` error records, newest first."""
        with self._lock:
            texts = self._errors[::-1][: check_limit(limit)]
        return [json.loads(text) for text in texts]

    def save_checkpoint(
        self,
        run_id: str,
        *,
        recipe_path: str,
        recipe_hash: str,
        context: Mapping[str, Any],
        step_outcomes: Mapping[str, Any],
    ) -> None:
        """Merge ``context`` and ``step_outcomes`` into what the run has stored."""
        entries = entry_texts(context=context, step_outcomes=step_outcomes)
        now = self._clock()
        with self._lock:
            old = self._runs.get(run_id)
            # Assigning to an existing key keeps its place, so the dict stays in start order.
            self._runs[run_id] = {
                "run_id": run_id,
                "recipe_path": recipe_path,
                "recipe_hash": recipe_hash,
                "started_at": now if old is None else old["started_at"],
                "updated_at": now,
                "finished_at": None,
                "outcome": None,
            }
            stored = self._entries.setdefault(run_id, {})
            for kind, key, text in entries:
                stored[kind, key] = text
            while len(self._runs) > self.run_retention:
                gone = next(iter(self._runs))
                del self._runs[gone], self._entries[gone]

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Return the run's Context and step outcomes as merged so far, or None if unknown."""
        with self._lock:
            row = self._runs.get(run_id)
            return None if row is None else self._checkpoint(row)

    def latest_run(self, recipe_path: str) -> Checkpoint | None:
        """Return the checkpoint of the run of ``recipe_path`` started last, or None."""
        with self._lock:
            rows = [r for r in self._runs.values() if r["recipe_path"] == recipe_path]
            return self._checkpoint(rows[-1]) if rows else None

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Return up to ``limit`` runs, the last started first."""
        with self._lock:
            rows = list(self._runs.values())[::-1][: check_limit(limit)]
        return [summary_from(row) for row in rows]

    def finish_run(self, run_id: str, outcome: str) -> None:
        """Mark the run finished with ``outcome``; raises KeyError for an unknown run."""
        check_outcome(outcome)
        with self._lock:
            if run_id not in self._runs:
                raise KeyError(f"no run {run_id!r} in the store")
            self._runs[run_id].update(outcome=outcome, finished_at=self._clock())

    def close(self) -> None:
        """Nothing to release: the state goes with the object."""

    def _checkpoint(self, row: Mapping[str, Any]) -> Checkpoint:
        # Called under the lock: the entries are read as one save left them.
        entries = self._entries[row["run_id"]].items()
        return checkpoint_from(row, [(kind, key, text) for (kind, key), text in entries])


# -- helpers shared by the stores ------------------------------------------------------

# The per-run maps a checkpoint merges, stored alike as (kind, key, JSON text) entries:
# the kind's name in the stores, the Checkpoint field it loads into, what its keys are.
_ENTRY_KINDS = (("context", "context", "Context keys"), ("outcome", "step_outcomes", "step names"))
ENTRY_FIELDS = {kind: field for kind, field, _ in _ENTRY_KINDS}
"""Each entry kind and the :class:`Checkpoint` field it loads into."""


def check_retention(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


def check_limit(limit: int) -> int:
    """Return ``limit`` if it is an integer >= 0, else raise ValueError."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0; got {limit!r}")
    return limit


def check_outcome(outcome: str) -> None:
    """Raise ValueError unless ``outcome`` is a non-empty string."""
    if not isinstance(outcome, str) or not outcome:
        raise ValueError(f"outcome must be a non-empty string; got {outcome!r}")


def summary_from(row: Mapping[str, Any]) -> RunSummary:
    """Build a :class:`RunSummary` from a stored row (numbers may arrive as text)."""
    finished = row.get("finished_at")
    return RunSummary(
        run_id=str(row["run_id"]),
        recipe_path=str(row["recipe_path"]),
        recipe_hash=str(row["recipe_hash"]),
        started_at=float(row["started_at"]),
        updated_at=float(row["updated_at"]),
        finished_at=None if finished in (None, "") else float(finished),
        outcome=row.get("outcome") or None,
    )


def _json_text_function() -> Callable[[Any], str]:
    # json.dumps builds a new encoder on every call of a list or a dict, which is
    # most of its cost for the small values of a checkpoint; one C encoder built
    # once, with json.dumps's defaults, gives the same text. Where the C encoder
    # is missing or differs, json.dumps itself is used.
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring_ascii,
        )

        encode = c_make_encoder(
            None, _unserialisable, encode_basestring_ascii, None, ": ", ", ", False, False, True
        )
        sample = {"a": [1, 2.5, None, True, "\u00e9"], "b": {"c": -0.0}}
        if "".join(encode(sample, 0)) != json.dumps(sample):  # pragma: no cover
            return json.dumps
    except Exception:  # pragma: no cover - a Python without the C accelerator
        return json.dumps

    def text(value: Any) -> str:
        if type(value) is str:
            return json.dumps(value)
        return "".join(encode(value, 0))

    return text


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


json_text = _json_text_function()
"""``json.dumps(value)`` for JSON data, cheaper for lists and dicts; TypeError for others."""


class JsonText(str):
    """JSON text given to a store in place of the value it encodes: saved as it is.

    For a writer that knows its value's text for less than encoding it costs
    (a record of fixed shape, written every step). The text must be exactly
    ``json.dumps(value)``: a checkpoint loads it back with ``json.loads``.
    """

    __slots__ = ()


def entry_texts(
    *, context: Mapping[str, Any], step_outcomes: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """Return the ``(kind, key, JSON text)`` entries of a save, Context keys first.

    Raises:
        TypeError: A key is not a string (each is stored as given, not through JSON, so
            ``1`` or ``True`` would come back under another name), or JSON cannot hold
            a value.
    """
    entries = []
    # One object under several keys in a row (the records of untouched breakers)
    # is encoded once.
    last: Any = _NOTHING
    text = ""
    for (kind, _, keys_are), given in zip(_ENTRY_KINDS, (context, step_outcomes), strict=True):
        for key, value in given.items():
            if not isinstance(key, str):
                raise TypeError(f"{keys_are} must be strings; got {key!r}")
            if value is not last:
                text = value if type(value) is JsonText else json_text(value)
                last = value
            entries.append((kind, key, text))
    return entries


_NOTHING: Any = object()


def checkpoint_from(row: Mapping[str, Any], entries: Iterable[tuple[str, str, str]]) -> Checkpoint:
    """Build a :class:`Checkpoint` from a run row and its ``(kind, key, JSON text)`` entries.

    Entries come in the order their keys were first saved, and a later entry of the same
    kind and key wins. A row may also hold a kind's whole map as one JSON object under
    the Checkpoint field's name (as runs saved before entries were kept one by one do):
    the entries are merged over it, after its keys.
    """
    maps: dict[str, dict[str, Any]] = {
        field: json.loads(row[field]) if row.get(field) else {} for field in ENTRY_FIELDS.values()
    }
    for kind, key, text in entries:
        maps[ENTRY_FIELDS[kind]][key] = json.loads(text)
    summary = summary_from(row)
    return Checkpoint(
        **{name: getattr(summary, name) for name in RunSummary.__dataclass_fields__},
        context=maps["context"],
        step_outcomes=maps["step_outcomes"],
    )
