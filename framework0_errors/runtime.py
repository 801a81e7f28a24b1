"""Everything the error-handling chains of one run share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .classify import ClassificationRule, Classifier
from .config import RecipeErrorHandling, StepErrorHandling
from .detect import LogWatch
from .journal import ErrorJournal
from .notify import NotificationEvent, Notifier
from .orchestrator import Run
from .redact import DEFAULT_SECRET_KEYS, Redactor
from .stores.memory import MemoryStore
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
    store: MemoryStore
    timing: Timing
    key_patterns: tuple[str, ...]
    log_watch: LogWatch
    notifier: Notifier | None = None
    breakers: set[str] = field(default_factory=set)

    def redactor_for(self, args: Mapping[str, Any]) -> Redactor:
        """Return a redactor masking secret keys and the secret values found in ``args``."""
        return Redactor.for_args(args, key_patterns=self.key_patterns)

    def close(self) -> None:
        """Release what the run held (the log watch)."""
        self.log_watch.close()

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
        """Deliver what is pending within ``flush_timeout``; return the delivery report."""
        if self.notifier is None:
            return None
        try:
            return self.notifier.flush().to_dict()
        finally:
            self.notifier.close()

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
    """Build the state of ``run`` and keep it in ``run.extras``."""
    import logging

    errors = recipe_config.errors
    key_patterns = tuple(DEFAULT_SECRET_KEYS) + tuple(errors.redact_keys)
    rules = [
        ClassificationRule.from_mapping(r.model_dump(exclude_none=True))
        for r in recipe_config.classification
    ]
    clocks = timing()
    state = RunState(
        recipe_config=recipe_config,
        blocks=blocks,
        journal=ErrorJournal(
            run,
            classifier=Classifier(rules),
            redactor=Redactor(key_patterns=key_patterns),
            keep=errors.keep,
            wall=clocks.wall,
        ),
        store=MemoryStore(),
        timing=clocks,
        key_patterns=key_patterns,
        log_watch=LogWatch(
            level=logging.getLevelName(errors.detect.level),
            patterns=errors.detect.patterns,
        ),
    )
    if recipe_config.notifications is not None:
        state.notifier = Notifier.from_config(
            recipe_config.notifications,
            redactor=state.journal.redactor,
            clock=clocks.wall,
            sleep=clocks.sleep,
        )
    run.extras[PLUGIN] = state
    return state
