"""Everything the error-handling chains of one run share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .classify import Classification, ClassificationRule, Classifier
from .config import RecipeErrorHandling, StepErrorHandling
from .detect import LogWatch
from .journal import ErrorJournal, succeeded_text
from .notify import NotificationEvent, Notifier
from .orchestrator import Run, Step, StepMiddleware
from .recovery import RecoveryRunResult
from .redact import DEFAULT_SECRET_KEYS, Redactor
from .rollback import Compensations
from .shared_policies import SharedPolicies
from .state import OpenedStore, open_state, recipe_identity
from .stores.select import JsonText, Store, StoreUnavailableError
from .testing import Timing, timing

__all__ = ["RunState", "start_run_state"]

PLUGIN = "error_handling"
"""Key of this plugin's state in ``Run.extras``."""


@dataclass(slots=True)
class RunState:
    """Per-run state: configuration, classifier, journal, store and clocks."""

    recipe_config: RecipeErrorHandling
    blocks: Mapping[str, StepErrorHandling | None]
    journal: ErrorJournal
    store: Store
    timing: Timing
    key_patterns: tuple[str, ...]
    log_watch: LogWatch
    notifier: Notifier | None = None
    state_url: str = ""
    warnings: list[str] = field(default_factory=list)
    recipe_path: str = ""
    recipe_hash: str = ""
    breakers: set[str] = field(default_factory=set)
    policies: SharedPolicies = field(default_factory=SharedPolicies)
    """The run's breaker and bulkhead objects, shared by the steps that name them alike."""
    chains: dict[Hashable, tuple[Callable[[Step], None] | None, list[StepMiddleware]]] = field(
        default_factory=dict
    )
    """The steps' middleware by ``chain_key``, with the chain's ``adopt`` if it adopts, while the
    runner builds them (dropped when the first step starts, or the run ends, so
    that each chain goes once its steps ran)."""
    unsaved: dict[str, str] = field(default_factory=dict)
    """Step outcomes not yet in a checkpoint."""
    successes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The ``recovery.<step>`` records of plain successes written since the last checkpoint,
    by key: the checkpoint saves them as :func:`~.journal.succeeded_text` makes them."""
    redactors: dict[str, Redactor] = field(default_factory=dict)
    store_failed: bool = False
    context_version: int = 0
    """The Context version up to which checkpoints hold every settled write."""
    running: set[str] = field(default_factory=set)
    """Steps started and not yet ended (their Context writes are not settled)."""
    running_lock: threading.Lock = field(default_factory=threading.Lock)
    compensations: Compensations = field(default_factory=Compensations)
    rollback_trigger: list[str] = field(default_factory=list)
    """Steps whose final failure asked for a rollback."""
    recoveries: dict[str, RecoveryRunResult] = field(default_factory=dict)
    delivery: dict[str, Any] | None = None
    """What flushing the notifications delivered, once it ran (or was cut short)."""
    closed: bool = False
    """Whether :meth:`close` has run (the end of the run released its state)."""
    _names_given: frozenset[str] | None = field(default=None, init=False, repr=False)
    # Bound once per run for the steps' chains: a method bound per step would be
    # one more object a step for the garbage collector to track.
    watched_call: Callable[..., None] = field(init=False, repr=False, compare=False)
    """``log_watch.call``."""
    classify: Callable[[BaseException], Classification] = field(
        init=False, repr=False, compare=False
    )
    """``journal.classify``."""
    set_owned: Callable[[str, Any, str | None], None] = field(init=False, repr=False, compare=False)
    """The run's ``Context.set_owned``."""
    on_breaker_change: Callable[[str, str, str], None] = field(
        init=False, repr=False, compare=False
    )
    """:meth:`breaker_changed`."""

    def __post_init__(self) -> None:
        self.watched_call = self.log_watch.call
        self.classify = self.journal.classify
        self.set_owned = self.journal.context.set_owned
        self.on_breaker_change = self.breaker_changed

    def redactor_for(self, step: Step) -> Redactor:
        """Return a redactor masking secret keys and the secrets in the step's args.

        The args of its fallback and rollback code count too: their errors
        end up in the same records and lines. Built once per step, on first use.
        """
        cached = self.redactors.get(step.name)
        if cached is None:
            block = self.blocks.get(step.name)
            args: dict[str, Any] = {"step": step.args}
            if block is not None and block.fallback is not None:
                args["fallback"] = block.fallback.args
            if block is not None and block.rollback is not None:
                args["rollback"] = block.rollback.args
            cached = Redactor.for_args(args, key_patterns=self.key_patterns)
            self.redactors[step.name] = cached
        return cached

    def names_given(self) -> frozenset[str]:
        """Return the breaker and bulkhead names that the steps' blocks give, made once.

        A breaker or bulkhead without a name is its step's own, unless another
        step gives that step's name to one of its own: see ``StepChain``.
        """
        names = self._names_given
        if names is None:
            names = self._names_given = frozenset(
                policy.name
                for block in self.blocks.values()
                if block is not None
                for policy in (block.circuit_breaker, block.bulkhead)
                if policy is not None and policy.name
            )
        return names

    def close(self) -> None:
        """Release what the run held: the log watch and the store; again, nothing."""
        # Dropped here too when no step started (all resumed, say): the run's
        # result keeps this state.
        self.chains.clear()
        if self.closed:
            return
        try:
            self.log_watch.close()
        finally:
            try:
                self.store.close()
            finally:
                self.closed = True

    def record_outcome(self, step: str, status: str) -> None:
        """Note a step's outcome for the next checkpoint."""
        self.unsaved[step] = status

    def checkpoint(self) -> None:
        """Commit the Context and the outcomes noted since the last checkpoint.

        The store merges them into what it holds, so a checkpoint costs what
        changed, not the whole run so far.
        """
        if self.store_failed:
            self.successes.clear()  # nothing will save them
            return
        run = self.journal.run
        # Writes of steps still running are left out: resuming re-runs those
        # steps, which must find the Context as it was before they started.
        # The lock is held throughout, so no step starts (and writes) unseen.
        # The store only encodes the values: no copies needed.
        with self.running_lock:
            version, changed = run.context.changes_since(
                self.context_version, exclude=self.running, copies=False
            )
        successes = self.successes
        if successes:
            # Only while the key still holds that very record: a record noted
            # after this reading is encoded as any value is.
            for key, record in list(successes.items()):
                if changed.get(key) is record:
                    changed[key] = JsonText(succeeded_text(record["duration"]))
            successes.clear()
        outcomes, self.unsaved = self.unsaved, {}
        try:
            self.store.save_checkpoint(
                run.run_id,
                recipe_path=self.recipe_path,
                recipe_hash=self.recipe_hash,
                context=changed,
                step_outcomes=outcomes,
            )
        except StoreUnavailableError as exc:
            self.store_lost(exc)
            return
        except BaseException:
            # Interrupted: the outcomes go in the next checkpoint, with the writes.
            self.unsaved = {**outcomes, **self.unsaved}
            raise
        self.context_version = version

    def store_lost(self, exc: Exception) -> None:
        """Note that the store stopped answering: the run goes on without state."""
        if not self.store_failed:
            self.store_failed = True
            self.warnings.append(
                f"state store stopped answering ({exc}); this run's checkpoints and error "
                "history after that point were not saved"
            )

    def breaker_changed(self, name: str, old: str, new: str) -> None:
        """Write a breaker's new state to the Context and tell the notifier it opened or closed.

        A policy's ``on_state_change``: the run's steps share their breakers,
        so this belongs to the run, not to the step whose chain built one.
        """
        self.journal.set_breaker(self.store.snapshot(name, now=self.timing.wall()))
        if new in ("open", "closed"):
            self.notify(
                f"breaker_{'opened' if new == 'open' else 'closed'}", step=None, breaker=name
            )

    def notify(
        self,
        outcome: str,
        *,
        step: str | None,
        attempts: int | None = None,
        extra_channels: tuple[str, ...] = (),
        breaker: str | None = None,
    ) -> None:
        """Hand one event to the notifier, if the recipe configured one (never blocks)."""
        if self.notifier is None:
            return
        journal = self.journal
        self.notifier.notify(
            NotificationEvent(
                recipe=journal.run.recipe.name,
                step=step,
                run_id=journal.run.run_id,
                outcome=outcome,
                record=journal.last.get(step) if step is not None else None,
                attempts=attempts,
                extra_channels=extra_channels,
                breaker=breaker,
            )
        )

    def flush_notifications(self) -> dict[str, Any] | None:
        """Deliver what is pending within ``flush_timeout``; return the delivery report.

        Once only: a flush cut short by Ctrl-C is not waited for again.
        """
        notifier, self.notifier = self.notifier, None
        if notifier is None:
            return None
        try:
            self.delivery = notifier.flush().to_dict()
        finally:
            if self.delivery is None:  # cut short: what it got to, without waiting
                self.delivery = notifier.report().to_dict()
            notifier.close()
        return self.delivery

    def on_failure(self, step: str) -> str:
        """Return the step's effective ``on_failure``: fail, continue or rollback."""
        block = self.blocks.get(step)
        if block is not None and block.on_failure is not None:
            return block.on_failure
        return self.recipe_config.on_failure


