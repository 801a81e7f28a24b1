"""RedisStore: key prefixes, lease TTLs, scripts, and a server that is down or goes away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.stores import Admission
from framework0_errors.stores.redis import RedisStore
from framework0_errors.stores.select import Store, StoreUnavailableError, open_store

from .conftest import RedisServer, free_port, redis_server_binary, stop_redis
from .test_contract import save_entry


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's (emptied) database."""
    plain = redis.Redis.from_url(redis_url, decode_responses=True)
    yield plain
    plain.close()


def open_breaker(store: Store, name: str = "b") -> None:
    """Open breaker ``name`` with one failure at t=0."""
    store.record_failure(
        name,
        now=0.0,
        admission=Admission(True, "closed"),
        failure_threshold=1,
        recovery_timeout=60.0,
    )


def test_prefixes_keep_namespaces_apart(redis_url: str, client: redis.Redis) -> None:
    """Stores with different prefixes share nothing; every key starts with its prefix."""
    fleet_a = open_store(redis_url + "?prefix=fleet-a")
    fleet_b = open_store(redis_url + "?prefix=fleet-b")
    try:
        assert isinstance(fleet_a, RedisStore)
        open_breaker(fleet_a)
        fleet_a.try_acquire("db", limit=1, holder_id="h", lease_seconds=5.0, now=0.0)
        fleet_a.append_error({"n": 1})
        fleet_a.save_checkpoint(
            "r", recipe_path="x.yaml", recipe_hash="h", context={}, step_outcomes={}
        )
        assert fleet_b.snapshot("b", now=0.0).state == "closed"
        assert fleet_b.try_acquire("db", limit=1, holder_id="h", lease_seconds=5.0, now=0.0)
        assert (fleet_b.breaker_names(), fleet_b.recent_errors(), fleet_b.list_runs()) == (
            [],
            [],
            [],
        )
        keys = [str(key) for key in client.keys("*")]
        assert all(key.startswith("fleet-") for key in keys)
        assert "fleet-a:breaker:b" in keys
    finally:
        fleet_a.close()
        fleet_b.close()


def test_the_default_prefix_is_framework0(redis_url: str, client: redis.Redis) -> None:
    """Without ?prefix= every key starts with framework0:."""
    store = open_store(redis_url)
    open_breaker(store)
    store.close()
    assert sorted(client.keys("*")) == ["framework0:breaker:b", "framework0:breakers"]


def test_lease_keys_expire_after_their_last_lease(redis_url: str, client: redis.Redis) -> None:
    """A bulkhead's key expires soon after its longest lease; a slot without lease keeps it."""
    store = RedisStore(redis_url)
    try:
        store.try_acquire("db", limit=3, holder_id="a", lease_seconds=5.0, now=100.0)
        store.try_acquire("db", limit=3, holder_id="b", lease_seconds=2.0, now=100.0)
        assert 5000 < client.pttl("framework0:bulkhead:db") <= 6000
        store.try_acquire("db", limit=3, holder_id="c", lease_seconds=None, now=100.0)
        assert client.pttl("framework0:bulkhead:db") == -1
        assert client.zscore("framework0:bulkhead:db", "c") == float("inf")
    finally:
        store.close()


def test_scripts_survive_a_flushed_script_cache(redis_url: str, client: redis.Redis) -> None:
    """After SCRIPT FLUSH (a restarted server) the store loads its scripts again."""
    store = RedisStore(redis_url)
    try:
        open_breaker(store)
        client.script_flush()
        assert not store.before_call("b", now=1.0, half_open_max_calls=1).allowed
    finally:
        store.close()


def test_a_server_that_is_not_there(redis_server: RedisServer) -> None:
    """Opening a store on a port nobody listens on raises StoreUnavailableError at once."""
    port = free_port()
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    message = str(caught.value)
    assert f"127.0.0.1:{port} (database 0)" in message
    assert "Check that redis-server runs there" in message
    assert "FRAMEWORK0_STATE" in message
    assert isinstance(caught.value, Framework0Error)


def test_a_database_number_the_server_lacks(redis_server: RedisServer) -> None:
    """A database number beyond the server's count raises StoreUnavailableError."""
    with pytest.raises(StoreUnavailableError, match="database 999"):
        open_store(redis_server.url(999))


def test_a_server_that_goes_away(spare_redis: RedisServer) -> None:
    """Every call to a server that stopped raises StoreUnavailableError naming it."""
    store = RedisStore(spare_redis.url(), timeout=0.5)
    open_breaker(store)
    stop_redis(spare_redis.process)
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{spare_redis.port}"):
        store.before_call("b", now=1.0, half_open_max_calls=1)
    with pytest.raises(StoreUnavailableError):
        store.in_use("db", now=1.0)
    with pytest.raises(StoreUnavailableError):
        store.snapshots(["b", "c"], now=1.0)
    store.close()


def test_a_closed_store_refuses_work(redis_url: str) -> None:
    """Every operation after close raises StoreUnavailableError."""
    store = RedisStore(redis_url)
    store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.breaker_names()


def test_a_trimmed_run_missing_from_a_listing_is_skipped(
    redis_url: str, client: redis.Redis
) -> None:
    """list_runs skips a run whose hash vanished between reading the index and the run."""
    store = RedisStore(redis_url)
    try:
        for run_id in ("r1", "r2"):
            store.save_checkpoint(
                run_id, recipe_path="x.yaml", recipe_hash="h", context={}, step_outcomes={}
            )
        client.delete("framework0:run:r1")
        assert [run.run_id for run in store.list_runs()] == ["r2"]
    finally:
        store.close()


