"""Choosing a store from a URL, the environment variable, and the errors for bad URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.stores import MemoryStore, select
from framework0_errors.stores.redis import RedisStore
from framework0_errors.stores.select import (
    DEFAULT_STATE_URL,
    STATE_ENV_VAR,
    MemoryStateStore,
    Store,
    StoreUnavailableError,
    StoreURLError,
    default_state_url,
    open_store,
)
from framework0_errors.stores.sqlite import SQLiteStore

from .conftest import free_port


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULT_STATE_URL),
        ({STATE_ENV_VAR: "redis://cache:6379/2"}, "redis://cache:6379/2"),
        ({STATE_ENV_VAR: "  memory:  "}, "memory:"),
        ({STATE_ENV_VAR: "   "}, DEFAULT_STATE_URL),
        ({"OTHER": "memory:"}, DEFAULT_STATE_URL),
    ],
)
def test_default_state_url_reads_the_environment(environ: dict[str, str], expected: str) -> None:
    """FRAMEWORK0_STATE names the store when set and not blank; else SQLite under .framework0/."""
    assert STATE_ENV_VAR == "FRAMEWORK0_STATE"
    assert default_state_url(environ) == expected


def test_the_default_url_is_sqlite_under_dot_framework0() -> None:
    """The embedded default is the SQLite file .framework0/state.db."""
    assert DEFAULT_STATE_URL == "sqlite:.framework0/state.db"


def test_memory_url_opens_a_memory_store() -> None:
    """memory: opens a MemoryStore with history and checkpoints; close is harmless."""
    store: Store = open_store(" memory: ")
    assert isinstance(store, MemoryStateStore)
    assert isinstance(store, MemoryStore)
    store.close()
    store.append_error({"still": "works"})
    assert store.recent_errors() == [{"still": "works"}]


def test_sqlite_urls_take_absolute_and_home_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:/abs/path opens that file (any case of scheme); sqlite:~/x expands the home."""
    absolute = open_store(f"SQLite:{tmp_path / 'a.db'}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = open_store("sqlite:~/state/b.db")
    try:
        assert isinstance(absolute, SQLiteStore)
        assert isinstance(home, SQLiteStore)
        assert absolute.path == tmp_path / "a.db"
        assert home.path == tmp_path / "home" / "state" / "b.db"
    finally:
        absolute.close()
        home.close()


def test_redis_urls_take_a_prefix(redis_url: str) -> None:
    """redis://HOST:PORT/DB?prefix=NAME opens a RedisStore with that prefix."""
    store = open_store(redis_url + "?prefix=team")
    default = open_store(redis_url.rstrip("0").rstrip("/"))
    try:
        assert isinstance(store, RedisStore)
        assert isinstance(default, RedisStore)
        assert (store.prefix, default.prefix) == ("team", "framework0")
        assert default.where.endswith("(database 0)")
    finally:
        store.close()
        default.close()


def test_rediss_urls_are_redis_urls() -> None:
    """rediss:// (TLS) is accepted as a Redis URL; an unreachable one is unavailable."""
    with pytest.raises(StoreUnavailableError):
        open_store(f"rediss://127.0.0.1:{free_port()}/0", timeout=0.5)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "no scheme"),
        ("state.db", "no scheme"),
        ("postgres://db/state", "unknown scheme 'postgres'"),
        ("memory:extra", "memory: takes nothing after the colon"),
        ("file:state.db", "unknown scheme 'file'"),
        ("sqlite::memory:", "in-memory SQLite database is not shared"),
        ("redis://localhost:port/0", "port must be a number"),
        ("redis://localhost:99999/0", "port must be a number"),
        ("redis://localhost:6379/zero", "database must be a number, not 'zero'"),
        (
            "redis://localhost:6379/0?db=1&x=2",
            "only ?prefix=NAME may follow the database, not db, x",
        ),
        ("redis://localhost:6379/0#frag", "only ?prefix=NAME may follow the database, not #frag"),
        ("redis://localhost:6379/0?prefix=", "give one non-empty ?prefix=NAME"),
        ("redis://localhost:6379/0?prefix=a&prefix=b", "give one non-empty ?prefix=NAME"),
    ],
)
def test_bad_urls_say_what_is_accepted(url: str, reason: str) -> None:
    """A bad URL raises StoreURLError with the reason and every accepted form."""
    with pytest.raises(StoreURLError) as caught:
        open_store(url)
    message = str(caught.value)
    assert reason in message
    for form in ("sqlite:PATH", "redis://HOST:PORT/DB", "?prefix=NAME", "memory:"):
        assert form in message
    assert isinstance(caught.value, Framework0Error)
    assert isinstance(caught.value, ValueError)
    assert StoreURLError.__module__ == StoreUnavailableError.__module__ == "framework0_errors"
    assert caught.value.url == url.strip()


def test_passwords_never_appear_in_url_errors() -> None:
    """The password part of a bad Redis URL is masked in the error."""
    with pytest.raises(StoreURLError) as caught:
        open_store("redis://fleet:s3cret@localhost:port/0")
    assert "s3cret" not in str(caught.value)
    assert "redis://fleet:***@localhost:port/0" in str(caught.value)


def test_everything_public_is_exported() -> None:
    """__all__ names the public API of store selection."""
    assert set(select.__all__) == {
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
    }
