"""SQLite store: breaker, bulkhead, history and checkpoint state in one file, shared by processes.

Every state change runs in a ``BEGIN IMMEDIATE`` transaction: it takes the database's
write lock before reading, so two processes can never both read a state and both write
a change based on it. The database is in WAL mode, so readers never wait for a writer,
and writers wait for each other up to ``busy_timeout`` seconds.

The success path of a call reads only: ``before_call`` on a closed breaker and
``record_success`` on a closed breaker with no failures first look at the row without a
transaction, and return without taking the write lock when nothing needs to change.

A run's Context keys and step outcomes are rows of their own (one per run, kind and
key), so a checkpoint writes only the entries it is given. Opening a database of an
older schema upgrades it in place in one transaction (see
:mod:`~framework0_errors.stores.sqlite_schema`).

Bulkhead slots are leases: a slot whose holder was killed stays taken until its
``expires_at`` passes. Every ``now`` must be wall-clock time (``time.time``), because
other processes compare it with theirs. ``wait_for_slot`` cannot block on another
process's release, so it returns False and callers poll.

Keep the file on a local disk: WAL needs memory shared by every process using the file,
which network file systems do not give. Runners on several machines share state
through the Redis store instead.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from framework0_errors.stores import sqlite_schema as schema
from framework0_errors.stores.base import (
    Admission,
    BreakerSnapshot,
    BreakerState,
    Transition,
)
from framework0_errors.stores.select import (
    Checkpoint,
    RunSummary,
    StoreUnavailableError,
    check_limit,
    check_outcome,
    check_retention,
    checkpoint_from,
    entry_texts,
    summary_from,
)

__all__ = ["SQLiteStore"]

R = TypeVar("R")


class _Breaker(NamedTuple):
    """One row of ``breakers``; the same state machine as the memory store's.

    A named tuple, not a dataclass: it is built on every call, and tuples build fastest.
    """

    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float | None = None
    half_open_at: float | None = None
    trials: int = 0
    epoch: int = 0

    def moved(
        self, state: BreakerState, *, now: float | None = None, until: float | None = None
    ) -> _Breaker:
        """Return this breaker in ``state``, in a new epoch with no trials in flight."""
        if state == "closed":
            return _Breaker(epoch=self.epoch + 1)
        if state == "open":
            return self._replace(
                state=state, opened_at=now, half_open_at=until, trials=0, epoch=self.epoch + 1
            )
        return self._replace(state=state, trials=0, epoch=self.epoch + 1)

    def effective_state(self, now: float) -> BreakerState:
        """Read an open breaker whose ``half_open_at`` has passed as half-open."""
        if self.state == "open" and self.half_open_at is not None and now >= self.half_open_at:
            return "half_open"
        return self.state

    def snapshot(self, name: str, now: float) -> BreakerSnapshot:
        """Return this row as breaker ``name``'s snapshot at ``now``."""
        return BreakerSnapshot(
            name,
            self.effective_state(now),
            self.failures,
            self.opened_at,
            self.half_open_at,
            self.trials,
        )

    def is_current_trial(self, admission: Admission) -> bool:
        """Whether ``admission`` is a trial of this breaker's present half-open period."""
        return self.state == "half_open" and admission.trial and admission.epoch == self.epoch


# What a name never used reads as (a tuple: it cannot be changed).
_NEVER_USED = _Breaker()

# SQLite allows 999 parameters a statement in builds before 3.32.
_NAMES_PER_QUERY = 500

# Each decision takes the stored row (None: never seen) and returns the answer and the
# row to write (None: write nothing).
_Decision = tuple[R, _Breaker | None]


@functools.lru_cache(maxsize=1024)
def _closed_admission(epoch: int) -> Admission:
    # Admissions are frozen, so the closed one of each epoch can be shared.
    return Admission(allowed=True, state="closed", epoch=epoch)


def _admit(b: _Breaker | None, name: str, now: float, max_trials: int) -> _Decision[Admission]:
    if b is None or b.state == "closed":
        return _closed_admission(b.epoch if b else 0), None
    transition = None
    if b.state == "open":
        if b.half_open_at is None or now < b.half_open_at:
            retry_at = math.inf if b.half_open_at is None else b.half_open_at
            return Admission(False, "open", epoch=b.epoch, retry_at=retry_at), None
        b = b.moved("half_open")
        transition = Transition(name, "open", "half_open")
    if b.trials >= max_trials:
        return Admission(False, "half_open", epoch=b.epoch, retry_at=now), (
            b if transition else None
        )
    b = b._replace(trials=b.trials + 1)
    return Admission(True, "half_open", trial=True, epoch=b.epoch, transition=transition), b


