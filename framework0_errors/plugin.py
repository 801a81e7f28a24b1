"""The error-handling plugin: attaches ``error_handling:`` blocks to the host.

Registered in the ``framework0`` entry-point group as ``error_handling``.
It claims the ``error_handling`` key at recipe and step level, validates
what a schema cannot, and wraps every step in its chain.
"""

from __future__ import annotations

from typing import Any

from .chain import StepChain, bare_step
from .config import (
    PATTERN_HELP,
    RecipeErrorHandling,
    StateConfig,
    StepErrorHandling,
    check_recipe,
    error_handling_defs,
    load_recipe_config,
    recipe_block_schema,
    step_block_schema,
)
from .explain import describe_chain
from .orchestrator import (
    Context,
    KeyClaim,
    Problem,
    Recipe,
    Run,
    Step,
    StepMiddleware,
    StepResult,
    hookimpl,
)
from .runtime import PLUGIN, RunState, start_run_state

__all__ = [
    "framework0_claim_keys",
    "framework0_describe_step",
    "framework0_failure_policy",
    "framework0_run_end",
    "framework0_run_start",
    "framework0_step_end",
    "framework0_step_middleware",
    "framework0_validate_recipe",
    "recipe_state_config",
]

KEY = "error_handling"
MIDDLEWARE_ORDER = 100


@hookimpl
def framework0_claim_keys() -> list[KeyClaim]:
    """Claim ``error_handling`` at recipe and at step level."""
    defs = error_handling_defs()
    return [
        KeyClaim(KEY, "recipe", recipe_block_schema(), defs, PATTERN_HELP),
        KeyClaim(KEY, "step", step_block_schema(), defs, PATTERN_HELP),
    ]


@hookimpl
def framework0_validate_recipe(recipe: Recipe) -> list[Problem]:
    """Check merged blocks, references, delays, shared names and channels."""
    problems = check_recipe(recipe.raw, recipe.locator)
    if not any(p.severity == "error" for p in problems):
        _config(recipe)  # parse now, so that explain and run reuse it
    return problems


@hookimpl
def framework0_describe_step(recipe: Recipe, step: Step) -> str | None:
    """Describe the step's effective chain after ``defaults`` and ``use``."""
    block = _config(recipe)[1].get(step.name)
    return describe_chain(block, step_name=step.name) if block is not None else None


@hookimpl
def framework0_run_start(run: Run) -> None:
    """Set up the run's shared state from the recipe's (once parsed) error handling."""
    recipe_config, blocks = _config(run.recipe)
    start_run_state(run, recipe_config, blocks)


def recipe_state_config(recipe: Recipe) -> StateConfig:
    """Return the recipe's ``error_handling.state`` settings."""
    return _config(recipe)[0].state


def _config(recipe: Recipe) -> tuple[RecipeErrorHandling, dict[str, StepErrorHandling | None]]:
    # Parsed once per loaded recipe: explain asks for every step, and a run of
    # a large recipe should not pay for it again.
    cached = recipe.extras.get(KEY)
    if cached is None:
        cached = recipe.extras[KEY] = load_recipe_config(recipe.raw, locator=recipe.locator)
    config: tuple[RecipeErrorHandling, dict[str, StepErrorHandling | None]] = cached
    return config


@hookimpl
def framework0_step_middleware(run: Run, step: Step) -> list[StepMiddleware]:
    """Wrap the step in its chain (or, without a block, in error recording only)."""
    state = _state(run)
    block = state.blocks.get(step.name)
    call = bare_step(state, step) if block is None else StepChain(step, block, state)
    return [StepMiddleware(KEY, call, order=MIDDLEWARE_ORDER)]


@hookimpl
def framework0_failure_policy(run: Run, step: Step) -> str:
    """Stop the recipe (``fail``, ``rollback``) or go on (``continue``)."""
    return "continue" if _state(run).on_failure(step.name) == "continue" else "stop"


@hookimpl
def framework0_step_end(run: Run, step: Step, result: StepResult) -> None:
    """Redact secrets in the step's error text; note skipped steps with blocks."""
    state = _state(run)
    if result.error is not None:
        result.error = state.redactor_for(step.args).redact_text(result.error)
    if result.status == "skipped" and state.blocks.get(step.name) is not None:
        state.journal.set_recovery(
            step.name,
            {"attempts": 0, "outcome": "skipped", "strategy": None, "duration": 0.0},
        )
    state.outcomes[step.name] = result.status
    if result.status != "skipped" and state.recipe_config.state.checkpoints:
        state.checkpoint(state.outcomes)


@hookimpl
def framework0_run_end(run: Run, context: Context, report: dict[str, Any]) -> None:
    """Write the final state of every breaker the run used."""
    state = _state(run)
    try:
        now = state.timing.wall()
        for name in sorted(state.breakers):
            state.journal.set_breaker(state.store.snapshot(name, now=now))
        delivery = state.flush_notifications()
        if delivery is not None:
            report["notifications"] = delivery
        report["state"] = state.state_url
        if state.warnings:
            report["warnings"] = list(state.warnings)
        state.checkpoint(state.outcomes)
        state.store.finish_run(run.run_id, report["status"])
    finally:
        state.close()
    if state.breakers:
        report["circuit_breakers"] = {
            name: context.get(f"circuit_breakers.{name}") for name in sorted(state.breakers)
        }


def _state(run: Run) -> RunState:
    state: RunState = run.extras[PLUGIN]
    return state
