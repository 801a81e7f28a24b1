"""Timeout: results and errors pass through, slow calls are abandoned, the pool grows."""

from __future__ import annotations

import concurrent.futures
import contextvars
import math
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import framework0_errors
from framework0_errors.orchestrator.problems import Framework0Error
from framework0_errors.policies import StepTimeoutError, Timeout
from framework0_errors.policies import timeout as timeout_module

# Long enough never to fire on a loaded machine when the call is quick.
GENEROUS = 30.0
# Short enough to keep tests fast when a timeout is meant to fire.
SHORT = 0.05


@pytest.fixture(params=["daemon_pool", "executor"])
def executor(request: pytest.FixtureRequest) -> Iterator[concurrent.futures.Executor | None]:
    """Run each test on the shared daemon pool and on a caller-supplied executor."""
    if request.param == "daemon_pool":
        yield None
        return
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True)


def wait_until(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    """Poll ``condition`` briefly until true or ``limit`` seconds pass."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def test_returns_the_value(executor: concurrent.futures.Executor | None) -> None:
    """A call that finishes in time returns its value."""
    assert Timeout(GENEROUS, executor=executor).call(lambda: 42) == 42


def test_a_timeout_beyond_the_platform_clock_still_waits(
    executor: concurrent.futures.Executor | None,
) -> None:
    """1e308 seconds is valid: the wait is cut to threading.TIMEOUT_MAX, not an OverflowError."""
    assert Timeout(1e308, executor=executor).call(lambda: 42) == 42


def test_errors_propagate_unchanged(executor: concurrent.futures.Executor | None) -> None:
    """What the call raises is re-raised: the same object."""
    error = ValueError("bad")

    def fn() -> None:
        raise error

    with pytest.raises(ValueError, match="bad") as info:
        Timeout(GENEROUS, executor=executor).call(fn)
    assert info.value is error


def test_a_timeout_error_of_the_call_is_not_mistaken_for_ours(
    executor: concurrent.futures.Executor | None,
) -> None:
    """The call's own TimeoutError propagates as itself, not as StepTimeoutError."""
    error = TimeoutError("socket timed out")
    abandoned: list[int] = []

    def fn() -> None:
        raise error

    timeout = Timeout(GENEROUS, executor=executor, on_abandon=lambda: abandoned.append(1))
    with pytest.raises(TimeoutError) as info:
        timeout.call(fn)
    assert info.value is error
    assert abandoned == []


def test_base_exceptions_propagate(executor: concurrent.futures.Executor | None) -> None:
    """A KeyboardInterrupt raised in the worker reaches the caller."""

    def fn() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Timeout(GENEROUS, executor=executor).call(fn)


def test_slow_call_is_abandoned(executor: concurrent.futures.Executor | None) -> None:
    """After `seconds` the caller gets StepTimeoutError and on_abandon runs; the call goes on."""
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    abandoned: list[str] = []

    def stuck() -> str:
        started.set()
        release.wait(timeout=GENEROUS)
        finished.set()
        return "too late"

    timeout = Timeout(
        SHORT,
        executor=executor,
        on_abandon=lambda: abandoned.append(threading.current_thread().name),
    )
    with pytest.raises(StepTimeoutError) as info:
        timeout.call(stuck)
    assert started.is_set()
    assert not finished.is_set()  # Python cannot stop it: it is still running
    assert abandoned == [threading.current_thread().name]
    error = info.value
    assert error.seconds == SHORT
    assert isinstance(error, TimeoutError)
    assert isinstance(error, Framework0Error)
    assert type(error).__module__ == "framework0_errors"
    assert str(error) == "attempt timed out after 0.05s"
    release.set()
    assert finished.wait(timeout=GENEROUS)


def test_stuck_attempts_do_not_starve_later_calls() -> None:
    """Calls still running after their timeout do not block new calls on the shared pool."""
    release = threading.Event()
    try:
        for _ in range(5):
            with pytest.raises(StepTimeoutError):
                Timeout(SHORT).call(lambda: release.wait(timeout=GENEROUS))
        assert Timeout(GENEROUS).call(lambda: "still served") == "still served"
    finally:
        release.set()


def test_call_sees_the_callers_context_variables(
    executor: concurrent.futures.Executor | None,
) -> None:
    """The call runs in a copy of the caller's contextvars context."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("from caller")
    assert Timeout(GENEROUS, executor=executor).call(var.get) == "from caller"


def test_worker_threads_are_daemons() -> None:
    """Shared-pool workers are daemon threads, so a stuck attempt cannot block exit."""
    assert Timeout(GENEROUS).call(lambda: threading.current_thread().daemon) is True


def test_idle_worker_is_reused() -> None:
    """A worker that finished its job takes the next one instead of a new thread starting."""
    pool = timeout_module._DaemonPool()
    first: timeout_module._Job[int] = timeout_module._Job(lambda: 1)
    pool.submit(first)
    assert first.done.acquire(timeout=GENEROUS)
    assert wait_until(lambda: len(pool._idle) == 1)
    second: timeout_module._Job[int] = timeout_module._Job(lambda: 2)
    pool.submit(second)
    assert second.done.acquire(timeout=GENEROUS)
    assert (first.outcome(), second.outcome(), pool.threads) == (1, 2, 1)


def test_pool_grows_while_workers_are_busy() -> None:
    """A job submitted while every worker is busy gets a new thread."""
    pool = timeout_module._DaemonPool()
    release = threading.Event()
    busy: timeout_module._Job[bool] = timeout_module._Job(lambda: release.wait(GENEROUS))
    pool.submit(busy)
    quick: timeout_module._Job[str] = timeout_module._Job(lambda: "quick")
    pool.submit(quick)
    assert quick.done.acquire(timeout=GENEROUS)
    assert quick.outcome() == "quick"
    assert pool.threads == 2
    release.set()
    assert busy.done.acquire(timeout=GENEROUS)


def test_idle_workers_exit() -> None:
    """Workers idle for idle_timeout exit, so a burst does not leave threads forever."""
    pool = timeout_module._DaemonPool(idle_timeout=0.01)
    job: timeout_module._Job[None] = timeout_module._Job(lambda: None)
    pool.submit(job)
    assert job.done.acquire(timeout=GENEROUS)
    assert wait_until(lambda: pool.threads == 0)
    assert len(pool._idle) == 0


class RacingQueue:
    """A queue whose first get() times out just as a job arrives, as in a submit race."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.gets = 0

    def get(self, timeout: float) -> Any:
        self.gets += 1
        if self.gets == 1:
            raise queue.Empty
        return self.job

    def empty(self) -> bool:
        return False


def test_worker_whose_wait_times_out_as_a_job_arrives_stays() -> None:
    """A worker that times out while a job is queued takes the job instead of exiting."""
    pool = timeout_module._DaemonPool()
    job: timeout_module._Job[str] = timeout_module._Job(lambda: "late")
    pool._jobs = RacingQueue(job)  # type: ignore[assignment]
    assert pool._next_job() is job


def test_failed_thread_start_leaves_no_queued_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """If no thread can start, submit raises and the job is not left to run later."""
    pool = timeout_module._DaemonPool()

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        pool.submit(timeout_module._Job(lambda: None))
    assert pool.threads == 0
    assert pool._jobs.empty()


def test_shared_pool_is_created_once_and_forgotten_after_fork() -> None:
    """The shared pool is made lazily, reused, and replaced after forget() (fork)."""
    shared = timeout_module._Shared()
    first = shared.pool()
    assert shared.pool() is first
    shared.forget()
    assert shared.pool() is not first


def test_step_timeout_error_survives_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """StepTimeoutError keeps its seconds and message through pickle."""
    monkeypatch.setattr(framework0_errors, "StepTimeoutError", StepTimeoutError, raising=False)
    copy = pickle.loads(pickle.dumps(StepTimeoutError(2.5)))
    assert (copy.seconds, str(copy)) == (2.5, "attempt timed out after 2.5s")


@pytest.mark.parametrize("seconds", [0, -1.0, math.inf, math.nan])
def test_invalid_seconds_raise_value_error(seconds: float) -> None:
    """A timeout must be a finite number of seconds > 0."""
    with pytest.raises(ValueError, match="timeout seconds must be"):
        Timeout(seconds)
