"""Everything the error-handling chains of one run share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .classify import ClassificationRule, Classifier
from .config import RecipeErrorHandling, StepErrorHandling
from .journal import ErrorJournal
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
    detect_level: int
    detect_patterns: tuple[str, ...]
    breakers: set[str] = field(default_factory=set)

    def redactor_for(self, args: Mapping[str, Any]) -> Redactor:
        """Return a redactor masking secret keys and the secret values found in ``args``."""
        return Redactor.for_args(args, key_patterns=self.key_patterns)

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
        detect_level=logging.getLevelName(errors.detect.level),
        detect_patterns=tuple(errors.detect.patterns),
    )
    run.extras[PLUGIN] = state
    return state
