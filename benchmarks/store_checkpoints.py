"""Checkpoint cost per store as a run grows: does the 5,000th save cost what the 1st did?

Usage: python benchmarks/store_checkpoints.py [--saves N] [--window W] [--redis URL]
       [--cumulative]

Saves N checkpoints of one run on the memory, SQLite and Redis stores, timing every
save, in two patterns:

- ``new outcome``: each save notes one new step outcome and overwrites two Context keys
  (``last``, ``total``), so the stored Context stays small;
- ``new context key``: each save also adds one new Context key (``recovery.<step>``, as
  the error journal does for every step), so the stored Context grows to N keys.

Each save passes what changed since the last one, as a runner does with
``Context.changes_since``; the timing covers building those arguments and the save.
Prints the median and mean cost of the first W and the last W saves and their ratios
(last / first): a save whose cost does not grow with what the run has stored has
ratios near 1.

``--cumulative`` adds rows where each save passes the whole Context (``to_dict()``) and
every outcome so far, which the merge semantics allow but which costs O(n) per save
again. Without ``--redis`` a throwaway ``redis-server`` is started on a free port if one
is on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_success_path import redis_server

from framework0_errors.orchestrator.context import Context
from framework0_errors.stores.select import Store, open_store

PATTERNS = {"new outcome": False, "new context key": True}
"""Each pattern's label and whether its saves add a Context key."""


def save_costs(store: Store, saves: int, *, new_keys: bool, cumulative: bool) -> list[float]:
    """Seconds taken by each of ``saves`` checkpoints of one run, one new step each."""
    # A first save on another run opens the connection and loads the script.
    store.save_checkpoint(
        "warm-up", recipe_path="w.yaml", recipe_hash="h", context={}, step_outcomes={}
    )
    context = Context({"data": {"rows": [1, 2, 3]}})
    version = 0
    outcomes: dict[str, str] = {}
    costs = []
    with collection_paused():
        for i in range(saves):
            step = f"step-{i:05d}"
            outcomes[step] = "succeeded"
            context.set("last", step)
            context.set("total", i)
            if new_keys:
                context.set(f"recovery.{step}", {"attempts": 1, "outcome": "succeeded"})
            start = time.perf_counter()
            if cumulative:
                given, given_outcomes = context.to_dict(), outcomes
            else:
                version, given = context.changes_since(version)
                given_outcomes = {step: "succeeded"}
            store.save_checkpoint(
                "bench",
                recipe_path="bench.yaml",
                recipe_hash="h",
                context=given,
                step_outcomes=given_outcomes,
            )
            costs.append(time.perf_counter() - start)
    loaded = store.load_checkpoint("bench")
    assert loaded is not None
    assert len(loaded.step_outcomes) == saves
    assert loaded.context == context.to_dict()
    return costs


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the garbage collector, as timeit does.

    A collection landing in a timed save would charge it for the whole heap, which grows
    with the run whatever the store.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def main() -> None:
    """Measure every store and pattern in one run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saves", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--redis", help="redis://HOST:PORT/DB of a server to measure against")
    parser.add_argument("--cumulative", action="store_true", help="also pass everything")
    opts = parser.parse_args()
    w = opts.window
    with tempfile.TemporaryDirectory() as tmp, redis_server(opts.redis) as redis_url:
        kinds = ["memory", "sqlite", "redis"]
        if redis_url is None:
            print("redis: skipped (no redis-server on PATH; pass --redis URL)")
            kinds.remove("redis")
        print(f"{opts.saves} saves of one run, one new step outcome each; first/last {w} saves")
        header = f"{'store':<38}{'first med':>11}{'last med':>11}{'ratio':>7}"
        print(header + f"{'first mean':>12}{'last mean':>11}{'ratio':>7}")
        for cumulative in [False, True] if opts.cumulative else [False]:
            for number, (pattern, new_keys) in enumerate(PATTERNS.items()):
                mode = f"{number}-{'all' if cumulative else 'changes'}"
                urls = {
                    "memory": "memory:",
                    "sqlite": f"sqlite:{tmp}/{mode}.db",
                    # A prefix per mode keeps the runs' keys apart on one server.
                    "redis": f"{(redis_url or '').partition('?')[0]}?prefix=bench-{mode}",
                }
                for kind in kinds:
                    store = open_store(urls[kind])
                    try:
                        costs = save_costs(
                            store, opts.saves, new_keys=new_keys, cumulative=cumulative
                        )
                    finally:
                        store.close()
                    label = f"{kind}, {pattern}" + (" (all)" if cumulative else "")
                    print(row(label, costs, w))


def row(label: str, costs: list[float], window: int) -> str:
    """One line of the table: median and mean of the first and last ``window`` saves."""
    first, last = costs[:window], costs[-window:]
    medians = statistics.median(first), statistics.median(last)
    means = statistics.fmean(first), statistics.fmean(last)
    line = f"{label:<38}{medians[0] * 1e6:>8.1f} us{medians[1] * 1e6:>8.1f} us"
    line += f"{medians[1] / medians[0]:>7.2f}"
    line += f"{means[0] * 1e6:>9.1f} us{means[1] * 1e6:>8.1f} us"
    return line + f"{means[1] / means[0]:>7.2f}"


if __name__ == "__main__":
    main()