def _succeed(b: _Breaker | None, name: str, admission: Admission) -> _Decision[Transition | None]:
    if b is None or (b.state == "closed" and not b.failures):
        return None, None
    if b.state == "closed":
        return None, b._replace(failures=0)
    if b.is_current_trial(admission):
        return Transition(name, "half_open", "closed"), b.moved("closed")
    return None, None


def _fail(
    b: _Breaker | None, name: str, admission: Admission, *, now: float, threshold: int, until: float
) -> _Decision[Transition | None]:
    b = b or _Breaker()
    if b.state == "closed":
        b = b._replace(failures=b.failures + 1)
        if b.failures < threshold:
            return None, b
        return Transition(name, "closed", "open"), b.moved("open", now=now, until=until)
    if b.is_current_trial(admission):
        b = b._replace(failures=b.failures + 1)
        return Transition(name, "half_open", "open"), b.moved("open", now=now, until=until)
    # A call admitted before the breaker opened, or a stale trial: the breaker has
    # already reacted to the failures that matter.
    return None, None


class SQLiteStore:
    """Breaker, bulkhead, error-history and checkpoint state in a SQLite file.

    Implements :class:`~framework0_errors.stores.select.Store`. Safe to share between
    threads (each operation borrows a connection from a small pool) and between
    processes (each change is one ``BEGIN IMMEDIATE`` transaction).

    Args:
        path: The database file; missing folders are created.
        busy_timeout: Seconds a change waits for another writer's lock before
            :class:`StoreUnavailableError`.
        error_retention: Error records kept; older ones are deleted as new ones arrive.
        run_retention: Runs kept, with their checkpoints; the first started go first.
        clock: Wall-clock seconds for the run timestamps.

    Raises:
        StoreUnavailableError: The folder or the database cannot be created or opened.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 10.0,
        error_retention: int = 1000,
        run_retention: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.error_retention = check_retention("error_retention", error_retention)
        self.run_retention = check_retention("run_retention", run_retention)
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        # Bulkhead names this object has recorded: set.add and `in` are atomic.
        self._bulkheads_known: set[str] = set()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the folder of the state database {self.path}: {exc}"
            ) from exc
        try:
            self._create_schema()
        except BaseException:
            self.close()
            raise

    # -- circuit breakers ----------------------------------------------------------

    def before_call(self, name: str, *, now: float, half_open_max_calls: int) -> Admission:
        """Admit or refuse one call, turning open into half_open once its time has come."""
        return self._change(name, lambda b: _admit(b, name, now, half_open_max_calls), peek=True)

    def record_success(self, name: str, *, now: float, admission: Admission) -> Transition | None:
        """Record that an admitted call succeeded; a current trial closes the breaker."""
        return self._change(name, lambda b: _succeed(b, name, admission), peek=True)

    def record_failure(
        self,
        name: str,
        *,
        now: float,
        admission: Admission,
        failure_threshold: int,
        recovery_timeout: float,
    ) -> Transition | None:
        """Record a failed call: open at ``failure_threshold``, reopen on a failed trial."""
        until = now + recovery_timeout
        return self._change(
            name,
            lambda b: _fail(b, name, admission, now=now, threshold=failure_threshold, until=until),
            peek=False,
        )

    def release_trial(self, name: str, *, admission: Admission) -> None:
        """Free a trial slot without a verdict (the call was interrupted)."""

        def release(b: _Breaker | None) -> _Decision[None]:
            if b is None or not b.is_current_trial(admission):
                return None, None
            return None, b._replace(trials=b.trials - 1)

        self._change(name, release, peek=False)

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        """Return the breaker's current state without changing it."""
        found = self._query(schema.LOAD_BREAKER, name)
        return (_Breaker(*found[0]) if found else _NEVER_USED).snapshot(name, now)

    def snapshots(self, names: Sequence[str], *, now: float) -> list[BreakerSnapshot]:
        """Return :meth:`snapshot` of each of ``names``, in that order, a query per 500 names."""
        found: dict[str, _Breaker] = {}
        for start in range(0, len(names), _NAMES_PER_QUERY):
            chunk = names[start : start + _NAMES_PER_QUERY]
            query = schema.LOAD_BREAKERS.format(", ".join("?" * len(chunk)))
            for name, *row in self._query(query, *chunk):
                found[name] = _Breaker(*row)
        return [found.get(name, _NEVER_USED).snapshot(name, now) for name in names]

    def reset(self, name: str, *, now: float) -> Transition | None:
        """Close the breaker and forget its failures."""

        def close(b: _Breaker | None) -> _Decision[Transition | None]:
            if b is None:
                return None, None
            old = b.effective_state(now)
            return (None if old == "closed" else Transition(name, old, "closed")), b.moved("closed")

        return self._change(name, close, peek=False)

    def force_open(self, name: str, *, now: float, until: float | None = None) -> Transition | None:
        """Open the breaker by hand, until ``until`` (None: until :meth:`reset`)."""

        def force(b: _Breaker | None) -> _Decision[Transition | None]:
            b = b or _Breaker()
            old = b.effective_state(now)
            new = b.moved("open", now=now, until=until)
            return (None if old == "open" else Transition(name, old, "open")), new

        return self._change(name, force, peek=False)

    def breaker_names(self) -> list[str]:
        """Return the names of breakers with recorded state, sorted."""
        return sorted(name for (name,) in self._query("SELECT name FROM breakers"))

    def _change(
        self, name: str, decide: Callable[[_Breaker | None], _Decision[R]], *, peek: bool
    ) -> R:
        if peek:
            # A plain read first: when nothing needs writing, which is every call on a
            # healthy breaker, the answer comes without taking the write lock.
            found = self._query(schema.LOAD_BREAKER, name)
            answer, row = decide(_Breaker(*found[0]) if found else None)
            if row is None:
                return answer
        with self._transaction() as conn:
            found = conn.execute(schema.LOAD_BREAKER, (name,)).fetchall()
            answer, row = decide(_Breaker(*found[0]) if found else None)
            if row is not None:
                values = (row.state, row.failures, row.opened_at, row.half_open_at)
                conn.execute(
                    "INSERT OR REPLACE INTO breakers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, *values, row.trials, row.epoch),
                )
        return answer

    # -- bulkheads -----------------------------------------------------------------

    def try_acquire(
        self, name: str, *, limit: int, holder_id: str, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        expires_at = None if lease_seconds is None else now + lease_seconds
        take = (name, holder_id, expires_at, name, now, limit)
        with self._transaction() as conn:
            if name not in self._bulkheads_known:
                conn.execute("INSERT OR IGNORE INTO bulkheads VALUES (?)", (name,))
            # Counting and taking in one statement: the common case costs one write.
            if conn.execute(schema.TAKE_SLOT, take).rowcount:
                taken = True
            else:
                # Full: leases that ran out do not count, and their rows go now.
                conn.execute(schema.DROP_EXPIRED_SLOTS, (name, now))
                taken = False
        self._bulkheads_known.add(name)
        return taken

    def release(self, name: str, *, holder_id: str) -> None:
        """Give a slot back; releasing a slot not held is a no-op."""
        self._query("DELETE FROM slots WHERE bulkhead = ? AND holder = ?", name, holder_id)

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        """Return False: releases happen in other processes, so the caller polls."""
        return False

    def in_use(self, name: str, *, now: float) -> int:
        """Return how many unexpired slots of ``name`` are held."""
        query = "SELECT count(*) FROM slots WHERE bulkhead = ?"
        query += " AND (expires_at IS NULL OR expires_at > ?)"
        return int(self._query(query, name, now)[0][0])

    def bulkhead_names(self) -> list[str]:
        """Return the names of bulkheads ever used, sorted."""
        return sorted(name for (name,) in self._query("SELECT name FROM bulkheads"))

    # -- error history and run checkpoints -----------------------------------------

    def append_error(self, record: Mapping[str, Any]) -> None:
        """Add one error record (``ErrorRecord.to_dict()``) to the history."""
        text = json.dumps(dict(record))
        with self._transaction() as conn:
            conn.execute("INSERT INTO errors (record) VALUES (?)", (text,))
            conn.execute(schema.TRIM.format(table="errors"), (self.error_retention - 1,))

    def recent_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return up to ``limit`` error records, newest first."""
        query = "SELECT record FROM errors ORDER BY seq DESC LIMIT ?"
        return [json.loads(text) for (text,) in self._query(query, check_limit(limit))]

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

        One transaction writes the run row and one ``run_entries`` row per entry given.
        """
        entries = entry_texts(context=context, step_outcomes=step_outcomes)
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(schema.SAVE_RUN, (run_id, recipe_path, recipe_hash, now, now))
            conn.executemany(schema.SAVE_ENTRY, [(run_id, *entry) for entry in entries])
            kept = conn.execute(schema.OLDEST_RUN_KEPT, (self.run_retention - 1,)).fetchone()
            if kept is not None:  # run_retention runs or more: delete those before them
                conn.execute(schema.TRIM_ENTRIES, kept)
                conn.execute("DELETE FROM runs WHERE seq < ?", kept)

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Return the run's Context and step outcomes as merged so far, or None if unknown."""
        return self._checkpoint("WHERE run_id = ?", run_id)

    def latest_run(self, recipe_path: str) -> Checkpoint | None:
        """Return the checkpoint of the run of ``recipe_path`` started last, or None."""
        return self._checkpoint("WHERE recipe_path = ? ORDER BY seq DESC LIMIT 1", recipe_path)

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Return up to ``limit`` runs, the last started first."""
        query = f"{schema.SELECT_RUN} ORDER BY seq DESC LIMIT ?"
        rows = self._query(query, check_limit(limit))
        return [summary_from(dict(zip(schema.RUN_COLUMNS, row, strict=True))) for row in rows]

    def finish_run(self, run_id: str, outcome: str) -> None:
        """Mark the run finished with ``outcome``; raises KeyError for an unknown run."""
        check_outcome(outcome)
        query = "UPDATE runs SET outcome = ?, finished_at = ? WHERE run_id = ?"
        with self._connection() as conn:
            changed = conn.execute(query, (outcome, self._clock(), run_id)).rowcount
        if not changed:
            raise KeyError(f"no run {run_id!r} in the store")

    def _checkpoint(self, where: str, value: str) -> Checkpoint | None:
        # One read transaction, so a save committed between the two reads is never half seen.
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                query = f"{schema.SELECT_RUN} {where}"
                found = conn.execute(query, (value,)).fetchall()
                entries = (
                    conn.execute(schema.LOAD_ENTRIES, (found[0][0],)).fetchall() if found else []
                )
            finally:
                conn.execute("COMMIT")
        if not found:
            return None
        return checkpoint_from(dict(zip(schema.RUN_COLUMNS, found[0], strict=True)), entries)

    # -- connections ---------------------------------------------------------------

    def close(self) -> None:
        """Close every connection; later operations raise :class:`StoreUnavailableError`."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _query(self, query: str, *params: Any) -> list[Any]:
        # One statement in autocommit mode (a read, or a write that needs no read first):
        # no transaction and no context manager, as this is the success path.
        conn = self._borrow()
        try:
            return conn.execute(query, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._give_back(conn)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._borrow()
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._give_back(conn)

    def _borrow(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"the state database {self.path} is closed")
            if self._idle:
                return self._idle.pop()
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            # WAL keeps every committed transaction consistent with NORMAL; a power cut
            # may only lose the last few.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise self._unavailable(exc) from exc
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and not conn.in_transaction:
                self._idle.append(conn)
                return
        conn.close()

    def _unavailable(self, exc: sqlite3.DatabaseError) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"the state database {self.path} cannot be used: {exc}. Check that it is a"
            " framework0 state database in a writable folder and that no process keeps"
            f" it locked longer than busy_timeout ({self.busy_timeout:g}s), or choose"
            " another store with --state or FRAMEWORK0_STATE"
        )

    def _create_schema(self) -> None:
        deadline = time.monotonic() + self.busy_timeout
        with self._connection() as conn:
            # Refuse a newer file before switching it to WAL, which would change it.
            schema.check_version(conn, self.path)
            # Switching to WAL needs a moment alone with the file and, unlike other
            # statements, fails at once instead of waiting for the busy timeout.
            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
        with self._transaction() as conn:
            schema.upgrade(conn, self.path)
