"""Redis store: the SQLite store's state and semantics, shared by runners on many machines.

Every state change is one Lua script, which Redis runs atomically. Keys start with
``PREFIX:`` so fleets sharing a server keep apart: ``breaker:NAME`` (hash),
``bulkhead:NAME`` (sorted set of holders scored by lease expiry, trimmed by the acquire
script; the key expires once every lease has), ``breakers`` and ``bulkheads`` (sets of
names), ``errors`` (list, newest first), ``run:ID`` (hash of the run's summary),
``runs`` and ``recipe-runs:PATH`` (sorted sets of run ids by start order), ``run-seq``
(counter). A run's Context and its step outcomes are kept alike, each as a hash of key
to JSON value and a list of the keys in the order they were first saved:
``run-context:ID`` and ``run-context-order:ID``, ``run-steps:ID`` and
``run-step-order:ID``. A save writes only the entries it is given.

Runs saved before entries were kept one by one hold their whole Context and outcomes
as JSON in ``context`` and ``step_outcomes`` fields of ``run:ID``; they load with the
entries saved since merged over those fields, so nothing needs migrating.

Times are the callers' wall clocks (``time.time``), never the server's, so the machines
sharing a server need synchronised clocks (NTP): a lease or a recovery timeout is as
exact as their agreement. Floats travel as Python ``repr`` text and scripts store that
text unchanged, so no precision is lost.
The success path runs scripts that read only. ``wait_for_slot`` returns False; callers
poll. A lost connection raises :class:`StoreUnavailableError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis

from framework0_errors.stores.base import Admission, BreakerSnapshot, BreakerState, Transition
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

__all__ = ["RedisStore"]

_FIELDS = ("state", "failures", "opened_at", "half_open_at", "trials", "epoch")
# KEYS[1]: the breaker's hash, KEYS[2]: the set of breaker names; ARGV[1]: the name.
# Empty strings stand for "no time" (None); times are compared with tonumber().
_BREAKER_LIB = """
local function load()
  local v = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'half_open_at',
    'trials', 'epoch')
  return {known = v[1] ~= false, state = v[1] or 'closed', failures = tonumber(v[2]) or 0,
    opened_at = v[3] or '', half_open_at = v[4] or '', trials = tonumber(v[5]) or 0,
    epoch = tonumber(v[6]) or 0}
end
local function save(b)
  redis.call('HSET', KEYS[1], 'state', b.state, 'failures', b.failures, 'opened_at',
    b.opened_at, 'half_open_at', b.half_open_at, 'trials', b.trials, 'epoch', b.epoch)
  redis.call('SADD', KEYS[2], ARGV[1])
end
local function move(b, state, now, till)
  b.state = state; b.epoch = b.epoch + 1; b.trials = 0
  if state == 'closed' then b.failures = 0; b.opened_at = ''; b.half_open_at = '' end
  if state == 'open' then b.opened_at = now; b.half_open_at = till end
end
local function effective(b, now)
  if b.state == 'open' and b.half_open_at ~= ''
    and tonumber(now) >= tonumber(b.half_open_at) then return 'half_open' end
  return b.state
end
local function current_trial(b, trial, epoch)
  return b.state == 'half_open' and trial == '1' and tonumber(epoch) == b.epoch
end
local b = load()
"""
# ARGV: name, now, half_open_max_calls -> allowed, state, trial, epoch, retry_at, moved
_BEFORE_CALL = """
if b.state == 'closed' then return {1, 'closed', 0, b.epoch, '', 0} end
local moved = 0
if b.state == 'open' then
  if b.half_open_at == '' or tonumber(ARGV[2]) < tonumber(b.half_open_at) then
    return {0, 'open', 0, b.epoch, b.half_open_at == '' and 'inf' or b.half_open_at, 0}
  end
  move(b, 'half_open'); moved = 1
end
if b.trials >= tonumber(ARGV[3]) then
  if moved == 1 then save(b) end
  return {0, 'half_open', 0, b.epoch, ARGV[2], 0}
