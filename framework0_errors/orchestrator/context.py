"""The Framework0 Context: shared, JSON-serialisable state with a history of changes."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .problems import Framework0Error

__all__ = ["Change", "Context", "ContextValueError", "DiscardedWrite", "StepContext"]

_MISSING = object()


class ContextValueError(Framework0Error, TypeError):
    """A value given to ``Context.set`` cannot be stored as JSON."""

    __module__ = "framework0_errors"


class Change(NamedTuple):
    """One change of a Context key: who set it, when, from what to what."""

    # A named tuple: as immutable as a frozen dataclass, and cheap to make.
    key: str
    before: Any
    after: Any
    who: str | None
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """Return the change as a JSON-ready mapping."""
        return {
            "key": self.key,
            "before": self.before,
            "after": self.after,
            "who": self.who,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class DiscardedWrite:
    """A write that arrived after its writer was fenced, and so did not land."""

    key: str
    who: str | None
    reason: str
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """Return the discarded write as a JSON-ready mapping."""
        return {
            "key": self.key,
            "who": self.who,
            "reason": self.reason,
            "timestamp": self.timestamp,
        }


def _refused(key: str, value: Any, who: str | None, exc: BaseException) -> ContextValueError:
    by = f" (set by step '{who}')" if who else ""
    return ContextValueError(
        f"context key '{key}'{by}: value of type {type(value).__name__} is not "
        f"JSON-serialisable ({exc}); store plain dicts, lists, strings, numbers, "
        "booleans or None"
    )


def _checked_copy(key: str, value: Any, who: str | None) -> Any:
    if not isinstance(key, str) or not key:
        raise ContextValueError(f"context keys are non-empty strings, not {key!r}")
    try:
        return value if type(value) in _IMMUTABLE else _plain_copy(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refused(key, value, who, exc) from None


_IMMUTABLE = frozenset({str, int, bool, type(None)})
_isfinite = math.isfinite


def _plain_copy(value: Any) -> Any:
    # A copy decouples the stored value from the caller's object. Plain JSON
    # types are copied by hand, which is several times cheaper than a JSON
    # round trip for the small values steps usually store. Callers keep
    # str, int, bool and None themselves (see _IMMUTABLE): no call for those.
    kind = type(value)
    if kind is dict:
        # Most values are flat records (strings, numbers, None): once checked,
        # they are copied at C speed.
        for key, item in value.items():
            if type(key) is not str or type(item) not in _IMMUTABLE:
                if type(key) is str and type(item) is float and _isfinite(item):
                    continue
                break
        else:
            return value.copy()
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                break
            out[key] = item if type(item) in _IMMUTABLE else _plain_copy(item)
        else:
            return out
    elif kind is list or kind is tuple:
        return [item if type(item) in _IMMUTABLE else _plain_copy(item) for item in value]
    elif kind is float:
        if not _isfinite(value):
            raise ValueError(f"{value} is not allowed in JSON")
        return value
    # Subclasses (IntEnum, str enums, OrderedDict) and non-string keys: JSON decides.
    return json.loads(json.dumps(value, allow_nan=False))


_CONTAINERS = frozenset({dict, list})


def _copy_stored(value: Any) -> Any:
    # A copy of a value set() stored, which holds only plain JSON types (dicts
    # with string keys, lists, atoms), so there is nothing left to check.
    kind = type(value)
    if kind is dict:
        for item in value.values():
            if type(item) in _CONTAINERS:
                return {key: _copy_stored(item) for key, item in value.items()}
        return value.copy()
    if kind is list:
        return [_copy_stored(item) if type(item) in _CONTAINERS else item for item in value]
    return value


class Context:
    """Framework0's Context: ``get``, ``set``, ``keys``, ``to_dict``, ``history``.

    Keys are strings; dotted keys (``errors.fetch``) are stored as given, and
    ``get("errors")`` on a key that is only a prefix returns the nested mapping
    of every key below it. Values must be JSON-serialisable; ``set`` refuses
    others with :class:`ContextValueError`. Safe to use from several threads.
    """

    def __init__(
        self,
        initial: dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        history_limit: int = 100_000,
    ) -> None:
        # Not reentrant: cheaper, and no method calls another while holding it.
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        # Plain (key, before, after, who, timestamp) tuples, made Changes when
        # asked for: every set() adds one, and a plain tuple costs a fraction of
        # a named one to build and to keep (the garbage collector untracks it).
        self._history: list[tuple[str, Any, Any, str | None, float]] = []
        self._discarded: list[DiscardedWrite] = []
        self._clock = clock
        self._history_limit = history_limit
        # The version before the oldest change still kept; the current version
        # is this plus len(self._history), as each set() appends one change.
        self._history_base = 0
        for key, value in (initial or {}).items():
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        """Return a copy of the value of ``key``, the mapping below a prefix, or ``default``."""
        # One dict lookup is atomic, and a stored value is never changed in
        # place (set() replaces it), so an existing key needs no lock.
        value = self._data.get(key, _MISSING)
        if value is not _MISSING:
            # A copy: changing it in place must not bypass set() (its JSON
            # check, its history, the fence of a timed-out attempt).
            return value if type(value) in _IMMUTABLE else _copy_stored(value)
        with self._lock:
            prefix = key + "."
            below = {k[len(prefix) :]: v for k, v in self._data.items() if k.startswith(prefix)}
        if not below:
            return default
        return _copy_stored(_nest(below))

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def set(self, key: str, value: Any, who: str | None = None) -> None:
        """Store ``value`` under ``key``, recording ``who`` changed it.

        Raises:
            ContextValueError: when ``value`` is not JSON-serialisable.
        """
        stored = _checked_copy(key, value, who)
        # `with`, not acquire() then try: a Ctrl-C landing between those two
        # would leave the lock held, and the next checkpoint waiting for ever.
        with self._lock:
            self._set_locked(key, stored, who)

    def set_owned(self, key: str, value: Any, who: str | None = None) -> None:
        """Store ``value`` under ``key`` as it is, without :meth:`set`'s check and copy.

        For records a plugin builds for the Context on every step, or for
        many names at once (recovery state, say): the caller guarantees that
        ``value`` holds only plain JSON types (dicts with string keys, lists,
        strings, finite numbers, booleans, None) and hands it over, never
        changing it afterwards.
        Anything else goes through :meth:`set`.
        """
        # _set_locked's body, inline: this runs once per step.
        data = self._data
        history = self._history
        with self._lock:
            before = data.get(key)
            data[key] = value
            if len(history) >= self._history_limit:
                self._trim_history()
            history.append((key, before, value, who, self._clock()))

    def set_owned_many(self, items: Iterable[tuple[str, Any]], who: str | None = None) -> None:
        """:meth:`set_owned` each ``(key, value)`` in turn, under one lock and one clock reading.

        For a plugin writing many records at once (the state of every breaker
        a run used, say); the same guarantee on each value as :meth:`set_owned`.
        The writes are one change each, as with :meth:`set_owned`.
        """
        data = self._data
        history = self._history
        with self._lock:
            now = self._clock()
            for key, value in items:
                before = data.get(key)
                data[key] = value
                if len(history) >= self._history_limit:
                    self._trim_history()
                history.append((key, before, value, who, now))

    def changes_since(
        self, version: int, *, exclude: Collection[str] = (), copies: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """Return what was set after ``version``: a version to ask from next, and values.

        Version 0 is the empty Context; each ``set`` or ``set_owned`` adds
        one. The values are copies of each key's last write after
        ``version``, leaving out writes by the writers (``who``) in
        ``exclude``, such as steps still running: a
        checkpoint must not record half of a step's work. The version returned
        is the current one, or, when writes were left out, the one just before
        the first of them, so that they come back once their writer is done.
        Costs time in proportion to the writes since ``version``; if the
        history no longer reaches back that far, every key is returned.
        ``copies=False`` returns the stored values themselves in a new dict,
        for a caller that only reads them (to save them elsewhere) and never
        changes them.
        """
        # A stored value is replaced by set(), never changed in place, so sharing is safe.
        copy: Callable[[dict[str, Any]], dict[str, Any]] = _copy_stored if copies else dict
        with self._lock:
            current = self._history_base + len(self._history)
            if version < self._history_base:
                return current, copy(self._data)
            changed: dict[str, Any] = {}
            resume_from = current
            for offset, (key, _, after, who, _) in enumerate(
                self._history[version - self._history_base :]
            ):
                if who in exclude:
                    resume_from = min(resume_from, version + offset)
                    continue
                changed.pop(key, None)  # keep keys in the order of their last write
                changed[key] = after
            return resume_from, copy(changed)

    def keys(self) -> list[str]:
        """Return the keys, in the order they were first set."""
        with self._lock:
            return list(self._data)

    def to_dict(self) -> dict[str, Any]:
        """Return a copy of every key and value."""
        with self._lock:
            return json.loads(json.dumps(self._data))  # type: ignore[no-any-return]

    def history(self) -> list[Change]:
        """Return every change so far, oldest first, with copies of the values."""
        with self._lock:
            changes = list(self._history)
        # Copies, as get() gives: a stored value is never changed in place, and
        # one may be stored under several keys.
        return [
            Change(key, _copy_stored(before), _copy_stored(after), who, when)
            for key, before, after, who, when in changes
        ]

    def discarded(self) -> list[DiscardedWrite]:
        """Return the writes that were refused because their writer had been fenced."""
        with self._lock:
            return list(self._discarded)

    def writer(self, who: str | None) -> StepContext:
        """Return a view that attributes writes to ``who`` and can be fenced."""
        return StepContext(self, who)

    def _set_locked(self, key: str, stored: Any, who: str | None) -> None:
        # Called with self._lock held; ``stored`` is already a checked copy.
        data = self._data
        before = data.get(key)
        data[key] = stored
        history = self._history
        if len(history) >= self._history_limit:
            self._trim_history()
        history.append((key, before, stored, who, self._clock()))

    def _trim_history(self) -> None:
        # Called with self._lock held.
        dropped = self._history_limit // 10 or 1
        del self._history[:dropped]
        self._history_base += dropped

    def _discard_locked(self, key: str, who: str | None, reason: str) -> None:
        # Called with self._lock held.
        self._discarded.append(DiscardedWrite(key, who, reason, self._clock()))


class StepContext:
    """The Context as one step attempt sees it.

    Writes are attributed to the step unless ``who`` is given. Once
    :meth:`fence` is called (an attempt was abandoned after its timeout), its
    writes no longer land; they are recorded in ``Context.discarded()``.
    """

    __slots__ = ("_context", "_fence_reason", "who")

    def __init__(self, context: Context, who: str | None) -> None:
        self._context = context
        self.who = who
        self._fence_reason: str | None = None

    @property
    def root(self) -> Context:
        """The shared Context behind this view."""
        return self._context

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key`` (see :meth:`Context.get`)."""
        return self._context.get(key, default)

    def set(self, key: str, value: Any, who: str | None = None) -> None:
        """Store ``value`` unless this view was fenced (see :meth:`Context.set`)."""
        by = who if who is not None else self.who
        context = self._context
        lock = context._lock
        try:
            stored = _checked_copy(key, value, by)
        except ContextValueError:
            # A fenced view discards a write without judging it.
            with lock:
                if self._fence_reason is not None:
                    context._discard_locked(key, by, self._fence_reason)
                    return
            raise
        # Checked and written under the Context's lock, which fence() also
        # takes: a write either lands before the fence or not at all.
        with lock:
            if self._fence_reason is None:
                context._set_locked(key, stored, by)
            else:
                context._discard_locked(key, by, self._fence_reason)

    def keys(self) -> list[str]:
        """Return the Context's keys."""
        return self._context.keys()

    def to_dict(self) -> dict[str, Any]:
        """Return a copy of the Context's keys and values."""
        return self._context.to_dict()

    def history(self) -> list[Change]:
        """Return the Context's history."""
        return self._context.history()

    def __contains__(self, key: object) -> bool:
        return key in self._context

    def fence(self, reason: str) -> None:
        """Refuse every later write through this view, recording ``reason``."""
        with self._context._lock:
            self._fence_reason = reason

    @property
    def fenced(self) -> bool:
        """Whether writes through this view are refused."""
        return self._fence_reason is not None

    def child(self) -> StepContext:
        """Return a new view with the same writer, fenced independently."""
        return StepContext(self._context, self.who)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[parts[-1]] = value
    return out
