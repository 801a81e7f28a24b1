"""Timeout: limit how long the caller waits for one attempt.

The attempt runs on a worker thread while the caller waits at most ``seconds``. Python
cannot kill a thread, so on timeout the attempt is *abandoned*, not stopped: it keeps
running until it returns on its own, and whatever it returns or raises then is
dropped. ``on_abandon`` lets the caller fence off its side effects (for example, refuse
its later writes to the Context). Steps whose timeout must really stop them need a
separate process.

By default attempts run on one process-wide pool of daemon threads, created on first
use. It starts a new thread whenever no idle one is waiting, so attempts stuck after a
timeout never starve later ones; threads idle for a minute exit. Daemon threads do not
keep the interpreter alive at exit, where a stuck attempt in a
``ThreadPoolExecutor`` would (its workers are joined at exit).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from framework0_errors.policies.exceptions import StepTimeoutError

__all__ = ["Timeout"]

T = TypeVar("T")


class Timeout:
    """Run each call on a worker thread and stop waiting for it after ``seconds``.

    Args:
        seconds: Longest wait for one call, > 0.
        executor: Run calls here instead of the shared daemon pool. A
            ``ThreadPoolExecutor`` joins its threads at interpreter exit, so a stuck
            attempt would then delay exit.
        on_abandon: Called in the caller's thread when a call times out, before
            :class:`StepTimeoutError` is raised.

    The call runs in a copy of the caller's :mod:`contextvars` context. Exceptions
    raised by ``fn`` propagate unchanged (same object).
    """

    def __init__(
        self,
        seconds: float,
        *,
        executor: concurrent.futures.Executor | None = None,
        on_abandon: Callable[[], None] | None = None,
    ) -> None:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"timeout seconds must be a finite number > 0; got {seconds!r}")
        self.seconds = seconds
        # Longer waits overflow the platform's clock (about 292 years on Linux):
        # a wait that long never ends in practice either.
        self._wait = min(seconds, threading.TIMEOUT_MAX)
        self._executor = executor
        self._on_abandon = on_abandon

    def call(self, fn: Callable[[], T], *, on_abandon: Callable[[], None] | None = None) -> T:
        """Return ``fn()`` if it finishes within ``seconds``; re-raise what it raises.

        ``on_abandon`` replaces, for this call, the one given to the constructor.

        Raises:
            StepTimeoutError: ``fn`` did not finish in time; it may still be running.
        """
        run = contextvars.copy_context().run
        if self._executor is not None:
            future = self._executor.submit(run, fn)
            try:
                return future.result(timeout=self._wait)
            except TimeoutError:
                # fn may have raised a TimeoutError of its own: only a future still
                # running means ours. result() then re-raises fn's exception unchanged.
                if future.done():
                    return future.result()
            future.cancel()
        else:
            job: _Job[T] = _Job(run, fn)
            _shared.pool().submit(job)
            if job.done.acquire(timeout=self._wait):
                return job.outcome()
        abandoned = on_abandon if on_abandon is not None else self._on_abandon
        if abandoned is not None:
            abandoned()
        raise StepTimeoutError(self.seconds)


class _Job(Generic[T]):
    """One call and its outcome; ``done`` is released once the outcome is set."""

    __slots__ = ("args", "done", "error", "run", "value")

    def __init__(self, run: Callable[..., Any], *args: Any) -> None:
        self.run = run
        self.args = args
        self.done = threading.Lock()
        self.done.acquire()
        self.value: T | None = None
        self.error: BaseException | None = None

    def execute(self, before_release: Callable[[], None]) -> None:
        try:
            self.value = self.run(*self.args)
        except BaseException as exc:  # handed to the waiting thread, re-raised there
            self.error = exc
        finally:
            before_release()
            self.done.release()

    def outcome(self) -> T:
        error = self.error
        if error is not None:
            # Drop our reference so the traceback's frames do not form a cycle with us.
            self.error = None
            raise error
        return self.value  # type: ignore[return-value]


class _DaemonPool:
    """Daemon worker threads that grow on demand and exit after ``idle_timeout``."""

    def __init__(self, *, idle_timeout: float = 60.0) -> None:
        self._idle_timeout = idle_timeout
        self._jobs: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        # One token per worker waiting for a job that no submit has claimed yet.
        # Invariant: workers between two jobs == queued jobs + tokens, so every
        # queued job has a worker waiting for it. Appends and pops of a deque are
        # atomic, so a submit and an exiting worker never claim the same token,
        # and the hand-off of a job takes no lock.
        self._idle: deque[None] = deque()
        self._lock = threading.Lock()  # guards ``threads`` only
        self.threads = 0

    def submit(self, job: _Job[Any]) -> None:
        """Hand ``job`` to an idle worker, or to a new one if none is idle."""
        try:
            self._idle.pop()
        except IndexError:
            pass
        else:
            self._jobs.put(job)
            return
        with self._lock:
            self.threads += 1
        # The first job goes straight to the new thread, so if the thread cannot start
        # the job is not left queued to run later, after its caller has given up.
        box = [job]
        del job
        try:
            threading.Thread(
                target=self._work, args=(box,), name="framework0-timeout", daemon=True
            ).start()
        except BaseException:
            with self._lock:
                self.threads -= 1
            raise

    def _work(self, box: list[_Job[Any]]) -> None:
        # Thread keeps its args until run() returns; emptying the box lets a finished
        # job's result be freed while this thread idles.
        job: _Job[Any] | None = box.pop()
        while job is not None:
            # The worker counts itself idle before it wakes the caller: woken first,
            # the caller would race it for the GIL, and its next submit could find
            # no idle worker and start a needless thread.
            job.execute(before_release=self._now_idle)
            job = None
            job = self._next_job()

    def _now_idle(self) -> None:
        self._idle.append(None)

    def _next_job(self) -> _Job[Any] | None:
        while True:
            try:
                return self._jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                try:
                    self._idle.pop()
                except IndexError:
                    # Every waiting worker is claimed by a queued job: one is ours.
                    continue
                with self._lock:
                    self.threads -= 1
                return None


class _Shared:
    """The process-wide pool, created on first use and forgotten in forked children."""

    def __init__(self) -> None:
        self._pool: _DaemonPool | None = None
        self._lock = threading.Lock()

    def pool(self) -> _DaemonPool:
        pool = self._pool
        if pool is not None:  # created once: no lock needed to read it after that
            return pool
        with self._lock:
            if self._pool is None:
                self._pool = _DaemonPool()
            return self._pool

    def forget(self) -> None:
        # A forked child has none of the parent's threads (and maybe a held lock).
        self._pool = None
        self._lock = threading.Lock()


_shared = _Shared()

if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only off POSIX
    os.register_at_fork(after_in_child=_shared.forget)
