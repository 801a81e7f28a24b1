"""Run a loaded recipe: schedule its steps, wrap them in middleware, record results."""

from __future__ import annotations

import heapq
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any, Literal

from .context import Context
from .failures import MissingContextKeys, StepReturnedNonZero
from .middleware import Invocation, Next, StepMiddleware, compose
from .recipe import Recipe, Step

__all__ = ["STEP_THREAD_PREFIX", "Run", "RunResult", "StepResult", "StepsAbandoned", "execute"]

STEP_THREAD_PREFIX = "framework0-step"
"""Names of the worker threads that run steps under ``workers`` > 1 start with this."""

Status = Literal["succeeded", "failed", "skipped"]
_ABSENT = object()


class StepsAbandoned(KeyboardInterrupt):
    """A second interrupt stopped waiting for steps still running in worker threads.

    What they did is not recorded. Their threads go on: Python waits for them
    before the process exits, unless it ends with ``os._exit`` (as the
    ``framework0`` command does).
    """

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps
        super().__init__(f"abandoned running step(s): {', '.join(steps)}")


@dataclass(slots=True)
class StepResult:
    """What became of one step."""

    name: str
    status: Status
    start: float | None = None
    end: float | None = None
    duration: float = 0.0
    error: str | None = None
    error_type: str | None = None
    reason: str | None = None
    detail: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as the run report shows it."""
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "duration": round(self.duration, 6),
            "error": self.error,
            "error_type": self.error_type,
            "reason": self.reason,
            "detail": self.detail,
        }
        out.update({k: v for k, v in self.notes.items() if k != "errors_reported"})
        return out


class Run:
    """One run of a recipe: its id, hooks, Context and a namespace for plugins."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        hook: Any,
        context: Context,
        workers: int,
        run_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        resumed: frozenset[str] = frozenset(),
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex
        self.recipe = recipe
        self.hook = hook
        self.context = context
        self.workers = workers
        self.options: Mapping[str, Any] = options or {}
        """Command-line options for plugins (e.g. ``state``), by name."""
        self.resumed = resumed
        """Steps that succeeded in the run being resumed; they are not run again."""
        self.extras: dict[str, Any] = {}
        """Per-run state for plugins, keyed by plugin name."""
        self.warnings: list[str] = []
        """Problems that did not stop the run (a plugin's observer failed); in the report."""
        self.stop_reason: str | None = None

    def report_step_error(
        self,
        invocation: Invocation,
        error: BaseException,
        *,
        attempt: int,
        record: dict[str, Any] | None,
    ) -> None:
        """Emit ``framework0_step_error`` for one failed attempt of a step."""
        invocation.notes["errors_reported"] = invocation.notes.get("errors_reported", 0) + 1
        try:
            self.hook.framework0_step_error(
                run=self, step=invocation.step, error=error, attempt=attempt, record=record
            )
        except Exception as exc:  # an observer must not change the step's fate
            self.warnings.append(f"framework0_step_error failed: {type(exc).__name__}: {exc}")

    def request_stop(self, reason: str) -> None:
        """Start no new step; steps already running finish."""
        if self.stop_reason is None:
            self.stop_reason = reason


@dataclass(slots=True)
class RunResult:
    """The outcome of a run: per-step results, the Context and the report."""

    run: Run
    results: dict[str, StepResult]
    report: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        """Whether every step succeeded."""
        return all(r.status == "succeeded" for r in self.results.values())


def _attempt(invocation: Invocation) -> None:
    step = invocation.step
    assert step.call is not None, "steps are resolved before they run"
    code = step.call(invocation.context, dict(step.args))
    if code is not None and (type(code) is not int or code != 0):
        raise StepReturnedNonZero(step.name, code)
    if step.ctx_has_keys:
        missing = [k for k in step.ctx_has_keys if invocation.context.get(k, _ABSENT) is _ABSENT]
        if missing:
            raise MissingContextKeys(step.name, missing)


