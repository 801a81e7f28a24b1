"""The SQLite store's tables, the statements that read and write runs, and upgrades.

Schema versions (``PRAGMA user_version``):

1. ``runs`` kept a run's Context and its step outcomes as two JSON columns, rewritten
   whole on every save.
2. Step outcomes moved to ``step_outcomes``, one row per (run, step); the Context stayed
   a JSON column.
3. (This one.) The Context and the step outcomes are both rows of ``run_entries``, one
   per (run, kind, key) with ``kind`` ``'context'`` or ``'outcome'``, so a save writes
   only the entries it is given; ``runs`` holds no JSON.

:func:`upgrade` brings a file of any older version to this one inside the caller's
write transaction, so a failed upgrade, rolled back, leaves the file as it was.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from framework0_errors.stores.select import StoreUnavailableError, entry_texts

__all__ = [
    "DROP_EXPIRED_SLOTS",
    "LOAD_BREAKER",
    "LOAD_BREAKERS",
    "LOAD_ENTRIES",
    "OLDEST_RUN_KEPT",
    "RUN_COLUMNS",
    "SAVE_ENTRY",
    "SAVE_RUN",
    "SCHEMA_VERSION",
    "SELECT_RUN",
    "TAKE_SLOT",
    "TRIM",
    "TRIM_ENTRIES",
    "check_version",
    "upgrade",
]

SCHEMA_VERSION = 3
RUN_COLUMNS = (
    *("run_id", "recipe_path", "recipe_hash", "started_at", "updated_at"),
    *("finished_at", "outcome"),
)
"""The columns of ``runs`` a :class:`~framework0_errors.stores.select.RunSummary` reads."""
SELECT_RUN = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
"""Reads :data:`RUN_COLUMNS` of the runs a ``WHERE``/``ORDER BY`` appended to it picks."""
_RUNS_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE,
    recipe_path TEXT NOT NULL, recipe_hash TEXT NOT NULL, started_at REAL NOT NULL,
    updated_at REAL NOT NULL, finished_at REAL, outcome TEXT
)"""
# Statements run in one BEGIN IMMEDIATE transaction (executescript would commit first).
_TABLES = (
    """CREATE TABLE IF NOT EXISTS breakers (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
    opened_at REAL, half_open_at REAL, trials INTEGER NOT NULL, epoch INTEGER NOT NULL
) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS bulkheads (name TEXT PRIMARY KEY) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS slots (
    bulkhead TEXT NOT NULL, holder TEXT NOT NULL, expires_at REAL,
    PRIMARY KEY (bulkhead, holder)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS errors (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL
)""",
    _RUNS_TABLE.format(name="runs"),
    "CREATE INDEX IF NOT EXISTS runs_by_recipe ON runs (recipe_path, seq)",
    # The rowid gives the order keys were first saved: an upsert keeps a row's rowid,
    # and a new row's rowid is above every row present, so above its run's other rows.
    """CREATE TABLE IF NOT EXISTS run_entries (
    run_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    UNIQUE (run_id, kind, key)
)""",
)

