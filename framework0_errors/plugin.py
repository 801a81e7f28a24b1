"""The error-handling plugin: attaches ``error_handling:`` blocks to the host.

Registered in the ``framework0`` entry-point group as ``error_handling``.
It claims the ``error_handling`` key at recipe and step level, validates
what a schema cannot, and wraps every step in its chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from .chain import StepChain, bare_step, chain_key
from .config import (
    PATTERN_HELP,
    RecipeErrorHandling,
    StateConfig,
    StepErrorHandling,
    checked_recipe_config,
    error_handling_defs,
    load_recipe_config,
    recipe_block_schema,
    step_block_schema,
)
from .explain import describe_chain
from .journal import WHO
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
    plugin_manager,
)
from .recovery import recover_problem, recovery_recipe_path, run_recovery_recipe
from .rollback import CompensationResult, apply_rollback_outcome
from .runtime import PLUGIN, RunState, start_run_state
from .state import redact_url
from .stores.select import StoreUnavailableError

__all__ = [
    "framework0_claim_keys",
    "framework0_describe_step",
    "framework0_failure_policy",
    "framework0_run_aborted",
    "framework0_run_end",
    "framework0_run_start",
    "framework0_step_end",
    "framework0_step_middleware",
    "framework0_step_start",
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
        KeyClaim(
            KEY, "recipe", recipe_block_schema(), defs, PATTERN_HELP, _accepts(RecipeErrorHandling)
        ),
        KeyClaim(KEY, "step", step_block_schema(), defs, PATTERN_HELP, _accepts(StepErrorHandling)),
    ]


def _accepts(model: type[BaseModel]) -> Callable[[Any], bool]:
    # The models and the schema accept the same blocks (tests/config/test_agreement.py),
    # and a compiled model judges one many times faster than jsonschema.
    def accepts(value: Any) -> bool:
        try:
            model.model_validate(value)
        except ValidationError:
            return False
        return True

    return accepts


@hookimpl
def framework0_validate_recipe(recipe: Recipe) -> list[Problem]:
    """Check merged blocks, references, delays, shared names and channels."""
    problems, config = checked_recipe_config(recipe.raw, recipe.locator)
    if config is None:
        return problems
    recipe.extras[KEY] = config  # parsed now, so that explain and run reuse it
    blocks = config[1]
    for step in recipe.steps:
        block = blocks.get(step.name)
        why = recover_problem(recipe.path, block.recover) if block and block.recover else None
        if why is not None:
            where = ("steps", step.position, "error_handling", "recover")
            problems.append(recipe.locator.problem(where, why))
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
    if block is None:
        return [StepMiddleware(KEY, bare_step(state, step), order=MIDDLEWARE_ORDER)]
    # Steps that share a block share a chain: the host only reads the list it gets.
    key = chain_key(step, block)
    built = state.chains.get(key)
    if built is None:
        chain = StepChain(step, block, state)
        built = state.chains[key] = (
            chain.adopt if chain.adopts else None,
            [StepMiddleware(KEY, chain, order=MIDDLEWARE_ORDER)],
        )
    elif built[0] is not None:
        built[0](step)
    return built[1]


@hookimpl
def framework0_failure_policy(run: Run, step: Step) -> str:
    """Stop the recipe (``fail``, ``rollback``) or go on (``continue``)."""
    return "continue" if _state(run).on_failure(step.name) == "continue" else "stop"


@hookimpl
def framework0_step_start(run: Run, step: Step) -> None:
    """Note the step as running: its Context writes are not settled yet."""
    state = _state(run)
    if state.chains:
        state.chains.clear()  # every chain is built: each is kept by its steps alone
    with state.running_lock:
        state.running.add(step.name)


@hookimpl
def framework0_step_end(run: Run, step: Step, result: StepResult) -> None:
    """Redact secrets in the step's error text; note skipped steps with blocks."""
    state = _state(run)
    with state.running_lock:
        state.running.discard(step.name)
    if result.error is not None:
        result.error = state.redactor_for(step).redact_text(result.error)
    if result.status == "skipped" and state.blocks.get(step.name) is not None:
        state.journal.set_recovery(
            step.name,
            {"attempts": 0, "outcome": "skipped", "strategy": None, "duration": 0.0},
        )
    block = state.blocks.get(step.name)
    if result.status == "succeeded" and block is not None and block.rollback is not None:
        state.compensations.register(step, block.rollback)
    if result.status == "failed":
        _after_final_failure(run, state, step, block)
    state.record_outcome(step.name, result.status)
    if result.status != "skipped" and state.recipe_config.state.checkpoints:
        state.checkpoint()


