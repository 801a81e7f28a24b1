"""SQLiteStore: WAL, locking, a read-only success path, folders, closing and bad files."""

from __future__ import annotations

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


# -- step outcomes ----------------------------------------------------------------------

NOW = 1_700_000_000.25


def save_step(store: SQLiteStore, step: str, run_id: str = "r1") -> None:
    """Save a checkpoint of ``run_id`` with a small Context and one new step outcome."""
    store.save_checkpoint(
        run_id,
        recipe_path="r.yaml",
        recipe_hash="h",
        context={"last": step},
        step_outcomes={step: "succeeded"},
    )


def save_cost(store: SQLiteStore, step: str) -> tuple[int, int]:
    """Return the SQL text (values inlined) and the rows changed by one save of ``step``."""
    statements: list[str] = []
    with store._connection() as conn:
        # Single-threaded, so the save borrows this same pooled connection.
        conn.set_trace_callback(statements.append)
        changes = conn.total_changes
    save_step(store, step)
    with store._connection() as conn:
        conn.set_trace_callback(None)
        changes = conn.total_changes - changes
    assert any("INSERT INTO step_outcomes" in sql for sql in statements)
    return sum(len(sql) for sql in statements), changes


def test_a_save_costs_the_same_however_many_outcomes_are_stored(path: Path) -> None:
    """One new step costs the same SQL and rows after 10 or 1000; an unchanged one no row."""
    store = SQLiteStore(path, clock=lambda: NOW)
    try:
        for i in range(10):
            save_step(store, f"s{i:04d}")
        early = save_cost(store, "s0010")
        for i in range(11, 1000):
            save_step(store, f"s{i:04d}")
        late = save_cost(store, "s1000")
        assert early == late
        assert early[1] == 2  # the run row and the step's row
        assert save_cost(store, "s0005")[1] == 1  # saved again unchanged: the run row only
        loaded = store.load_checkpoint("r1")
        assert loaded is not None
        assert list(loaded.step_outcomes) == [f"s{i:04d}" for i in range(1001)]
    finally:
        store.close()


def test_outcomes_are_rows_of_their_own_not_part_of_the_run_row(
    store: SQLiteStore, path: Path
) -> None:
    """The run row holds the Context only; each step outcome is one row of step_outcomes."""
    for i in range(50):
        save_step(store, f"step-{i}")
    probe = sqlite3.connect(path)
    try:
        columns = [row[1] for row in probe.execute("PRAGMA table_info(runs)")]
        assert "step_outcomes" not in columns
        (row,) = probe.execute("SELECT * FROM runs").fetchall()
        assert not any("step-0" in str(value) for value in row)
        stored = probe.execute("SELECT run_id, step, outcome FROM step_outcomes").fetchall()
        assert len(stored) == 50
        assert stored[0] == ("r1", "step-0", '"succeeded"')
        assert probe.execute("PRAGMA user_version").fetchone() == (2,)
    finally:
        probe.close()


def test_trimmed_runs_take_their_outcome_rows_with_them(path: Path) -> None:
    """Runs beyond run_retention leave no rows in step_outcomes."""
    store = SQLiteStore(path, run_retention=2)
    try:
        for run_id in ("r1", "r2", "r3"):
            save_step(store, "a", run_id)
            save_step(store, "b", run_id)
    finally:
        store.close()
    probe = sqlite3.connect(path)
    try:
        runs = probe.execute("SELECT DISTINCT run_id FROM step_outcomes ORDER BY run_id")
        assert runs.fetchall() == [("r2",), ("r3",)]
    finally:
        probe.close()


# The schema of version 1, which kept a run's outcomes as one JSON object in ``runs``.
SCHEMA_1 = """
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
    context TEXT NOT NULL, step_outcomes TEXT NOT NULL
);
CREATE INDEX runs_by_recipe ON runs (recipe_path, seq);
PRAGMA user_version = 1;
"""


def version_1_database(path: Path, outcomes: dict[str, str]) -> None:
    """Write a version-1 database with one run per entry of ``outcomes`` (run_id: JSON)."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    for i, (run_id, text) in enumerate(outcomes.items()):
        conn.execute(
            "INSERT INTO runs (run_id, recipe_path, recipe_hash, started_at, updated_at,"
            " finished_at, outcome, context, step_outcomes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, "r.yaml", "h", float(i), float(i), 9.0, "failed", '{"n": 1}', text),
        )
    conn.execute("INSERT INTO breakers VALUES ('b', 'open', 1, 0.0, 60.0, 0, 1)")
    conn.commit()
    conn.close()


def test_a_version_1_database_is_migrated(path: Path) -> None:
    """Opening a version-1 file moves each run's outcomes, in order, into their own rows."""
    version_1_database(
        path,
        {
            "old1": '{"zeta": "succeeded", "alpha": {"outcome": "failed", "attempts": 3}}',
            "old2": "{}",
        },
    )
    store = SQLiteStore(path, clock=lambda: NOW)
    try:
        old = store.load_checkpoint("old1")
        assert old is not None
        assert list(old.step_outcomes.items()) == [
            ("zeta", "succeeded"),
            ("alpha", {"outcome": "failed", "attempts": 3}),
        ]
        assert (old.context, old.outcome, old.finished_at) == ({"n": 1}, "failed", 9.0)
        assert store.snapshot("b", now=1.0).state == "open"
        save_step(store, "beta", "old1")
        save_step(store, "a", "new")
        merged = store.load_checkpoint("old1")
        assert merged is not None
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
        assert probe.execute("PRAGMA user_version").fetchone() == (2,)
        columns = [row[1] for row in probe.execute("PRAGMA table_info(runs)")]
        assert "step_outcomes" not in columns
        indexes = probe.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'runs'")
        assert ("runs_by_recipe",) in indexes.fetchall()
    finally:
        probe.close()
    again = SQLiteStore(path)  # an upgraded file opens as it is
    assert [r.run_id for r in again.list_runs()] == ["new", "old2", "old1"]
    again.close()


@pytest.mark.parametrize("text", ["not json", '["a", "list"]'])
def test_a_version_1_database_that_cannot_be_migrated_is_left_as_it_was(
    path: Path, text: str
) -> None:
    """Unreadable version-1 outcomes stop the upgrade, which is rolled back whole."""
    version_1_database(path, {"good": '{"s": "succeeded"}', "bad": text})
    with pytest.raises(StoreUnavailableError, match="cannot upgrade the state database"):
        SQLiteStore(path)
    probe = sqlite3.connect(path)
    try:
        assert probe.execute("PRAGMA user_version").fetchone() == (1,)
        assert probe.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        tables = {name for (name,) in probe.execute("SELECT name FROM sqlite_master")}
        assert "step_outcomes" not in tables
    finally:
        probe.close()
