"""Compensations: undo the steps that completed when a recipe is rolled back.

A step's ``rollback:`` (compensation code, in the same forms as
``fallback.scriptlet``, with ``args`` and an optional ``retry``) is
registered when the step succeeds. When a step whose ``on_failure`` is
``rollback`` fails for good, the run stops scheduling, lets running steps
finish, then runs every registered compensation, newest dependency first:

* a step's compensation starts only after the compensations of every step
  that (transitively) depended on it have ended;
* independent branches may be compensated at the same time (``workers``);
* a compensation that fails is recorded with its error and the others still
  run, including those of the steps it depended on (best effort: leaving
  more state behind because one undo failed helps nobody).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from .attempt import Abandon, Tally
from .classify import Classification, qualified_name
from .config import RollbackConfig, StepErrorHandling, plain_copy, resolve_reference
from .orchestrator import Context, Step, StepReturnedNonZero, resolve_callable
from .pipeline import Pipeline
from .redact import DEFAULT_SECRET_KEYS, Redactor
from .stores.memory import MemoryStore
from .testing import Timing

__all__ = [
    "CompensationResult",
    "Compensations",
    "RollbackReport",
    "apply_rollback_outcome",
    "rollback_order",
]

CompensationStatus = Literal["compensated", "failed"]


@dataclass(frozen=True, slots=True)
class CompensationResult:
    """How the compensation of one step went; times are epoch seconds (``timing.wall``)."""

    step: str
    status: CompensationStatus
    start: float
    end: float
    attempts: int
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready entry of the run report."""
        return {
            "step": self.step,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "duration": round(self.end - self.start, 6),
            "attempts": self.attempts,
            "error": self.error,
            "error_type": self.error_type,
        }


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """Every compensation that ran, in the order they started; ``ok`` if none failed."""

    steps: tuple[CompensationResult, ...] = ()
    started: float | None = None
    ended: float | None = None

    @property
    def ok(self) -> bool:
        """Whether every compensation succeeded (also True when there was none)."""
        return all(s.status == "compensated" for s in self.steps)

    @property
    def outcome(self) -> str:
        """``rolled_back``, or ``rollback_failed`` when a compensation failed."""
        return "rolled_back" if self.ok else "rollback_failed"

    def to_dict(self) -> dict[str, Any]:
        """Return the ``rollback`` section of the run report."""
        return {
            "ok": self.ok,
            "outcome": self.outcome,
            "started": self.started,
            "ended": self.ended,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    step: Step
    config: RollbackConfig
    rank: int


@dataclass(frozen=True, slots=True)
class _Env:
    """What every compensation of one rollback shares."""

    context: Context
    timing: Timing
    classify: Callable[[BaseException], Classification]
    on_error: Callable[[str, BaseException, int], None] | None
    # A rollback block has a retry only: this store never holds a breaker or a bulkhead.
    store: MemoryStore = field(default_factory=MemoryStore)


@dataclass(slots=True)
class _Schedule:
    """Which compensations wait for which, and which are ready (newest first)."""

    waiting: dict[str, set[str]]
    rank: dict[str, int]
    ready: list[str] = field(default_factory=list)

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            del self.waiting[name]
            self.ready.append(name)
        self.ready.sort(key=lambda n: -self.rank[n])

    def done(self, name: str) -> None:
        freed = []
        for other, blockers in self.waiting.items():
            blockers.discard(name)
            if not blockers:
                freed.append(other)
        self.release(freed)


class Compensations:
    """The compensations registered during one run; safe to use from several threads.

    Args:
        key_patterns: Key patterns whose values are secrets; such values found
            in a step's or its rollback's ``args`` are masked in error texts.
    """

    def __init__(self, *, key_patterns: Sequence[str] = DEFAULT_SECRET_KEYS) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._count = 0
        self._key_patterns = tuple(key_patterns)

    def register(self, step: Step, config: RollbackConfig) -> None:
        """Remember that ``step`` completed and how to undo it (call when it succeeded)."""
        with self._lock:
            self._count += 1
            self._entries.pop(step.name, None)
            self._entries[step.name] = _Entry(step, config, self._count)

    def has_any(self) -> bool:
        """Whether any compensation is registered (and not yet run)."""
        with self._lock:
            return bool(self._entries)

    def run(
        self,
        *,
        context: Context,
        workers: int,
        timing: Timing,
        classify: Callable[[BaseException], Classification],
        dependents: Mapping[str, Sequence[str]],
        on_error: Callable[[str, BaseException, int], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        on_result: Callable[[CompensationResult], None] | None = None,
    ) -> RollbackReport:
        """Run every registered compensation in reverse dependency order and forget them.

        Args:
            context: The run's Context; each compensation writes as ``"<step> (rollback)"``.
            workers: Compensations that may run at once (independent branches only).
            timing: Clocks and sleep for retries; ``wall`` stamps the report.
            classify: The run's classifier (for ``retry.retry_on`` and transience).
            dependents: Each step's direct dependents (``Recipe.dependents()``).
            on_error: Told ``(step, error, attempt)`` for every failed attempt.
            on_start: Told the name of each step whose compensation is about to
                start, in this thread.
            on_result: Told each compensation's result as it ends, in this thread;
                if the rollback is interrupted (Ctrl-C), also of those that ended
                while it waited for the running ones, before the interrupt goes on.

        Raises:
            ValueError: when ``workers`` is less than 1.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        with self._lock:
            entries = dict(self._entries)
            self._entries.clear()
        if not entries:
            return RollbackReport()
        order = rollback_order(entries, dependents)
        schedule = _Schedule(
            waiting={name: set(blockers) for name, blockers in order.items()},
            rank={name: entry.rank for name, entry in entries.items()},
        )
        schedule.release([n for n, blockers in order.items() if not blockers])
        started = timing.wall()
        results: list[CompensationResult] = []
        env = _Env(context, timing, classify, on_error)

        def compensate(name: str) -> CompensationResult:
            return self._compensate(entries[name], env)

        running: dict[Future[CompensationResult], str] = {}
        submitted: dict[str, int] = {}

        told: set[str] = set()

        def ended(result: CompensationResult) -> None:
            if result.step in told:  # an interrupt came before its future was dropped
                return
            told.add(result.step)
            results.append(result)
            if on_result is not None:
                on_result(result)

        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="framework0-rollback") as pool:
                while schedule.ready or running or schedule.waiting:
                    if not schedule.ready and not running:
                        # Only a cycle in `dependents` (never in a valid recipe) gets here:
                        # undo what is left, newest first, rather than stall or drop it.
                        schedule.release(list(schedule.waiting))
                    while schedule.ready and len(running) < workers:
                        name = schedule.ready.pop(0)
                        submitted[name] = len(submitted)
                        if on_start is not None:
                            on_start(name)
                        running[pool.submit(compensate, name)] = name
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: running[f]):
                        # Told before it is dropped: an interrupt in between finds it.
                        ended(future.result())
                        schedule.done(running.pop(future))
        except BaseException:
            # Interrupted: leaving the pool waited for the running compensations.
            # Those that ended undid their step, and the caller must hear of it.
            for future in running:
                if future.done() and not future.cancelled() and future.exception() is None:
                    ended(future.result())
            raise
        results.sort(key=lambda r: submitted[r.step])
        return RollbackReport(tuple(results), started, timing.wall())

    def _compensate(self, entry: _Entry, env: _Env) -> CompensationResult:
        name, config, timing = entry.step.name, entry.config, env.timing
        who = f"{name} (rollback)"
        tally = Tally()
        start = timing.wall()
        try:
            module, function = resolve_reference(config.scriptlet, entry.step.function)
            code = resolve_callable(module, function)
            pipeline: Pipeline[None] = Pipeline(
                StepErrorHandling(retry=config.retry),
                name=who,
                breaker_store=env.store,
                bulkhead_store=env.store,
                timing=timing,
                classify=env.classify,
            )

            def attempt(number: int, abandon: Abandon) -> None:
                # A copy of its own: steps with equal blocks share the block's args.
                returned = code(env.context.writer(who), plain_copy(config.args))
                if returned is not None and (type(returned) is not int or returned != 0):
                    raise StepReturnedNonZero(who, returned)

            def failed(exc: BaseException, number: int) -> None:
                if env.on_error is not None:
                    env.on_error(name, exc, number)

            pipeline.run(attempt, on_error=failed, tally=tally)
        except (Exception, SystemExit) as exc:
            redactor = Redactor.for_args(
                [dict(entry.step.args), dict(config.args)], key_patterns=self._key_patterns
            )
            return CompensationResult(
                name,
                "failed",
                start,
                timing.wall(),
                attempts=tally.attempts,
                error=redactor.redact_text(_describe(exc)),
                error_type=qualified_name(type(exc)),
            )
        return CompensationResult(name, "compensated", start, timing.wall(), tally.attempts)


def rollback_order(
    registered: Iterable[str], dependents: Mapping[str, Sequence[str]]
) -> dict[str, frozenset[str]]:
    """Map each registered step to the registered steps whose compensation must end first.

    Those are the steps that depend on it, directly or through steps that have
    no compensation of their own.
    """
    names = set(registered)
    out: dict[str, frozenset[str]] = {}
    for name in names:
        seen: set[str] = set()
        stack = list(dependents.get(name, ()))
        while stack:
            other = stack.pop()
            if other not in seen:
                seen.add(other)
                stack.extend(dependents.get(other, ()))
        out[name] = frozenset((seen - {name}) & names)
    return out


def apply_rollback_outcome(
    context: Context,
    *,
    failed_steps: Sequence[str],
    rollback: RollbackReport,
    report: MutableMapping[str, Any],
    who: str,
) -> str:
    """Record a finished rollback: ``recovery.<step>``, the report's steps and its section.

    Each step in ``failed_steps`` (those whose final failure asked for the
    rollback) gets ``outcome`` ``rolled_back`` (or ``rollback_failed``) and
    ``strategy`` ``rollback`` in ``recovery.<step>``, keeping what the chain
    wrote there (``attempts`` and ``duration`` are null if it wrote
    nothing), and the same ``outcome`` on its entry of ``report["steps"]``.
    ``report["rollback"]`` becomes the rollback's section, naming the failed
    steps as ``trigger``. Returns the outcome.
    """
    outcome = rollback.outcome
    for name in failed_steps:
        key = f"recovery.{name}"
        current = context.get(key)
        state: dict[str, Any] = dict(current) if isinstance(current, Mapping) else {}
        for missing in ("attempts", "duration"):
            state.setdefault(missing, None)
        state.update(outcome=outcome, strategy="rollback")
        context.set(key, state, who=who)
    for entry in report.get("steps", ()):
        if isinstance(entry, MutableMapping) and entry.get("name") in failed_steps:
            entry["outcome"] = outcome
    report["rollback"] = {"trigger": list(failed_steps), **rollback.to_dict()}
    return outcome


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StepReturnedNonZero):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