def test_a_missing_redis_server_fails_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server on PATH the Redis tests fail, saying how to install it."""
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match=r"Install it \(apt-get install -y redis"):
        redis_server_binary()


KINDS = ["context", "outcome"]


def test_entries_live_in_hashes_of_their_own(redis_url: str, client: redis.Redis) -> None:
    """The run hash holds no JSON; Context keys and steps are fields of hashes of their own."""
    store = RedisStore(redis_url)
    try:
        for key in ("b", "a", "b"):
            store.save_checkpoint(
                "r1",
                recipe_path="r.yaml",
                recipe_hash="h",
                context={f"recovery.{key}": [1]},
                step_outcomes={key: "succeeded"},
            )
    finally:
        store.close()
    assert not {"context", "step_outcomes"} & set(client.hkeys("framework0:run:r1"))
    assert client.hgetall("framework0:run-steps:r1") == {"a": '"succeeded"', "b": '"succeeded"'}
    assert client.lrange("framework0:run-step-order:r1", 0, -1) == ["b", "a"]
    assert client.hgetall("framework0:run-context:r1") == {"recovery.a": "[1]", "recovery.b": "[1]"}
    assert client.lrange("framework0:run-context-order:r1", 0, -1) == ["recovery.b", "recovery.a"]


def test_trimmed_runs_take_their_entry_keys_with_them(redis_url: str, client: redis.Redis) -> None:
    """Runs beyond run_retention leave no keys of their Context or outcomes behind."""
    store = RedisStore(redis_url, run_retention=1)
    try:
        for run_id in ("r1", "r2"):
            for kind in KINDS:
                save_entry(store, kind, "a", run_id)
    finally:
        store.close()
    assert sorted(client.keys("*")) == [
        "framework0:recipe-runs:r.yaml",
        "framework0:run-context-order:r2",
        "framework0:run-context:r2",
        "framework0:run-seq",
        "framework0:run-step-order:r2",
        "framework0:run-steps:r2",
        "framework0:run:r2",
        "framework0:runs",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_save_sends_the_same_bytes_however_many_entries_are_stored(
    redis_url: str, client: redis.Redis, kind: str
) -> None:
    """Saving one new key sends the server as many bytes after 10 as after 1000 stored."""
    store = RedisStore(redis_url, clock=lambda: 1_700_000_000.25)

    def bytes_in(key: str) -> int:
        before = int(client.info("stats")["total_net_input_bytes"])
        save_entry(store, kind, key)
        return int(client.info("stats")["total_net_input_bytes"]) - before

    try:
        for i in range(10):
            save_entry(store, kind, f"k{i:04d}")
        early = bytes_in("k0010")
        for i in range(11, 1000):
            save_entry(store, kind, f"k{i:04d}")
        late = bytes_in("k1000")
        assert early == late
        loaded = store.load_checkpoint("r1")
        assert loaded is not None
        stored = loaded.context if kind == "context" else loaded.step_outcomes
        assert list(stored) == [f"k{i:04d}" for i in range(1001)]
    finally:
        store.close()


@pytest.mark.parametrize("outcomes_in_hash", [True, False])
def test_runs_saved_with_a_whole_json_context_still_load(
    redis_url: str, client: redis.Redis, outcomes_in_hash: bool
) -> None:
    """A run hash with a context (and step_outcomes) JSON field loads, merged with later saves."""
    # The layouts earlier versions wrote: the whole Context in the run hash, and the
    # outcomes there too or already in run-steps:ID and run-step-order:ID.
    outcomes = {"s2": '"succeeded"', "s1": '"failed"'}
    run = {"seq": 1, "run_id": "old", "started_at": "1.0", "updated_at": "2.0"}
    run |= {"recipe_path": "r.yaml", "recipe_hash": "h"}
    run["context"] = '{"zeta": 1, "alpha": {"rows": [1]}}'
    if outcomes_in_hash:
        run["step_outcomes"] = '{"s2": "succeeded", "s1": "failed"}'
    else:
        client.hset("framework0:run-steps:old", mapping=outcomes)
        client.rpush("framework0:run-step-order:old", *outcomes)
    client.hset("framework0:run:old", mapping=run)
    client.zadd("framework0:runs", {"old": 1})
    client.zadd("framework0:recipe-runs:r.yaml", {"old": 1})
    client.set("framework0:run-seq", 1)
    store = RedisStore(redis_url, run_retention=2)
    try:
        old = store.load_checkpoint("old")
        assert old is not None
        assert list(old.context.items()) == [("zeta", 1), ("alpha", {"rows": [1]})]
        assert list(old.step_outcomes.items()) == [("s2", "succeeded"), ("s1", "failed")]
        store.save_checkpoint(
            "old",
            recipe_path="r.yaml",
            recipe_hash="h",
            context={"beta": 2, "zeta": 10},
            step_outcomes={"s1": "succeeded", "s3": "succeeded"},
        )
        merged = store.latest_run("r.yaml")
        assert merged is not None
        assert list(merged.context.items()) == [("zeta", 10), ("alpha", {"rows": [1]}), ("beta", 2)]
        assert merged.step_outcomes == {"s2": "succeeded", "s1": "succeeded", "s3": "succeeded"}
        assert list(merged.step_outcomes) == ["s2", "s1", "s3"]
        save_entry(store, "context", "a", "r2")
        save_entry(store, "context", "a", "r3")
        assert store.load_checkpoint("old") is None
    finally:
        store.close()
    assert not client.keys("framework0:run*:old")
