"""Durable stores shared by real processes: slot limits, killed holders, shared breakers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework0_errors.policies import Bulkhead, CircuitBreaker, CircuitOpenError
from framework0_errors.stores.select import open_store

ROOT = Path(__file__).resolve().parents[2]
GENEROUS = 60.0


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.stores.worker ARGS`` from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stores.worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    """Wait for a worker, fail the test with its stderr if it failed, and return its stdout."""
    out, err = process.communicate(timeout=GENEROUS)
    assert process.returncode == 0, err
    return out


def wait_for(path: Path) -> None:
    """Wait until a worker creates ``path``."""
    deadline = time.monotonic() + GENEROUS
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} from the worker"
        time.sleep(0.005)


@pytest.mark.parametrize(("workers", "rounds"), [(8, 3)])
def test_processes_never_exceed_the_bulkhead_limit(
    durable_url: str, tmp_path: Path, workers: int, rounds: int
) -> None:
    """Eight processes through a max_concurrent=2 bulkhead never run more than 2 at once."""
    for name in ("count", "max", "lock"):
        (tmp_path / name).write_text("")
    open_store(durable_url).close()  # create the database before the race
    processes = [spawn("slots", durable_url, str(tmp_path), str(rounds)) for _ in range(workers)]
    (tmp_path / "go").touch()
    for process in processes:
        finish(process)
    # 2, not just <= 2: the workers really overlapped, so the limit was really tested.
    assert (tmp_path / "max").read_text() == "2"
    assert (tmp_path / "count").read_text() == "0"
    store = open_store(durable_url)
    assert store.in_use("pool", now=time.time()) == 0
    store.close()


def test_a_killed_holder_loses_its_slot_when_the_lease_ends(
    durable_url: str, tmp_path: Path
) -> None:
    """A slot held by a process killed with SIGKILL is free again once its lease runs out."""
    lease = 1.0
    store = open_store(durable_url)
    ready = tmp_path / "ready"
    spawned = time.time()
    holder = spawn("hold", durable_url, str(ready), str(lease))
    try:
        wait_for(ready)
        held_since = float(ready.read_text())
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=GENEROUS)
        assert holder.returncode == -signal.SIGKILL
        assert store.in_use("solo", now=time.time()) == 1
        bulkhead = Bulkhead(
            "solo",
            max_concurrent=1,
            max_wait=GENEROUS,
            store=store,
            lease_seconds=lease,
            poll_interval=0.01,
        )
        acquired = bulkhead.call(time.time)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
        store.close()
    assert spawned + lease <= acquired <= held_since + lease + 2.0


def test_failures_in_one_process_open_the_breaker_for_another(durable_url: str) -> None:
    """Two processes failing on one breaker name open it together, for every process."""
    first = finish(spawn("fail", durable_url, "shared", "2"))
    second = finish(spawn("fail", durable_url, "shared", "1"))
    assert (first, second) == ("", "closed->open\n")
    store = open_store(durable_url)
    breaker = CircuitBreaker("shared", failure_threshold=3, store=store)
    try:
        with pytest.raises(CircuitOpenError, match="'shared' is open"):
            breaker.call(lambda: "not called")
        assert breaker.snapshot().consecutive_failures == 3
    finally:
        store.close()


def test_concurrent_processes_lose_no_failure(durable_url: str) -> None:
    """Failures recorded by four processes at once are all counted: no lost updates."""
    open_store(durable_url).close()
    processes = [spawn("count", durable_url, "tally", "50") for _ in range(4)]
    for process in processes:
        finish(process)
    store = open_store(durable_url)
    assert store.snapshot("tally", now=time.time()).consecutive_failures == 200
    store.close()