end
b.trials = b.trials + 1; save(b)
return {1, 'half_open', 1, b.epoch, '', moved}
"""
# ARGV: name, now, trial, epoch -> 1 if the breaker closed
_RECORD_SUCCESS = """
if b.state == 'closed' then
  if b.failures ~= 0 then redis.call('HSET', KEYS[1], 'failures', 0) end
  return 0
end
if current_trial(b, ARGV[3], ARGV[4]) then move(b, 'closed'); save(b); return 1 end
return 0
"""
# ARGV: name, now, trial, epoch, failure_threshold, until -> the old state if it opened
_RECORD_FAILURE = """
if b.state == 'closed' then
  b.failures = b.failures + 1
  if b.failures < tonumber(ARGV[5]) then save(b); return '' end
  move(b, 'open', ARGV[2], ARGV[6]); save(b); return 'closed'
end
if current_trial(b, ARGV[3], ARGV[4]) then
  b.failures = b.failures + 1; move(b, 'open', ARGV[2], ARGV[6]); save(b); return 'half_open'
end
return ''
"""
# ARGV: name, trial, epoch
_RELEASE_TRIAL = """
if current_trial(b, ARGV[2], ARGV[3]) then redis.call('HINCRBY', KEYS[1], 'trials', -1) end
return 0
"""
# ARGV: name, now -> the old state if it changed
_RESET = """
if not b.known then return '' end
local old = effective(b, ARGV[2]); move(b, 'closed'); save(b)
return old == 'closed' and '' or old
"""
# ARGV: name, now, until ('' for none) -> the old state if it changed
_FORCE_OPEN = """
local old = effective(b, ARGV[2]); move(b, 'open', ARGV[2], ARGV[3]); save(b)
return old == 'open' and '' or old
"""
# KEYS: slots, names; ARGV: name, now, limit, holder, expiry -> 1 if acquired
_ACQUIRE = """
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[4])
local last = tonumber(redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
if last == math.huge then redis.call('PERSIST', KEYS[1]) else
  redis.call('PEXPIRE', KEYS[1], math.ceil((last - tonumber(ARGV[2])) * 1000) + 1000)
end
return 1
"""
# KEYS: run, runs, recipe-runs:PATH, run-seq, then the hash and the order list of each
# entry kind (run-context, run-context-order, run-steps, run-step-order). ARGV: id,
# path, hash, now, retention, the recipe-runs key prefix, the number N of per-run key
# prefixes, those N prefixes (run first), then a (kind number, key, JSON value) triple
# per entry given. HSET returns 1 for a key new to the run, which then joins the order.
_SAVE_CHECKPOINT = """
local seq = redis.call('HGET', KEYS[1], 'seq')
if seq then
  local old = redis.call('HGET', KEYS[1], 'recipe_path')
  if old ~= ARGV[2] then redis.call('ZREM', ARGV[6] .. old, ARGV[1]) end
else
  seq = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[1], 'seq', seq, 'run_id', ARGV[1], 'started_at', ARGV[4])
  redis.call('ZADD', KEYS[2], seq, ARGV[1])
end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('HSET', KEYS[1], 'recipe_path', ARGV[2], 'recipe_hash', ARGV[3], 'updated_at',
  ARGV[4])
redis.call('HDEL', KEYS[1], 'finished_at', 'outcome')
local per_run = tonumber(ARGV[7])
for i = 8 + per_run, #ARGV, 3 do
  local map = 3 + 2 * tonumber(ARGV[i])
  if redis.call('HSET', KEYS[map], ARGV[i + 1], ARGV[i + 2]) == 1 then
    redis.call('RPUSH', KEYS[map + 1], ARGV[i + 1])
  end
end
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if extra > 0 then
  for _, gone in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    local path = redis.call('HGET', ARGV[8] .. gone, 'recipe_path')
    redis.call('ZREM', ARGV[6] .. path, gone)
    for j = 8, 7 + per_run do redis.call('DEL', ARGV[j] .. gone) end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
