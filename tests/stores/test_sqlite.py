"""SQLiteStore: WAL, locking, a read-only success path, folders, closing and bad files."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.stores import Admission
from framework0_errors.stores.select import StoreUnavailableError, open_store
from framework0_errors.stores.sqlite import SQLiteStore

from .test_contract import save_entry

GENEROUS = 30.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    """A store that gives up on another writer's lock after 0.2 s."""
    opened = SQLiteStore(path, busy_timeout=0.2)
    yield opened
    opened.close()


@pytest.fixture
def writer(path: Path, store: SQLiteStore) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock for the whole test."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    conn.execute("ROLLBACK")
    conn.close()


def test_database_is_in_wal_mode_with_a_busy_timeout(store: SQLiteStore, path: Path) -> None:
    """The file is in WAL mode and every connection waits busy_timeout for a lock."""
    probe = sqlite3.connect(path)
    assert probe.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    probe.close()
    with store._connection() as conn:
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (200,)


def test_success_path_does_not_take_the_write_lock(
    store: SQLiteStore, writer: sqlite3.Connection
) -> None:
    """A healthy breaker admits and records success while another process holds the lock."""
    started = time.monotonic()
    for _ in range(50):
        admission = store.before_call("b", now=0.0, half_open_max_calls=1)
        assert store.record_success("b", now=0.0, admission=admission) is None
    assert time.monotonic() - started < 0.2  # never waited for the lock
    assert store.snapshot("b", now=0.0).state == "closed"
    assert store.in_use("db", now=0.0) == 0


def test_a_change_waits_for_the_lock_then_reports_the_store_unavailable(
    store: SQLiteStore, writer: sqlite3.Connection, path: Path
) -> None:
    """A failure to record while the lock stays taken raises StoreUnavailableError."""
    with pytest.raises(StoreUnavailableError, match="locked") as caught:
        store.record_failure(
            "b",
            now=0.0,
            admission=Admission(True, "closed"),
            failure_threshold=1,
            recovery_timeout=1.0,
        )
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, Framework0Error)
    assert caught.value.__module__ == "framework0_errors"
    with pytest.raises(StoreUnavailableError, match="locked"):
        store.try_acquire("db", limit=1, holder_id="a", lease_seconds=None, now=0.0)
    with pytest.raises(StoreUnavailableError, match="locked"):
        store.release("db", holder_id="a")
    writer.execute("ROLLBACK")
    assert store.try_acquire("db", limit=1, holder_id="a", lease_seconds=None, now=0.0)
    writer.execute("BEGIN IMMEDIATE")  # the fixture rolls back again at teardown


def test_state_is_shared_by_stores_on_the_same_file(path: Path) -> None:
    """A breaker opened through one store object is open for another, and after reopening."""
    first = SQLiteStore(path)
    second = SQLiteStore(path)
    admission = first.before_call("b", now=0.0, half_open_max_calls=1)
    first.record_failure(
        "b", now=0.0, admission=admission, failure_threshold=1, recovery_timeout=60.0
    )
    assert not second.before_call("b", now=1.0, half_open_max_calls=1).allowed
    first.close()
    second.close()
    reopened = SQLiteStore(path)
    assert reopened.snapshot("b", now=1.0).state == "open"
    reopened.close()


def test_open_store_creates_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite: alone opens .framework0/state.db in the working directory, creating the folder."""
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / ".framework0" / "state.db"
    store.close()
    assert (tmp_path / ".framework0" / "state.db").is_file()


def test_relative_paths_are_fixed_when_the_store_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative sqlite: path is resolved against the working directory at open time."""
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:deep/er/s.db")
    monkeypatch.chdir("/")
    store.append_error({"n": 1})
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "deep" / "er" / "s.db"
    store.close()


def test_a_closed_store_refuses_work(store: SQLiteStore) -> None:
    """Every operation after close raises StoreUnavailableError; close is idempotent."""
    store.close()
    store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.snapshot("b", now=0.0)


def test_a_connection_borrowed_while_closing_is_closed_on_return(store: SQLiteStore) -> None:
    """A connection in use when the store closes is closed, not pooled, when returned."""
    with store._connection() as conn:
        store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")


