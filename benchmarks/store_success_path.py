"""Success-path cost per store: before_call + record_success on a closed breaker, in one run.

Usage: python benchmarks/store_success_path.py [--calls N] [--repeat R] [--redis URL]

Prints the time per call of the success path for the memory, SQLite and Redis stores
and each one's ratio to the memory store, beside the cost of one plain read of the same
backend (a primary-key SELECT on the SQLite file, a PING to the Redis server): the
success path of a durable store must cost about two reads and never a write. Without
``--redis`` a throwaway ``redis-server`` is started on a free port if one is on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework0_errors.stores.select import Store, open_store


def success_path(store: Store) -> Callable[[], None]:
    """One successful call's store traffic on a closed breaker that has state."""
    admission = store.before_call("bench", now=0.0, half_open_max_calls=1)
    store.record_failure(
        "bench", now=0.0, admission=admission, failure_threshold=5, recovery_timeout=60.0
    )
    store.record_success("bench", now=0.0, admission=admission)  # closed, 0 failures

    def call() -> None:
        now = time.time()
        admitted = store.before_call("bench", now=now, half_open_max_calls=1)
        store.record_success("bench", now=now, admission=admitted)

    return call


def per_call(fns: dict[str, Callable[[], object]], calls: int, repeat: int) -> dict[str, float]:
    """Best time per call of each function; the runs take turns so load drifts hit all."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for label, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[label] = min(best[label], (time.perf_counter() - start) / calls)
    return best


@contextmanager
def redis_server(url: str | None) -> Iterator[str | None]:
    """Yield ``url``, or the URL of a throwaway redis-server, or None if there is none."""
    binary = shutil.which("redis-server")
    if url is not None or binary is None:
        yield url
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(500):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0?prefix=bench"
    finally:
        client.close()
        process.terminate()
        process.wait()


def main() -> None:
    """Measure every store in one run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis", help="redis://HOST:PORT/DB of a server to measure against")
    opts = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(opts.redis) as redis_url,
        ExitStack() as cleanup,
    ):
        urls = {"memory": "memory:", "sqlite": f"sqlite:{tmp}/state.db", "redis": redis_url}
        if redis_url is None:
            print("redis: skipped (no redis-server on PATH; pass --redis URL)")
            del urls["redis"]
        fns: dict[str, Callable[[], object]] = {}
        for kind, url in urls.items():
            assert url is not None
            store = open_store(url)
            cleanup.callback(store.close)
            fns[kind] = success_path(store)
            read = plain_read(kind, url)
            if read is not None:
                cleanup.callback(read[1])
                fns[f"{kind} read"] = read[0]
        cost = per_call(fns, opts.calls, opts.repeat)
    print(f"{'store':<8}{'success path':>16}{'vs memory':>12}{'one read':>12}{'in reads':>10}")
    for kind in urls:
        line = f"{kind:<8}{cost[kind] * 1e6:>13.2f} us{cost[kind] / cost['memory']:>11.1f}x"
        if f"{kind} read" in cost:
            read_cost = cost[f"{kind} read"]
            line += f"{read_cost * 1e6:>9.2f} us{cost[kind] / read_cost:>10.1f}"
        print(line)


def plain_read(kind: str, url: str) -> tuple[Callable[[], object], Callable[[], None]] | None:
    """One plain read of the backend behind ``url``, and how to close it; None for memory."""
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:"), isolation_level=None)
        # The breaker row, as the store reads it.
        query = "SELECT state, failures, opened_at, half_open_at, trials, epoch FROM breakers"
        query += " WHERE name = ?"
        return (lambda: conn.execute(query, ("bench",)).fetchall()), conn.close
    if kind == "redis":
        client = redis.Redis.from_url(url.partition("?")[0])
        return client.ping, client.close
    return None


if __name__ == "__main__":
    main()