SAVE_RUN = (
    "INSERT INTO runs (run_id, recipe_path, recipe_hash, started_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET"
    " recipe_path = excluded.recipe_path, recipe_hash = excluded.recipe_hash,"
    " updated_at = excluded.updated_at, finished_at = NULL, outcome = NULL"
)
# An entry saved again unchanged is not rewritten: a caller that passes everything so
# far then pays a lookup per key, not a write.
SAVE_ENTRY = (
    "INSERT INTO run_entries (run_id, kind, key, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (run_id, kind, key) DO UPDATE SET value = excluded.value"
    " WHERE value IS NOT excluded.value"
)
LOAD_ENTRIES = "SELECT kind, key, value FROM run_entries WHERE run_id = ? ORDER BY rowid"
# Keeps the newest N rows of a table whose ``seq`` grows with each insert (OFFSET N - 1).
TRIM = (
    "DELETE FROM {table} WHERE seq < (SELECT seq FROM {table} ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)
# The seq of the oldest run to keep (OFFSET N - 1); none while fewer than N runs exist.
# A slot is taken (or a holder's lease renewed) only while fewer than the limit
# unexpired slots are held: (bulkhead, holder, expires_at, bulkhead, now, limit).
TAKE_SLOT = (
    "INSERT OR REPLACE INTO slots SELECT ?, ?, ? WHERE (SELECT count(*) FROM slots"
    " WHERE bulkhead = ? AND (expires_at IS NULL OR expires_at > ?)) < ?"
)
DROP_EXPIRED_SLOTS = "DELETE FROM slots WHERE bulkhead = ? AND expires_at <= ?"
OLDEST_RUN_KEPT = "SELECT seq FROM runs ORDER BY seq DESC LIMIT 1 OFFSET ?"
TRIM_ENTRIES = "DELETE FROM run_entries WHERE run_id IN (SELECT run_id FROM runs WHERE seq < ?)"
LOAD_BREAKER = (
    "SELECT state, failures, opened_at, half_open_at, trials, epoch FROM breakers WHERE name = ?"
)
LOAD_BREAKERS = (
    "SELECT name, state, failures, opened_at, half_open_at, trials, epoch FROM breakers "
    "WHERE name IN ({})"
)

# Each older version's JSON columns of ``runs``: the Context, then the step outcomes
# (version 2 has them in rows of ``step_outcomes`` already, moved as they are).
_WHOLE_COLUMNS = {1: "context, step_outcomes", 2: "context, '{}'"}
_MOVE_OUTCOME_ROWS = (
    "INSERT INTO run_entries (run_id, kind, key, value)"
    " SELECT run_id, 'outcome', step, outcome FROM step_outcomes ORDER BY rowid",
    "DROP TABLE step_outcomes",
)
# Rebuild ``runs`` without its JSON columns (ALTER TABLE DROP COLUMN needs SQLite 3.35);
# copying ``seq`` keeps start order, and AUTOINCREMENT goes on from the old table's.
_KEPT = f"seq, {', '.join(RUN_COLUMNS)}"
_DROP_JSON_COLUMNS = (
    _RUNS_TABLE.format(name="runs_new"),
    f"INSERT INTO runs_new ({_KEPT}) SELECT {_KEPT} FROM runs",
    "DROP TABLE runs",
    "ALTER TABLE runs_new RENAME TO runs",
    "CREATE INDEX runs_by_recipe ON runs (recipe_path, seq)",
)


def check_version(conn: sqlite3.Connection, path: Path) -> int:
    """Return the file's schema version (0: a new file).

    Raises:
        StoreUnavailableError: A newer framework0-errors wrote the file.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreUnavailableError(
            f"the state database {path} was written by a newer framework0-errors"
            f" (schema {version}; this one reads {SCHEMA_VERSION}); upgrade"
        )
    return int(version)


def upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`, in the caller's write transaction.

    A version-1 or version-2 file's JSON columns become entries, each map's keys in
    their stored order. The caller rolls back on any error, leaving the file as it was.

    Raises:
        StoreUnavailableError: The file is newer, or a run's stored Context or outcomes
            is not a JSON object.
    """
    # Read under the write lock: another process may have just upgraded the file.
    version = check_version(conn, path)
    try:
        _upgrade(conn, version)
    except (ValueError, TypeError) as exc:
        raise StoreUnavailableError(
            f"cannot upgrade the state database {path} from schema {version} to"
            f" {SCHEMA_VERSION}: a run's saved Context or step outcomes are not a JSON"
            f" object ({exc}); move the file away to start afresh"
        ) from exc


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    for statement in _TABLES:
        conn.execute(statement)
    columns = _WHOLE_COLUMNS.get(version)
    if columns is not None:
        query = f"SELECT run_id, {columns} FROM runs ORDER BY seq"
        for run_id, context, outcomes in conn.execute(query).fetchall():
            entries = entry_texts(
                context=_json_object(run_id, context),
                step_outcomes=_json_object(run_id, outcomes),
            )
            conn.executemany(SAVE_ENTRY, [(run_id, *entry) for entry in entries])
        for statement in _MOVE_OUTCOME_ROWS if version == 2 else ():
            conn.execute(statement)
        for statement in _DROP_JSON_COLUMNS:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _json_object(run_id: str, text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"run {run_id!r} has {type(value).__name__} where an object belongs")
    return value