def start_run_state(
    run: Run,
    recipe_config: RecipeErrorHandling,
    blocks: Mapping[str, StepErrorHandling | None],
) -> RunState:
    """Build the state of ``run`` and keep it in ``run.extras``.

    The store it opens is closed again if anything after that fails.
    """
    opened = open_state(run.options.get("state"), recipe_config.state)
    try:
        state = _run_state(run, recipe_config, blocks, opened)
    except BaseException:
        opened.store.close()  # nobody else holds it yet (a channel lacks its ${VAR}, Ctrl-C)
        raise
    run.extras[PLUGIN] = state
    return state


def _run_state(
    run: Run,
    recipe_config: RecipeErrorHandling,
    blocks: Mapping[str, StepErrorHandling | None],
    opened: OpenedStore,
) -> RunState:
    import logging

    errors = recipe_config.errors
    key_patterns = tuple(DEFAULT_SECRET_KEYS) + tuple(errors.redact_keys)
    rules = [
        ClassificationRule.from_mapping(r.model_dump(exclude_none=True))
        for r in recipe_config.classification
    ]
    clocks = timing()
    recipe_path, recipe_hash = recipe_identity(run.recipe.path, run.recipe.raw)
    state = RunState(
        recipe_config=recipe_config,
        blocks=blocks,
        journal=ErrorJournal(
            run,
            classifier=Classifier(rules),
            redactor=Redactor(key_patterns=key_patterns),
            keep=errors.keep,
            wall=clocks.wall,
            history=opened.store,
        ),
        store=opened.store,
        timing=clocks,
        key_patterns=key_patterns,
        log_watch=LogWatch(
            level=logging.getLevelName(errors.detect.level),
            patterns=errors.detect.patterns,
        ),
        state_url=opened.url,
        warnings=run.warnings,
        recipe_path=recipe_path,
        recipe_hash=recipe_hash,
        compensations=Compensations(key_patterns=key_patterns),
    )
    try:
        state.journal.on_store_lost = state.store_lost
        if opened.warning:
            state.warnings.append(opened.warning)
        if recipe_config.notifications is not None:
            state.notifier = Notifier.from_config(
                recipe_config.notifications,
                redactor=state.journal.redactor,
                clock=clocks.wall,
                sleep=clocks.sleep,
            )
    except BaseException:
        state.log_watch.close()  # the caller closes the store
        raise
    return state