return 0
"""
# KEYS: run; ARGV: outcome, now -> 1 if the run exists
_FINISH_RUN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'outcome', ARGV[1], 'finished_at', ARGV[2])
return 1
"""
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)
# Each entry kind's hash and order list, in the order the save script numbers the kinds
# (from 1). The outcome keys keep the names they had before the Context joined them.
_KIND_KEYS = {
    "context": ("run-context", "run-context-order"),
    "outcome": ("run-steps", "run-step-order"),
}
_KIND_NUMBERS = {kind: str(number) for number, kind in enumerate(_KIND_KEYS, 1)}
_ENTRY_KEYS = tuple(name for names in _KIND_KEYS.values() for name in names)
_RUN_KEYS = ("run", *_ENTRY_KEYS)  # every key of one run, deleted with it
_SUMMARY_FIELDS = (
    *("run_id", "recipe_path", "recipe_hash", "started_at", "updated_at"),
    *("finished_at", "outcome"),
)


class RedisStore:
    """Breaker, bulkhead, error-history and checkpoint state on a Redis server.

    Implements :class:`~framework0_errors.stores.select.Store`; thread-safe (the client
    keeps a connection pool). Connects and pings on creation.

    Args:
        url: ``redis://[USER:PASSWORD@]HOST:PORT/DB`` (or ``rediss://`` for TLS).
        prefix: Start of every key; stores with different prefixes share nothing.
        timeout: Seconds to wait to connect and for each answer.
        error_retention: Error records kept in the history.
        run_retention: Runs kept, with their checkpoints; the first started go first.
        clock: Wall-clock seconds for the run timestamps.

    Raises:
        StoreUnavailableError: The server does not answer (here or in any later call).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "framework0",
        timeout: float = 2.0,
        error_retention: int = 1000,
        run_retention: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = prefix
        self.error_retention = check_retention("error_retention", error_retention)
        self.run_retention = check_retention("run_retention", run_retention)
        self._clock = clock
        self._closed = False
        self._redis = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True
        )
        where = self._redis.connection_pool.connection_kwargs
        self.where = f"{where.get('host', 'localhost')}:{where.get('port', 6379)}"
        self.where += f" (database {where.get('db', 0)})"
        scripts = {
            "before_call": _BREAKER_LIB + _BEFORE_CALL,
            "record_success": _BREAKER_LIB + _RECORD_SUCCESS,
            "record_failure": _BREAKER_LIB + _RECORD_FAILURE,
            "release_trial": _BREAKER_LIB + _RELEASE_TRIAL,
            "reset": _BREAKER_LIB + _RESET,
            "force_open": _BREAKER_LIB + _FORCE_OPEN,
            "acquire": _ACQUIRE,
            "save_checkpoint": _SAVE_CHECKPOINT,
            "finish_run": _FINISH_RUN,
        }
        self._scripts = {name: self._redis.register_script(s) for name, s in scripts.items()}
        # Any error here (a wrong database number, a refused password) means this
        # store cannot be used, not only an unreachable server.
        try:
            with self._guard(redis.RedisError):
                self._redis.ping()
        except StoreUnavailableError:
            self._redis.close()
            raise

    # -- circuit breakers ----------------------------------------------------------

    def before_call(self, name: str, *, now: float, half_open_max_calls: int) -> Admission:
        """Admit or refuse one call, turning open into half_open once its time has come."""
        allowed, state, trial, epoch, retry_at, moved = self._breaker(
            "before_call", name, _num(now), half_open_max_calls
        )
        return Admission(
            allowed=bool(allowed),
            state=state,
            trial=bool(trial),
            epoch=int(epoch),
            retry_at=float(retry_at) if retry_at else None,
            transition=Transition(name, "open", "half_open") if moved else None,
        )

    def record_success(self, name: str, *, now: float, admission: Admission) -> Transition | None:
        """Record that an admitted call succeeded; a current trial closes the breaker."""
        closed = self._breaker("record_success", name, _num(now), *_verdict(admission))
        return Transition(name, "half_open", "closed") if closed else None

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
        args = (*_verdict(admission), failure_threshold, _num(now + recovery_timeout))
        old = self._breaker("record_failure", name, _num(now), *args)
        return Transition(name, old, "open") if old else None

    def release_trial(self, name: str, *, admission: Admission) -> None:
        """Free a trial slot without a verdict (the call was interrupted)."""
        self._breaker("release_trial", name, *_verdict(admission))

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        """Return the breaker's current state without changing it."""
        return self.snapshots((name,), now=now)[0]

    def snapshots(self, names: Sequence[str], *, now: float) -> list[BreakerSnapshot]:
        """Return :meth:`snapshot` of each of ``names``, in that order, in one round trip."""
        with self._guard():
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hmget(self._key("breaker", name), _FIELDS)
            rows = cast(list[list[str | None]], pipe.execute())
        return [_snapshot(name, row, now) for name, row in zip(names, rows, strict=True)]

    def reset(self, name: str, *, now: float) -> Transition | None:
        """Close the breaker and forget its failures."""
        old = self._breaker("reset", name, _num(now))
        return Transition(name, old, "closed") if old else None

    def force_open(self, name: str, *, now: float, until: float | None = None) -> Transition | None:
        """Open the breaker by hand, until ``until`` (None: until :meth:`reset`)."""
        old = self._breaker("force_open", name, _num(now), "" if until is None else _num(until))
        return Transition(name, old, "open") if old else None

    def breaker_names(self) -> list[str]:
        """Return the names of breakers with recorded state, sorted."""
        with self._guard():
            return sorted(cast(set[str], self._redis.smembers(self._key("breakers"))))

    def _breaker(self, script: str, name: str, *args: str | int) -> Any:
        keys = [self._key("breaker", name), self._key("breakers")]
        with self._guard():
            return self._scripts[script](keys=keys, args=[name, *args])

    # -- bulkheads -----------------------------------------------------------------

    def try_acquire(
        self, name: str, *, limit: int, holder_id: str, lease_seconds: float | None, now: float
    ) -> bool:
        """Take a slot if fewer than ``limit`` unexpired ones are held; never blocks."""
        expiry = "+inf" if lease_seconds is None else _num(now + lease_seconds)
        keys = [self._key("bulkhead", name), self._key("bulkheads")]
        with self._guard():
            got = self._scripts["acquire"](
                keys=keys, args=[name, _num(now), limit, holder_id, expiry]
            )
        return bool(got)

    def release(self, name: str, *, holder_id: str) -> None:
        """Give a slot back; releasing a slot not held is a no-op."""
        with self._guard():
            self._redis.zrem(self._key("bulkhead", name), holder_id)

    def wait_for_slot(self, name: str, *, limit: int, timeout: float, now: float) -> bool:
        """Return False: releases happen in other processes, so the caller polls."""
        return False

    def in_use(self, name: str, *, now: float) -> int:
        """Return how many unexpired slots of ``name`` are held."""
        with self._guard():
            return int(self._redis.zcount(self._key("bulkhead", name), f"({_num(now)}", "+inf"))

    def bulkhead_names(self) -> list[str]:
        """Return the names of bulkheads ever used, sorted."""
        with self._guard():
            return sorted(cast(set[str], self._redis.smembers(self._key("bulkheads"))))

    # -- error history and run checkpoints -----------------------------------------

    def append_error(self, record: Mapping[str, Any]) -> None:
        """Add one error record (``ErrorRecord.to_dict()``) to the history."""
        text = json.dumps(dict(record))
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            pipe.lpush(self._key("errors"), text)
            pipe.ltrim(self._key("errors"), 0, self.error_retention - 1)
            pipe.execute()

    def recent_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return up to ``limit`` error records, newest first."""
        if not check_limit(limit):
            return []
        with self._guard():
            texts = self._redis.lrange(self._key("errors"), 0, limit - 1)
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
        """Merge ``context`` and ``step_outcomes`` into what the run has stored.

        One script writes the run hash and one field per entry given.
        """
        entries = entry_texts(context=context, step_outcomes=step_outcomes)
        keys = [self._key("run", run_id), self._key("runs")]
        keys += [self._key("recipe-runs", recipe_path), self._key("run-seq")]
        keys += [self._key(kind, run_id) for kind in _ENTRY_KEYS]
        args: list[str | int] = [run_id, recipe_path, recipe_hash, _num(self._clock())]
        args += [self.run_retention, self._key("recipe-runs", ""), len(_RUN_KEYS)]
        args += [self._key(kind, "") for kind in _RUN_KEYS]
        args += [text for kind, key, value in entries for text in (_KIND_NUMBERS[kind], key, value)]
        with self._guard():
            self._scripts["save_checkpoint"](keys=keys, args=args)

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Return the run's Context and step outcomes as merged so far, or None if unknown."""
        with self._guard():
            # MULTI/EXEC: a save or a trim between the reads is never half seen.
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(self._key("run", run_id))
            for values, order in _KIND_KEYS.values():
                pipe.hgetall(self._key(values, run_id))
                pipe.lrange(self._key(order, run_id), 0, -1)
            row, *maps = pipe.execute()
        if not row:
            return None
        kinds = zip(_KIND_KEYS, maps[::2], maps[1::2], strict=True)
        return checkpoint_from(
            row, [(kind, key, values[key]) for kind, values, order in kinds for key in order]
        )

    def latest_run(self, recipe_path: str) -> Checkpoint | None:
        """Return the checkpoint of the run of ``recipe_path`` started last, or None."""
        with self._guard():
            ids = cast(
                list[str], self._redis.zrevrange(self._key("recipe-runs", recipe_path), 0, 0)
            )
        return self.load_checkpoint(ids[0]) if ids else None

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Return up to ``limit`` runs, the last started first."""
        if not check_limit(limit):
            return []
        with self._guard():
            ids = cast(list[str], self._redis.zrevrange(self._key("runs"), 0, limit - 1))
            pipe = self._redis.pipeline(transaction=False)
            for run_id in ids:
                pipe.hmget(self._key("run", run_id), _SUMMARY_FIELDS)
            rows = [dict(zip(_SUMMARY_FIELDS, v, strict=True)) for v in pipe.execute()]
        # A run trimmed between the two reads has no fields left.
        return [summary_from(row) for row in rows if row["run_id"] is not None]

    def finish_run(self, run_id: str, outcome: str) -> None:
        """Mark the run finished with ``outcome``; raises KeyError for an unknown run."""
        check_outcome(outcome)
        with self._guard():
            found = self._scripts["finish_run"](
                keys=[self._key("run", run_id)], args=[outcome, _num(self._clock())]
            )
        if not found:
            raise KeyError(f"no run {run_id!r} in the store")

    # -- connections ---------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connections; later calls raise :class:`StoreUnavailableError`."""
        self._closed = True
        self._redis.close()

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @contextmanager
    def _guard(
        self, errors: type[Exception] | tuple[type[Exception], ...] = _UNAVAILABLE
    ) -> Iterator[None]:
        if self._closed:
            raise StoreUnavailableError(f"the Redis state store at {self.where} is closed")
        try:
            yield
        except errors as exc:
            raise StoreUnavailableError(
                f"cannot use the Redis state store at {self.where}: {exc}. Check that"
                " redis-server runs there and that the address, database number and password"
                " are right, or choose another store with --state or FRAMEWORK0_STATE"
            ) from exc


def _num(value: float) -> str:
    # repr round-trips every float exactly; scripts store this text unchanged.
    return repr(float(value))


def _snapshot(name: str, row: list[str | None], now: float) -> BreakerSnapshot:
    state, failures, opened_at, half_open_at, trials, _ = row
    opened, half_open = _time(opened_at), _time(half_open_at)
    effective = cast(BreakerState, state or "closed")
    if effective == "open" and half_open is not None and now >= half_open:
        effective = "half_open"
    return BreakerSnapshot(name, effective, int(failures or 0), opened, half_open, int(trials or 0))


def _time(text: str | None) -> float | None:
    return float(text) if text else None


def _verdict(admission: Admission) -> tuple[str, int]:
    return ("1" if admission.trial else "0"), admission.epoch