def execute(
    recipe: Recipe,
    *,
    hook: Any,
    workers: int = 1,
    context: Context | None = None,
    on_step_end: Callable[[StepResult], None] | None = None,
    run_id: str | None = None,
    options: Mapping[str, Any] | None = None,
    resumed: Iterable[str] = (),
    on_interrupt: Callable[[list[str]], None] | None = None,
    on_abort: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run every step of ``recipe`` and return what became of each.

    ``hook`` is a pluggy hook relay (``PluginManager.hook``). Steps without
    ``depends_on`` are independent: with ``workers`` > 1 they run
    concurrently in threads; with 1 they run in ``idx`` order. To resume a
    run, pass its ``run_id``, its Context, and the steps it completed as
    ``resumed``: they count as succeeded and are not run again.

    A KeyboardInterrupt stops the run. With ``workers`` > 1 the steps still
    running (threads cannot be stopped) are waited for and recorded first,
    after ``on_interrupt(their names)``; a second KeyboardInterrupt while
    waiting abandons them with :class:`StepsAbandoned`. Steps handed to a
    worker that had not begun them are not run. Before the interrupt goes
    on, ``on_abort(report)`` gets the run report of what happened so far:
    ``status`` is ``interrupted``, and every step that did not end is
    ``skipped``, with the reason.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    run = Run(
        recipe,
        hook=hook,
        context=context or Context(),
        workers=workers,
        run_id=run_id,
        options=options,
        resumed=frozenset(resumed),
    )
    return _Scheduler(run, on_step_end, on_interrupt, on_abort).go()


class _Scheduler:
    def __init__(
        self,
        run: Run,
        on_step_end: Callable[[StepResult], None] | None,
        on_interrupt: Callable[[list[str]], None] | None = None,
        on_abort: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.run = run
        self.hook = run.hook
        self.on_step_end = on_step_end
        self.on_interrupt = on_interrupt
        self.on_abort = on_abort
        self.current: str | None = None
        """The step running in the main thread (without --workers), if any."""
        self.results: dict[str, StepResult] = {}
        self.dependents = run.recipe.dependents()
        self.waiting = {s.name: len(s.depends_on) for s in run.recipe.steps}
        self.order = {s.name: (s.idx, s.position) for s in run.recipe.steps}
        self.ready: list[tuple[tuple[int, int], str]] = []
        self.chains: dict[str, Next] = {}
        # Under --workers: the steps a worker has begun (they will report on the
        # queue), and whether an interrupt stopped handing out more.
        self.start_lock = threading.Lock()
        self.started: set[str] = set()
        self.stopping = False
        self.outcomes: dict[str, StepResult | BaseException] = {}

    def go(self) -> RunResult:
        run = self.run
        started = time.time()
        clock = time.perf_counter()
        try:
            # Inside: plugins whose run_start ran before one that failed or was
            # interrupted release what they set up in run_aborted.
            self.hook.framework0_run_start(run=run, context=run.context)
            results = self._run_steps()
            report = self._report(results, started, time.perf_counter() - clock)
        except BaseException as exc:
            try:
                self._observe("framework0_run_aborted", run=run, error=exc)
            finally:  # also when a second interrupt cuts run_aborted short
                if self.on_abort is not None and isinstance(exc, KeyboardInterrupt):
                    elapsed = time.perf_counter() - clock
                    self.on_abort(self._interrupted_report(exc, started, elapsed))
            raise
        try:
            self._observe("framework0_run_end", run=run, context=run.context, report=report)
        except KeyboardInterrupt as exc:
            # Every step ended, but the hooks were cut short (a rollback, say):
            # those that did not get to run_end release what they hold now.
            report["status"] = "interrupted"
            try:
                self._observe("framework0_run_aborted", run=run, error=exc)
            finally:
                if self.on_abort is not None:
                    self.on_abort(report)
            raise
        return RunResult(run, results, report)

    def _run_steps(self) -> dict[str, StepResult]:
        run, recipe = self.run, self.run.recipe
        for step in recipe.steps:
            contributed: list[StepMiddleware] = []
            for items in self.hook.framework0_step_middleware(run=run, step=step):
                contributed.extend(items or ())
            self.chains[step.name] = compose(contributed, _attempt)
            if not step.depends_on:
                heapq.heappush(self.ready, (self.order[step.name], step.name))
        if run.workers == 1:
            self._sequential()
        else:
            self._parallel()
        for step in recipe.steps:
            if step.name not in self.results:
                self._finish(step, self._skipped(step, self._not_run_reason()))
        return {s.name: self.results[s.name] for s in recipe.steps}

    def _observe(self, name: str, **kwargs: Any) -> None:
        # An observer that fails must not lose the run: what the steps did, the
        # report and the other plugins' work. It becomes a warning instead.
        try:
            getattr(self.hook, name)(**kwargs)
        except Exception as exc:
            self.run.warnings.append(f"{name} failed: {type(exc).__name__}: {exc}")

    def _sequential(self) -> None:
        while self.ready and self.run.stop_reason is None:
            _, name = heapq.heappop(self.ready)
            step = self.run.recipe.step(name)
            self.current = name
            result = self._execute(step)
            self.current = None
            self._finish(step, result)

    def _parallel(self) -> None:
        # A worker keeps what became of its step in self.outcomes, then wakes the
        # main thread on `ended`. An outcome stays there until the main thread has
        # recorded it, so an interrupt landing anywhere in between loses none.
        ended: SimpleQueue[str] = SimpleQueue()
        running: dict[str, Step] = {}
        pool = ThreadPoolExecutor(self.run.workers, thread_name_prefix=STEP_THREAD_PREFIX)
        try:
            while self.ready or running:
                while self.ready and len(running) < self.run.workers:
                    if self.run.stop_reason is not None:
                        self.ready.clear()
                        break
                    _, name = heapq.heappop(self.ready)
                    running[name] = step = self.run.recipe.step(name)
                    pool.submit(self._execute_into, step, ended)
                if not running:
                    break
                ended.get()
                self._finish_ended(running)
        except KeyboardInterrupt:
            self._interrupted(pool, ended, running)
            raise
        except BaseException:
            pool.shutdown()  # the steps running end before the error goes on
            raise
        pool.shutdown()

    def _interrupted(
        self, pool: ThreadPoolExecutor, ended: SimpleQueue[str], running: dict[str, Step]
    ) -> None:
        # Python cannot stop a thread: the steps running end, and what they did is
        # recorded, unless a second interrupt abandons them. They are waited for
        # here, not through the pool: an interrupt that lands while the pool
        # starts a thread leaves that thread (and its step) unknown to it.
        try:
            with self.start_lock:
                self.stopping = True  # first: no worker begins a step after this
                begun = self.started.intersection(running)
            for name in set(running) - begun:
                del running[name]  # handed over but not begun: it never will be
            self.run.request_stop("interrupted")
            self._finish_ended(running)  # so that on_interrupt hears only of those running
            if self.on_interrupt is not None:
                self.on_interrupt(list(running))
            while running:
                ended.get()
                self._finish_ended(running)
            pool.shutdown()
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            self._drop_recorded(running)
            if not running:
                raise  # nothing left to abandon: a plain interrupt
            raise StepsAbandoned(list(running)) from None
        except BaseException:
            # An observer failed (a closed stdout, say): the running steps
            # still end before the error goes on, unrecorded.
            self._await(running, ended)
            pool.shutdown(wait=False)
            raise

    def _await(self, running: dict[str, Step], ended: SimpleQueue[str]) -> None:
        try:
            while any(name not in self.outcomes for name in running):
                ended.get()
        except KeyboardInterrupt:
            pass  # a second interrupt: stop waiting

    def _drop_recorded(self, running: dict[str, Step]) -> None:
        # Steps whose end an interrupt caught half recorded (in results, not
        # yet dropped from running): they ended, so nobody waits for them.
        for name in [name for name in running if name in self.results]:
            del running[name]
            self.outcomes.pop(name, None)

    def _execute_into(self, step: Step, ended: SimpleQueue[str]) -> None:
        with self.start_lock:
            if self.stopping:
                return  # not begun, and never waited for
            self.started.add(step.name)
        outcome: StepResult | BaseException
        try:
            outcome = self._execute(step)
        except BaseException as exc:  # a KeyboardInterrupt raised by a step's code
            outcome = exc
        self.outcomes[step.name] = outcome
        ended.put(step.name)

    def _finish_ended(self, running: dict[str, Step]) -> None:
        # Records every running step that has ended. Each is dropped from
        # `running` and `outcomes` only once recorded: if an interrupt cuts this
        # short, the next call takes up the rest (a step's _finish only once).
        for name in [name for name in running if name in self.outcomes]:
            outcome = self.outcomes[name]
            if isinstance(outcome, BaseException):
                del running[name], self.outcomes[name]
                if self.stopping:
                    continue  # already interrupted: a step's own Ctrl-C adds nothing
                raise outcome
            if name not in self.results:
                self._finish(running[name], outcome)
            del running[name], self.outcomes[name]

    def _execute(self, step: Step) -> StepResult:
        run = self.run
        if step.name in run.resumed:
            return StepResult(
                name=step.name, status="succeeded", detail="done in the run being resumed"
            )
        self._observe("framework0_step_start", run=run, step=step)
        invocation = Invocation(step, run, run.context.writer(step.name))
        start = time.time()
        clock = time.perf_counter()
        try:
            # Dropped as it runs: a step runs once, and a recipe of thousands of
            # steps need not keep every chain until the end.
            self.chains.pop(step.name)(invocation)
        except (Exception, SystemExit) as exc:
            duration = time.perf_counter() - clock
            if not invocation.notes.get("errors_reported"):
                self._observe(
                    "framework0_step_error", run=run, step=step, error=exc, attempt=1, record=None
                )
            return StepResult(
                name=step.name,
                status="failed",
                start=start,
                end=start + duration,
                duration=duration,
                error=_describe(exc),
                error_type=_qualified(type(exc)),
                detail=invocation.notes.pop("detail", None),
                notes=invocation.notes,
                exception=exc,
            )
        duration = time.perf_counter() - clock
        return StepResult(
            name=step.name,
            status="succeeded",
            start=start,
            end=start + duration,
            duration=duration,
            detail=invocation.notes.pop("detail", None),
            notes=invocation.notes,
        )

    def _finish(self, step: Step, result: StepResult) -> None:
        self.results[step.name] = result
        self._observe("framework0_step_end", run=self.run, step=step, result=result)
        if self.on_step_end is not None:
            self.on_step_end(result)
        if result.status == "succeeded":
            for name in self.dependents[step.name]:
                self.waiting[name] -= 1
                if self.waiting[name] == 0 and name not in self.results:
                    heapq.heappush(self.ready, (self.order[name], name))
            return
        if result.status == "failed":
            assert result.exception is not None
            policy = self.hook.framework0_failure_policy(
                run=self.run, step=step, error=result.exception
            )
            if policy == "stop":
                self.run.request_stop(f"step '{step.name}' failed")
        for name in self.dependents[step.name]:
            if name not in self.results:
                dependent = self.run.recipe.step(name)
                why = "failed" if result.status == "failed" else "was skipped"
                self._finish(
                    dependent, self._skipped(dependent, f"depends on '{step.name}', which {why}")
                )

    def _skipped(self, step: Step, reason: str) -> StepResult:
        return StepResult(name=step.name, status="skipped", reason=reason)

    def _not_run_reason(self) -> str:
        if self.run.stop_reason is not None:
            return f"not run: the recipe stopped because {self.run.stop_reason}"
        return "not run"  # pragma: no cover - every step is reachable in a valid recipe

    def _interrupted_report(
        self, exc: KeyboardInterrupt, started: float, duration: float
    ) -> dict[str, Any]:
        # Every step that did not end counts as skipped, and says why.
        abandoned = set(exc.steps) if isinstance(exc, StepsAbandoned) else set()
        results: dict[str, StepResult] = {}
        for step in self.run.recipe.steps:
            result = self.results.get(step.name)
            if result is None:
                if step.name in abandoned:
                    why = "abandoned while running: a second interrupt stopped waiting for it"
                elif step.name == self.current:
                    why = "stopped while running by the interrupt"
                else:
                    why = "not run: the run was interrupted"
                result = self._skipped(step, why)
            results[step.name] = result
        return self._report(results, started, duration, status="interrupted")

    def _report(
        self,
        results: dict[str, StepResult],
        started: float,
        duration: float,
        *,
        status: str | None = None,
    ) -> dict[str, Any]:
        run = self.run
        counts = dict.fromkeys(("succeeded", "failed", "skipped"), 0)
        for result in results.values():
            counts[result.status] += 1
        if status is None:
            status = "succeeded" if counts["failed"] == counts["skipped"] == 0 else "failed"
        return {
            "run_id": run.run_id,
            "recipe": run.recipe.name,
            "path": run.recipe.path,
            "status": status,
            "started": _iso(started),
            "ended": _iso(started + duration),
            "duration": round(duration, 6),
            "workers": run.workers,
            "counts": counts,
            "steps": [r.to_dict() for r in results.values()],
            "discarded_writes": [d.to_dict() for d in run.context.discarded()],
            "warnings": run.warnings,
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StepReturnedNonZero | MissingContextKeys):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _qualified(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
