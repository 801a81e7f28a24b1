"""Worker processes for the cross-process store tests: ``python -m tests.stores.worker``.

Commands (each opens the store named by URL):

- ``slots URL FOLDER ROUNDS``: wait for FOLDER/go, then ROUNDS times run a critical
  section through ``Bulkhead("pool", max_concurrent=2)``; inside it, under an OS file
  lock, count the holders in FOLDER/count and keep the highest count in FOLDER/max.
- ``hold URL READY LEASE``: take the only slot of "solo" with a LEASE-second lease,
  write the time to READY, then sleep until killed.
- ``fail URL NAME COUNT``: record COUNT failures on breaker NAME (threshold 3) and print
  every state change as ``old->new``.
- ``count URL NAME COUNT``: record COUNT failures on breaker NAME (threshold 10**9).
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from pathlib import Path

from framework0_errors.policies import Bulkhead, CircuitBreaker
from framework0_errors.stores import Admission
from framework0_errors.stores.select import Store, open_store

GENEROUS = 60.0
HOLD = 0.02


def _update(folder: Path, delta: int) -> None:
    with (folder / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        count = int((folder / "count").read_text() or 0) + delta
        (folder / "count").write_text(str(count))
        highest = int((folder / "max").read_text() or 0)
        (folder / "max").write_text(str(max(highest, count)))


def _critical(folder: Path) -> None:
    _update(folder, +1)
    time.sleep(HOLD)
    _update(folder, -1)


def slots(store: Store, folder: Path, rounds: int) -> None:
    """Run ``rounds`` critical sections through a 2-slot bulkhead, counting holders."""
    bulkhead = Bulkhead(
        "pool",
        max_concurrent=2,
        max_wait=GENEROUS,
        store=store,
        lease_seconds=GENEROUS,
        poll_interval=0.002,
    )
    deadline = time.monotonic() + GENEROUS
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    for _ in range(rounds):
        bulkhead.call(lambda: _critical(folder))


def hold(store: Store, ready: Path, lease: float) -> None:
    """Hold the only slot of "solo" until killed."""

    def held() -> None:
        # Written whole, then renamed: the test never reads a half-written file.
        partial = ready.with_suffix(".partial")
        partial.write_text(repr(time.time()))
        partial.replace(ready)
        time.sleep(GENEROUS)

    Bulkhead("solo", max_concurrent=1, store=store, lease_seconds=lease).call(held)


def fail(store: Store, name: str, count: int) -> None:
    """Record failures through a CircuitBreaker, printing its state changes."""
    breaker = CircuitBreaker(
        name,
        failure_threshold=3,
        recovery_timeout=GENEROUS,
        store=store,
        on_state_change=lambda _, old, new: print(f"{old}->{new}", flush=True),
    )
    for _ in range(count):
        with contextlib.suppress(ConnectionError):
            breaker.call(lambda: (_ for _ in ()).throw(ConnectionError("down")))


def count(store: Store, name: str, times: int) -> None:
    """Record failures straight on the store, never reaching the threshold."""
    for _ in range(times):
        store.record_failure(
            name,
            now=time.time(),
            admission=Admission(True, "closed"),
            failure_threshold=10**9,
            recovery_timeout=1.0,
        )


def main(argv: list[str]) -> None:
    """Run one command (see the module docstring)."""
    command, url, *rest = argv
    store = open_store(url)
    try:
        if command == "slots":
            slots(store, Path(rest[0]), int(rest[1]))
        elif command == "hold":
            hold(store, Path(rest[0]), float(rest[1]))
        elif command == "fail":
            fail(store, rest[0], int(rest[1]))
        else:
            count(store, rest[0], int(rest[1]))
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