def _after_final_failure(
    run: Run, state: RunState, step: Step, block: StepErrorHandling | None
) -> None:
    if state.on_failure(step.name) == "rollback":
        state.rollback_trigger.append(step.name)
    if block is not None and block.recover is not None:
        record = state.journal.last.get(step.name)
        state.recoveries[step.name] = run_recovery_recipe(
            recovery_recipe_path(run.recipe.path, block.recover),
            pm=plugin_manager(),
            options=run.options,
            failure={
                "step": step.name,
                "error": record.to_dict() if record is not None else None,
                "run_id": run.run_id,
            },
        )


@hookimpl
def framework0_run_end(run: Run, context: Context, report: dict[str, Any]) -> None:
    """Write the final state of every breaker the run used."""
    state = _state(run)
    breakers: dict[str, Any] = {}
    interrupted = False
    try:
        if state.rollback_trigger:
            _roll_back(run, state, context, report)
        if state.recoveries:
            report["recovery"] = {n: r.to_dict() for n, r in state.recoveries.items()}
            notes = report.setdefault("notes", [])
            for name, recovery in state.recoveries.items():
                why = f" ({recovery.error})" if recovery.error else ""
                notes.append(f"recovery {recovery.recipe} for {name}: {recovery.outcome}{why}")
        now = state.timing.wall()
        try:
            # One batch: if the store stops answering part-way, the report
            # falls back to what the Context last heard of every breaker.
            names = sorted(state.breakers)
            breakers = state.journal.set_breakers(state.store.snapshots(names, now=now))
        except StoreUnavailableError as exc:
            state.store_lost(exc)
        delivery = state.flush_notifications()
        if delivery is not None:
            report["notifications"] = delivery
        report["state"] = redact_url(state.state_url)
        state.checkpoint()
        if not state.store_failed:
            try:
                state.store.finish_run(run.run_id, report["status"])
            except StoreUnavailableError as exc:
                state.store_lost(exc)
    except BaseException as exc:
        # Cut short (Ctrl-C during a rollback, say) or failed: commit what is
        # known, what a rollback undid too, so that --resume runs those steps
        # again. After Ctrl-C, run_aborted follows: it commits what a second
        # Ctrl-C keeps this commit from, and releases the state.
        interrupted = isinstance(exc, KeyboardInterrupt)
        report.setdefault("state", redact_url(state.state_url))
        if state.delivery is not None:
            report.setdefault("notifications", state.delivery)
        state.checkpoint()
        raise
    finally:
        if not interrupted:
            state.close()
    if state.breakers:
        # What the store said at the end, or, if it stopped answering, what the
        # Context last heard.
        report["circuit_breakers"] = {
            name: breakers[name] if name in breakers else context.get(f"circuit_breakers.{name}")
            for name in sorted(state.breakers)
        }


@hookimpl
def framework0_run_aborted(run: Run) -> None:
    """Checkpoint what the ended steps did, send what is pending, release the run's state.

    The run is not marked finished: ``--resume`` takes it up again. Nothing
    to do if ``run_start`` did not set the state up, or ``run_end`` released it.
    """
    state: RunState | None = run.extras.get(PLUGIN)
    if state is None or state.closed:  # run_start did not get as far, or run_end did
        return
    try:
        state.checkpoint()
        state.flush_notifications()
    finally:
        state.close()


def _roll_back(run: Run, state: RunState, context: Context, report: dict[str, Any]) -> None:
    # Runs after the last running step ended: the host calls run_end only then.
    # Each step's outcome follows its compensation, for the checkpoint that an
    # interrupt leaves: one undone, or being undone, is run again by --resume.
    notes = report.setdefault("notes", [])

    def starting(name: str) -> None:
        state.record_outcome(name, "compensating")

    def ended(item: CompensationResult) -> None:
        # A compensation that failed leaves its step done, as far as anyone knows.
        done = item.status == "compensated"
        state.record_outcome(item.step, "compensated" if done else "succeeded")
        error = f": {item.error}" if item.error else ""
        notes.append(f"rollback of {item.step}: {item.status}{error}")

    try:
        rollback = state.compensations.run(
            context=context,
            workers=run.workers,
            timing=state.timing,
            classify=state.classify,
            dependents=run.recipe.dependents(),
            on_start=starting,
            on_result=ended,
        )
    except KeyboardInterrupt:
        notes.append(
            f"{', '.join(state.rollback_trigger)}: rollback interrupted; "
            "--resume runs again the steps it undid or was undoing"
        )
        raise
    outcome = apply_rollback_outcome(
        context, failed_steps=state.rollback_trigger, rollback=rollback, report=report, who=WHO
    )
    notes.append(f"{', '.join(state.rollback_trigger)}: {outcome.replace('_', ' ')}")
    for name in state.rollback_trigger:
        state.notify("rolled_back" if outcome == "rolled_back" else "failed", step=name)


def _state(run: Run) -> RunState:
    state: RunState = run.extras[PLUGIN]
    return state
