"""The per-step chain: fallback → retry → circuit_breaker → bulkhead → timeout → attempt.

Built once per step per run from the step's effective ``error_handling``
block. Every failed attempt is recorded in ``errors.<step>``; the outcome
goes to ``recovery.<step>`` and to the step's line ("recovered after 3
attempts", "fallback", "short-circuited (breaker payments open)").
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any

from .attempt import Abandon, Attempt, Tally, report_first
from .config import (
    FallbackConfig,
    ScriptletRef,
    StepErrorHandling,
    plain_copy,
    resolve_reference,
)
from .detect import DetectedLogError
from .journal import RECOVERY_PREFIX, SUCCEEDED, WHO
from .orchestrator import (
    Invocation,
    MissingContextKeys,
    Next,
    Step,
    StepReturnedNonZero,
    resolve_callable,
)
from .pipeline import FallbackFailedError, Pipeline, slot_lease, tell_breaker
from .policies import (
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    StepTimeoutError,
    next_holder_id,
)
from .runtime import RunState
from .stores.base import BreakerCell, LocalBulkhead

__all__ = ["FallbackFailedError", "StepChain", "bare_step", "chain_key"]


def bare_step(state: RunState, step: Step) -> Callable[[Invocation, Next], None]:
    """Return the middleware of a step without error handling: detect and record only."""
    journal = state.journal
    watch = state.log_watch

    def middleware(invocation: Invocation, call_next: Next) -> None:
        found = watch.start()
        try:
            call_next(invocation)
        except Exception as exc:
            journal.record(invocation, step.name, exc, attempt=1, redactor=state.redactor_for(step))
            state.notify("failed", step=step.name, attempts=1)
            raise
        finally:
            watch.stop(found)
            if found:
                journal.record_detected(
                    step.name, found, attempt=1, redactor=state.redactor_for(step)
                )

    return middleware


def chain_key(step: Step, block: StepErrorHandling) -> Hashable:
    """What a step's chain is built from: steps with equal keys can share one :class:`StepChain`.

    The block object itself (the run keeps it), and what else of the step the
    chain keeps: its name if a timed-out attempt's message names it, its
    function if the fallback names a module alone (``pkg.mod``, or
    ``{module}`` without ``function``: the step's own function in it). A
    breaker or bulkhead without a name is the step's own: the chain keeps one
    for each step it serves (:meth:`StepChain.pipeline_for`).
    """
    fallback = block.fallback
    scriptlet = None if fallback is None else fallback.scriptlet
    return (
        id(block),
        None if block.timeout is None else step.name,
        step.function if scriptlet is not None and _names_no_function(scriptlet) else None,
    )


def _names_no_function(scriptlet: str | ScriptletRef) -> bool:
    # `pkg.mod`, or {module} alone: the step's own function in that module.
    return ":" not in scriptlet if isinstance(scriptlet, str) else not scriptlet.function


class StepChain:
    """The pipeline of the steps that share a block, as host middleware.

    Adds what a recipe step needs around :class:`~framework0_errors.pipeline.Pipeline`:
    a fenced Context view per timed attempt, error records, log detection,
    ``recovery.<step>`` and the step line's detail. The step comes with each
    invocation: one chain serves every step whose :func:`chain_key` equals
    that of the ``step`` it was built for, so that a thousand steps sharing
    a block build it once.
    """

    def __init__(self, step: Step, block: StepErrorHandling, state: RunState) -> None:
        self.state = state
        self.block = block
        self.fallback = fallback = block.fallback
        self.fallback_call = (
            None if fallback is None or fallback.scriptlet is None else _scriptlet(fallback, step)
        )
        self.notify_channels = tuple(block.notify) if block.notify else ()
        self._monotonic = state.timing.monotonic
        # The Context's own method: a writer closure would cost a frame on
        # every call, and four objects a step for the collector.
        self._set_owned = state.set_owned
        self._successes = state.successes
        # The key of the step it was built for, made once: often its only step.
        self._step, self._key = step, RECOVERY_PREFIX + step.name
        # The function, not a bound method: one kept on self would tie the chain
        # in a reference cycle, so that only the garbage collector could free it.
        self._run_attempt = (
            StepChain._attempt if block.timeout is None else StepChain._fenced_attempt
        )
        self._watched = state.watched_call
        breaker, bulkhead = block.circuit_breaker, block.bulkhead
        # A breaker or bulkhead without a name is the step's own: each step the
        # chain serves then has its own pipeline, made when first needed.
        self._per_step = (breaker is not None and not breaker.name) or (
            bulkhead is not None and not bulkhead.name
        )
        # Made when a step first needs more than the success path: a chain whose
        # steps all succeed at once builds none (see __call__).
        self._pipelines: dict[str | None, Pipeline[None]] = {}
        self.adopt(step)
        # The live state the success path reads, when the store keeps it in this
        # process and the block has a breaker and a bulkhead but no timeout
        # (a timed attempt runs elsewhere): one lane for the chain, or one a
        # step when the names are the steps' own. See __call__.
        self._lanes: dict[str | None, tuple[BreakerCell, LocalBulkhead]] = {}
        self._inline = False
        cell_of = getattr(state.store, "breaker_cell", None)
        slots_of = getattr(state.store, "local_bulkhead", None)
        if None not in (breaker, bulkhead, cell_of, slots_of) and block.timeout is None:
            assert breaker is not None
            assert bulkhead is not None
            self._inline = True
            self._cell_of: Callable[[str], BreakerCell] = cell_of  # type: ignore[assignment]
            self._slots_of: Callable[..., LocalBulkhead] = slots_of  # type: ignore[assignment]
            self._limit, self._lease = bulkhead.max_concurrent, slot_lease(block)
            self._wall = state.timing.wall
            # A breaker and a bulkhead both the step's own, in a store this run alone
            # uses (a memory: store is opened by each run for itself): until the
            # store has state for them, no other step can have touched them.
            self._never_used: Callable[[str, str], bool] | None = (
                getattr(state.store, "never_used", None)
                if not breaker.name and not bulkhead.name
                else None
            )
            self._names_given = state.names_given() if self._never_used else frozenset()
            # Steps whose first attempt runs alone now, by name, with the holder
            # id of the slot it stands for.
            self._alone: dict[str, Hashable] = {}
            self._lane_lock = threading.Lock()
        else:
            # Every call needs it: made now, so that a setting the policies refuse
            # stops the run here, not as a failure of the step.
            self.pipeline_for(step)

    def adopt(self, step: Step) -> None:
        """Take ``step`` on as one the chain serves: its breaker counts as one the run uses.

        For steps whose :func:`chain_key` equals that of the step the chain was
        built for; the host gets the chain once per step. Only a breaker left
        to the step to name needs it (see :attr:`adopts`).
        """
        breaker = self.block.circuit_breaker
        if breaker is not None:
            self.state.breakers.add(breaker.name or step.name)

    @property
    def adopts(self) -> bool:
        """Whether :meth:`adopt` does anything for a later step: the breaker is unnamed."""
        breaker = self.block.circuit_breaker
        return breaker is not None and not breaker.name

    def _new_pipeline(self, name: str) -> Pipeline[None]:
        state = self.state
        return Pipeline(
            self.block,
            name=name,
            breaker_store=state.store,
            bulkhead_store=state.store,
            timing=state.timing,
            classify=state.classify,
            on_breaker_change=state.on_breaker_change,
            shared=state.policies,
        )

    @property
    def pipeline(self) -> Pipeline[None]:
        """The pipeline of the step the chain was built for (see :meth:`pipeline_for`)."""
        return self.pipeline_for(self._step)

    def pipeline_for(self, step: Step) -> Pipeline[None]:
        """Return the pipeline ``step`` runs through, made on first use.

        One for the chain, or one a step when the block leaves the breaker's
        or the bulkhead's name to the step.
        """
        key = step.name if self._per_step else None
        pipeline = self._pipelines.get(key)
        if pipeline is None:
            # Two steps may race to make the chain's: both then use the first kept.
            pipeline = self._pipelines.setdefault(key, self._new_pipeline(step.name))
        return pipeline

    def _lane(self, step: Step) -> tuple[BreakerCell, LocalBulkhead]:
        # The breaker's cell and the bulkhead's slots, as the step's pipeline would
        # find them in the store: made on first use, like theirs.
        breaker, bulkhead = self.block.circuit_breaker, self.block.bulkhead
        assert breaker is not None
        assert bulkhead is not None
        key = step.name if self._per_step else None
        with self._lane_lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = (
                    self._cell_of(breaker.name or step.name),
                    self._slots_of(bulkhead.name or step.name, limit=self._limit),
                )
                # An attempt of this step running alone (see _lane_unless_alone)
                # holds the slot it would have taken: nobody may have it now.
                holder = self._alone.get(step.name)
                if holder is not None:
                    lane[1].take(
                        holder, limit=self._limit, lease_seconds=self._lease, now=self._wall()
                    )
        return lane

    def _lane_unless_alone(
        self, invocation: Invocation, call_next: Next
    ) -> tuple[BreakerCell, LocalBulkhead] | None:
        # The step's first attempt, made here with neither its breaker's cell nor
        # its bulkhead's slots when both are its own and never used: a breaker
        # closed without failures admits the call, and a bulkhead nobody else
        # takes slots of has one free (its limit is at least 1). Their state is
        # made only if someone needs it: this attempt failing, to count the
        # failure, or another invocation of the step (a middleware may call the
        # chain again, even at once), which then finds this attempt's slot taken
        # (_lane). None: the attempt was made.
        step = invocation.step
        never_used = self._never_used
        if never_used is None or step.name in self._names_given:
            return self._lane(step)
        holder = next_holder_id()
        if self._alone.setdefault(step.name, holder) is not holder:
            return self._lane(step)  # another call of the step runs alone now
        try:
            if never_used(step.name, step.name):
                self._run_alone(invocation, call_next)
                return None
        finally:
            self._leave_alone(step, holder)
        return self._lane(step)

    def _run_alone(self, invocation: Invocation, call_next: Next) -> None:
        step = invocation.step
        found: list[DetectedLogError] = []
        try:
            try:
                self._watched(call_next, invocation, found)
            finally:
                if found:
                    self._record_detected(invocation, found, 1)
        except BaseException as exc:
            # Admitted while closed, the call was no trial: what the store does with
            # its verdict is the same whichever closed admission it carries.
            tell_breaker(_breaker(self.pipeline_for(step)), exc, self._lane(step)[0].admission)
            raise
        lane = self._lanes.get(step.name)
        if lane is not None and (lane[0].failures or lane[0].state != "closed"):
            # Another invocation made the state meanwhile, and failed: a success
            # clears the failures, as on any lane.
            _breaker(self.pipeline_for(step)).on_success(lane[0].admission)

    def _leave_alone(self, step: Step, holder: Hashable) -> None:
        del self._alone[step.name]
        if self._lanes.get(step.name) is not None:
            # _lane may have taken a slot for this attempt: give it back, once
            # _lane is done taking it.
            with self._lane_lock:
                self._lanes[step.name][1].give(holder)

    def __call__(self, invocation: Invocation, call_next: Next) -> None:
        started = self._monotonic()
        step = invocation.step
        # The first attempt is made here, so that the success path, nearly every
        # call, builds nothing it does not use.
        try:
            lane = (
                (
                    self._lanes.get(step.name if self._per_step else None)
                    or self._lane_unless_alone(invocation, call_next)
                )
                if self._inline
                else _NO_LANE
            )
            if lane is not None and lane[0].state == "closed":  # None: made alone
                cell, slots = lane
                # The step's pipeline.guarded with _attempt in it, in one frame, on
                # the lane's cell and slots: what a closed breaker and a free slot
                # do (see CircuitBreaker.cell). A full bulkhead, a failure, or a
                # breaker with failures to clear goes to the step's pipeline.
                admission, holder = cell.admission, next_holder_id()
                if not slots.take(
                    holder, limit=self._limit, lease_seconds=self._lease, now=self._wall()
                ):
                    self.pipeline_for(step).guarded(self._attempt_of(invocation, call_next), 1)
                else:
                    found: list[DetectedLogError] = []
                    try:
                        try:
                            self._watched(call_next, invocation, found)
                        finally:
                            slots.give(holder)
                            if found:
                                self._record_detected(invocation, found, 1)
                    except BaseException as exc:
                        tell_breaker(_breaker(self.pipeline_for(step)), exc, admission)
                        raise
                    if cell.failures or cell.state != "closed":
                        _breaker(self.pipeline_for(step)).on_success(admission)
            elif lane is not None:
                self.pipeline_for(step).guarded(self._attempt_of(invocation, call_next), 1)
        except Exception as exc:
            tally = Tally(1)
            on_error = self._error_recorder(invocation)
            try:
                first = report_first(exc, on_error)
            except BaseException as stopped:
                self._finish(invocation, Tally(1, stopped), started)
                raise
        except BaseException as stopped:
            self._finish(invocation, Tally(1, stopped), started)
            raise
        else:
            # What _finish does for a first attempt that succeeded, in short.
            record = _SUCCEEDED.copy()
            # as _micros() rounds it, inline
            record["duration"] = int((self._monotonic() - started) * 1e6 + 0.5) / 1e6
            notes = invocation.notes
            notes["outcome"] = "succeeded"
            notes["attempts"] = 1
            key = self._key if step is self._step else RECOVERY_PREFIX + step.name
            self._set_owned(key, record, WHO)
            self._successes[key] = record  # saved from a template, not encoded
            return
        # Outside the except block, so later errors are not chained to the first.
        attempt = self._attempt_of(invocation, call_next)
        self._recover(invocation, attempt, first, started=started, tally=tally, on_error=on_error)

    def _attempt_of(self, invocation: Invocation, call_next: Next) -> Attempt[None]:
        return functools.partial(self._run_attempt, self, invocation, call_next)

    def _error_recorder(self, invocation: Invocation) -> Callable[[BaseException, int], None]:
        journal, step = self.state.journal, invocation.step
        redactor = self.state.redactor_for(step)

        def on_error(exc: BaseException, number: int) -> None:
            journal.record(invocation, step.name, exc, attempt=number, redactor=redactor)

        return on_error

    def _recover(
        self,
        invocation: Invocation,
        attempt: Attempt[None],
        first: Exception,
        *,
        started: float,
        tally: Tally,
        on_error: Callable[[BaseException, int], None],
    ) -> None:
        journal, step = self.state.journal, invocation.step

        def fallback(exc: BaseException) -> None:
            try:
                self._run_fallback(invocation)
            except Exception as failed:
                # The fallback's own error belongs in the record too.
                journal.record(
                    invocation,
                    step.name,
                    failed,
                    attempt=tally.attempts,
                    redactor=self.state.redactor_for(step),
                )
                raise

        try:
            self.pipeline_for(step).recover(
                first,
                attempt,
                started=started,
                fallback=fallback if self.fallback is not None else None,
                on_error=on_error,
                tally=tally,
                name=step.name,
            )
        finally:
            self._finish(invocation, tally, started)

    def _attempt(
        self, invocation: Invocation, call_next: Next, number: int, abandon: Abandon
    ) -> None:
        # Watched in the thread that runs the step's code: captures are per thread.
        found: list[DetectedLogError] = []
        try:
            self._watched(call_next, invocation, found)
        finally:
            if found:
                self._record_detected(invocation, found, number)

    def _record_detected(
        self, invocation: Invocation, found: list[DetectedLogError], number: int
    ) -> None:
        step = invocation.step
        self.state.journal.record_detected(
            step.name, found, attempt=number, redactor=self.state.redactor_for(step)
        )

    def _fenced_attempt(
        self, invocation: Invocation, call_next: Next, number: int, abandon: Abandon
    ) -> None:
        # An attempt that may be abandoned writes through its own fenceable view.
        view = invocation.context.child()
        abandon.add(view.fence)
        self._attempt(invocation.with_context(view), call_next, number, abandon)

    def _run_fallback(self, invocation: Invocation) -> None:
        assert self.fallback is not None
        context, step = invocation.context, invocation.step
        if self.fallback_call is None:
            for key, value in (self.fallback.value or {}).items():
                context.set(key, value)
        else:
            # A copy of its own: steps with equal blocks share the block's args.
            code = self.fallback_call(context, plain_copy(self.fallback.args))
            if code is not None and (type(code) is not int or code != 0):
                raise StepReturnedNonZero(f"{step.name} (fallback)", code)
        missing = [k for k in step.ctx_has_keys if context.get(k, _ABSENT) is _ABSENT]
        if missing:
            raise MissingContextKeys(f"{step.name} (fallback)", missing)

    def _finish(self, invocation: Invocation, tally: Tally, started: float) -> None:
        duration = self._monotonic() - started
        name = invocation.step.name
        outcome = tally.outcome or "failed"
        attempts = tally.attempts
        error = tally.error
        notes = invocation.notes
        notes["outcome"] = outcome
        notes["attempts"] = attempts
        self._set_owned(
            RECOVERY_PREFIX + name,
            {
                "attempts": attempts,
                "outcome": outcome,
                "strategy": _STRATEGY.get(outcome),
                "duration": _micros(duration),
                "error_type": None if error is None else type(error).__name__,
            },
            WHO,
        )
        detail = _detail(outcome, attempts, error, self.fallback)
        if detail:
            notes["detail"] = detail
        if outcome == "failed":
            self.state.notify(
                "failed",
                step=name,
                attempts=attempts,
                extra_channels=self.notify_channels,
            )
        else:
            self.state.notify("recovered", step=name, attempts=attempts)


def _breaker(pipeline: Pipeline[None]) -> CircuitBreaker:
    breaker = pipeline.breaker
    assert breaker is not None
    return breaker


def _micros(seconds: float) -> float:
    # Rounded to the microsecond like round(seconds, 6), at a fraction of its cost.
    return int(seconds * 1e6 + 0.5) / 1e6


_SUCCEEDED = dict(SUCCEEDED)  # a dict's copy() is cheaper than a mapping proxy's

_STRATEGY = {"succeeded": "none", "recovered": "retry", "fallback": "fallback"}


_ABSENT: Any = object()


class _NoCell:
    state = "none"  # never "closed": the first attempt goes through the pipeline


# The lane of a chain that has none (a timeout, or no breaker or no bulkhead).
_NO_LANE: Any = (_NoCell(),)


def _scriptlet(fallback: FallbackConfig, step: Step) -> Callable[[Any, Any], Any]:
    assert fallback.scriptlet is not None
    module, function = resolve_reference(fallback.scriptlet, step.function)
    return resolve_callable(module, function)


def _detail(
    outcome: str, attempts: int, error: BaseException | None, fallback: FallbackConfig | None
) -> str | None:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if outcome == "recovered":
        return f"recovered after {tries}"
    if error is None:
        return None
    special = _special_reason(error)
    if outcome == "fallback":
        label = _fallback_label(fallback)
        return f"fallback {label}: {special}" if special else f"fallback {label} after {tries}"
    if attempts <= 1:
        return special
    return f"failed after {tries}" + (f"; last: {special}" if special else "")


def _special_reason(error: BaseException) -> str | None:
    if isinstance(error, CircuitOpenError):
        return f"short-circuited (breaker {error.breaker} open)"
    if isinstance(error, BulkheadFullError):
        return f"rejected (bulkhead {error.name} full)"
    if isinstance(error, StepTimeoutError):
        return f"timed out after {error.seconds:g}s"
    return None


def _fallback_label(fallback: FallbackConfig | None) -> str:
    if fallback is None or fallback.scriptlet is None:
        return "(value)"
    ref = fallback.scriptlet
    return ref if isinstance(ref, str) else f"{ref.module}:{ref.function or ''}"