def test_an_error_inside_a_change_rolls_it_back(store: SQLiteStore) -> None:
    """An exception raised mid-transaction undoes it and leaves the store usable."""

    def half_done(b: object) -> tuple[None, None]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store._change("b", half_done, peek=False)
    assert store.breaker_names() == []
    assert store.force_open("b", now=0.0) is not None


def test_folder_that_cannot_be_created(tmp_path: Path) -> None:
    """A database path under a file raises StoreUnavailableError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailableError, match="cannot create the folder"):
        SQLiteStore(blocker / "state.db")


def test_a_path_that_is_a_folder(tmp_path: Path) -> None:
    """A database path naming a folder raises StoreUnavailableError naming it."""
    with pytest.raises(StoreUnavailableError, match="unable to open database file"):
        SQLiteStore(tmp_path)


def test_a_file_that_is_not_a_database(path: Path) -> None:
    """Opening a file that is not SQLite raises StoreUnavailableError."""
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StoreUnavailableError, match="file is not a database"):
        SQLiteStore(path)


def test_a_database_from_a_newer_version_is_refused(path: Path) -> None:
    """A schema version above this one's raises StoreUnavailableError asking to upgrade."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreUnavailableError, match="newer framework0-errors"):
        SQLiteStore(path)


@pytest.fixture
def rollback_journal_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """A fresh database in rollback-journal mode with another connection's write lock."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE other (x)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO other VALUES (1)")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def test_switching_to_wal_retries_until_the_lock_is_free(
    path: Path, rollback_journal_lock: sqlite3.Connection
) -> None:
    """The switch to WAL, refused at once while another writer works, is retried."""
    releaser = threading.Timer(0.05, lambda: rollback_journal_lock.execute("COMMIT"))
    releaser.start()
    store = SQLiteStore(path, busy_timeout=GENEROUS)
    releaser.join(timeout=GENEROUS)
    with store._connection() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_switching_to_wal_gives_up_after_the_busy_timeout(
    path: Path, rollback_journal_lock: sqlite3.Connection
) -> None:
    """A lock that is never released makes opening fail with StoreUnavailableError."""
    with pytest.raises(StoreUnavailableError, match="locked"):
        SQLiteStore(path, busy_timeout=0.05)


# -- checkpoint entries ----------------------------------------------------------------

NOW = 1_700_000_000.25
KINDS = ["context", "outcome"]


def save_cost(store: SQLiteStore, kind: str, key: str) -> tuple[int, int]:
    """Return the SQL text (values inlined) and the rows changed by one save of ``key``."""
    statements: list[str] = []
    with store._connection() as conn:
        # Single-threaded, so the save borrows this same pooled connection.
        conn.set_trace_callback(statements.append)
        changes = conn.total_changes
    save_entry(store, kind, key)
    with store._connection() as conn:
        conn.set_trace_callback(None)
        changes = conn.total_changes - changes
    assert any("INSERT INTO run_entries" in sql for sql in statements)
    return sum(len(sql) for sql in statements), changes


@pytest.mark.parametrize("kind", KINDS)
def test_a_save_costs_the_same_however_many_entries_are_stored(path: Path, kind: str) -> None:
    """One new key costs the same SQL and rows after 10 or 1000 stored; an unchanged one no row."""
    store = SQLiteStore(path, clock=lambda: NOW)
    try:
        for i in range(10):
            save_entry(store, kind, f"k{i:04d}")
        early = save_cost(store, kind, "k0010")
        for i in range(11, 1000):
            save_entry(store, kind, f"k{i:04d}")
        late = save_cost(store, kind, "k1000")
        assert early == late
        assert early[1] == 2  # the run row and the key's row
        assert save_cost(store, kind, "k0005")[1] == 1  # saved again unchanged: the run row
        loaded = store.load_checkpoint("r1")
        assert loaded is not None
        stored = loaded.context if kind == "context" else loaded.step_outcomes
        assert list(stored) == [f"k{i:04d}" for i in range(1001)]
    finally:
        store.close()


def test_entries_are_rows_of_their_own_not_part_of_the_run_row(
    store: SQLiteStore, path: Path
) -> None:
    """The run row holds no JSON; each Context key and step outcome is one run_entries row."""
    for i in range(50):
        store.save_checkpoint(
            "r1",
            recipe_path="r.yaml",
            recipe_hash="h",
            context={f"recovery.step-{i}": {"attempts": i}},
            step_outcomes={f"step-{i}": "succeeded"},
        )
    probe = sqlite3.connect(path)
    try:
        columns = [row[1] for row in probe.execute("PRAGMA table_info(runs)")]
        assert "context" not in columns
        assert "step_outcomes" not in columns
        (row,) = probe.execute("SELECT * FROM runs").fetchall()
        assert not any("step-0" in str(value) for value in row)
        stored = probe.execute("SELECT run_id, kind, key, value FROM run_entries ORDER BY rowid")
        rows = stored.fetchall()
        assert len(rows) == 100
        assert rows[:2] == [
            ("r1", "context", "recovery.step-0", '{"attempts": 0}'),
            ("r1", "outcome", "step-0", '"succeeded"'),
        ]
        assert probe.execute("PRAGMA user_version").fetchone() == (3,)
    finally:
        probe.close()


def test_trimmed_runs_take_their_entry_rows_with_them(path: Path) -> None:
    """Runs beyond run_retention leave no rows in run_entries."""
    store = SQLiteStore(path, run_retention=2)
    try:
        for run_id in ("r1", "r2", "r3"):
            for kind in KINDS:
                save_entry(store, kind, "a", run_id)
                save_entry(store, kind, "b", run_id)
    finally:
        store.close()
    probe = sqlite3.connect(path)
    try:
        runs = probe.execute("SELECT run_id, count(*) FROM run_entries GROUP BY run_id")
        assert sorted(runs.fetchall()) == [("r2", 4), ("r3", 4)]
    finally:
        probe.close()


# The schemas of versions 1 and 2, whose ``runs`` kept the Context as one JSON object;
# version 1 kept the step outcomes there too, version 2 as rows of ``step_outcomes``.
COMMON_SCHEMA = """
CREATE TABLE breakers (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
    opened_at REAL, half_open_at REAL, trials INTEGER NOT NULL, epoch INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE bulkheads (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE slots (
    bulkhead TEXT NOT NULL, holder TEXT NOT NULL, expires_at REAL,
    PRIMARY KEY (bulkhead, holder)
) WITHOUT ROWID;
CREATE TABLE errors (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE,
    recipe_path TEXT NOT NULL, recipe_hash TEXT NOT NULL, started_at REAL NOT NULL,
    updated_at REAL NOT NULL, finished_at REAL, outcome TEXT,
    context TEXT NOT NULL{outcomes_column}
);
CREATE INDEX runs_by_recipe ON runs (recipe_path, seq);
"""
SCHEMA_2_OUTCOMES = """
CREATE TABLE step_outcomes (
    run_id TEXT NOT NULL, step TEXT NOT NULL, outcome TEXT NOT NULL, UNIQUE (run_id, step)
);
"""
OLD_RUNS = {
    "old1": (
        '{"zeta": 1, "alpha": {"rows": [1, 2]}, "recovery.a": {"attempts": 3}}',
        '{"zeta": "succeeded", "alpha": {"outcome": "failed", "attempts": 3}}',
    ),
    "old2": ("{}", '{"x": "skipped"}'),
}


def old_database(path: Path, version: int, runs: dict[str, tuple[str, str]]) -> None:
    """Write a database of schema ``version`` (1 or 2) with ``runs``: id -> (Context, outcomes).

    The outcomes are one JSON object; version 2 stores them as rows, runs interleaved.
    """
    conn = sqlite3.connect(path)
    column = ", step_outcomes TEXT NOT NULL" if version == 1 else ""
    conn.executescript(COMMON_SCHEMA.format(outcomes_column=column))
    if version == 2:
        conn.executescript(SCHEMA_2_OUTCOMES)
    for i, (run_id, (context, outcomes)) in enumerate(runs.items()):
        values = [run_id, "r.yaml", "h", float(i), float(i), 9.0, "failed", context]
        values += [outcomes] if version == 1 else []
        marks = ", ".join("?" * len(values))
        names = "run_id, recipe_path, recipe_hash, started_at, updated_at, finished_at,"
        names += " outcome, context" + (", step_outcomes" if version == 1 else "")
        conn.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", values)
    if version == 2:
        rows = [
            (n, run_id, step, json.dumps(value))
            for run_id, (_, outcomes) in runs.items()
            for n, (step, value) in enumerate(json.loads(outcomes).items())
        ]
        # Interleave the runs' rows, so each run's order must come from the rowids.
        conn.executemany(
            "INSERT INTO step_outcomes VALUES (?, ?, ?)", [r[1:] for r in sorted(rows)]
        )
    conn.execute("INSERT INTO breakers VALUES ('b', 'open', 1, 0.0, 60.0, 0, 1)")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_is_migrated(path: Path, version: int) -> None:
    """Opening a version-1 or -2 file moves each run's Context and outcomes, in order, to rows."""
    old_database(path, version, OLD_RUNS)
    store = SQLiteStore(path, clock=lambda: NOW)
    try:
        old = store.load_checkpoint("old1")
        assert old is not None
        assert list(old.context.items()) == [
            ("zeta", 1),
            ("alpha", {"rows": [1, 2]}),
            ("recovery.a", {"attempts": 3}),
        ]
        assert list(old.step_outcomes.items()) == [
            ("zeta", "succeeded"),
            ("alpha", {"outcome": "failed", "attempts": 3}),
        ]
        assert (old.outcome, old.finished_at) == ("failed", 9.0)
        other = store.load_checkpoint("old2")
        assert other is not None
        assert (other.context, other.step_outcomes) == ({}, {"x": "skipped"})
        assert store.snapshot("b", now=1.0).state == "open"
        store.save_checkpoint(
            "old1",
            recipe_path="r.yaml",
            recipe_hash="h",
            context={"beta": 2, "zeta": 10},
            step_outcomes={"beta": "succeeded"},
        )
        save_entry(store, "context", "a", "new")
        merged = store.load_checkpoint("old1")
        assert merged is not None
        assert list(merged.context) == ["zeta", "alpha", "recovery.a", "beta"]
        assert (merged.context["zeta"], merged.context["beta"]) == (10, 2)
        assert list(merged.step_outcomes) == ["zeta", "alpha", "beta"]
        # Start order survives the rebuilt table, and new runs start after the old ones.
        assert [r.run_id for r in store.list_runs()] == ["new", "old2", "old1"]
        latest = store.latest_run("r.yaml")
        assert latest is not None
        assert latest.run_id == "new"
    finally:
        store.close()
    probe = sqlite3.connect(path)
    try:
        assert probe.execute("PRAGMA user_version").fetchone() == (3,)
        columns = [row[1] for row in probe.execute("PRAGMA table_info(runs)")]
        assert not {"context", "step_outcomes"} & set(columns)
        objects = set(probe.execute("SELECT name FROM sqlite_master").fetchall())
        assert ("runs_by_recipe",) in objects
        assert ("step_outcomes",) not in objects
    finally:
        probe.close()
    again = SQLiteStore(path)  # an upgraded file opens as it is
    assert [r.run_id for r in again.list_runs()] == ["new", "old2", "old1"]
    again.close()


@pytest.mark.parametrize(
    ("version", "context", "outcomes"),
    [
        (1, "{}", "not json"),
        (1, "{}", '["a", "list"]'),
        (1, "not json", "{}"),
        (2, '["a", "list"]', '{"s": "succeeded"}'),
        (2, "[not json", '{"s": "succeeded"}'),
    ],
)
def test_an_older_database_that_cannot_be_migrated_is_left_as_it_was(
    path: Path, version: int, context: str, outcomes: str
) -> None:
    """An unreadable JSON column stops the upgrade, which is rolled back whole."""
    runs = {"good": ('{"a": 1}', '{"s": "succeeded"}'), "bad": (context, outcomes)}
    old_database(path, version, runs)
    with pytest.raises(StoreUnavailableError, match=f"from schema {version} to 3") as caught:
        SQLiteStore(path)
    assert "not a JSON object" in str(caught.value)
    probe = sqlite3.connect(path)
    try:
        assert probe.execute("PRAGMA user_version").fetchone() == (version,)
        assert probe.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        columns = [row[1] for row in probe.execute("PRAGMA table_info(runs)")]
        assert "context" in columns
        tables = {name for (name,) in probe.execute("SELECT name FROM sqlite_master")}
        assert "run_entries" not in tables
        assert ("step_outcomes" in tables) is (version == 2)
    finally:
        probe.close()
