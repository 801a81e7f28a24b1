"""Recovery workflows: ordered recovery steps with rollbacks, in code or as a recipe.

In code, :class:`RecoveryOrchestrator` runs a :class:`RecoveryWorkflow`: its
steps in order, each through its own optional retry, stopping at the first
failure; then, only if a step failed, every rollback added, newest first.

In a recipe, ``recover: restart_service.yaml`` on a step names a recovery
workflow that is itself a recipe. When the step's failure is final,
:func:`run_recovery_recipe` runs it through the host, with the same plugins,
in a fresh Context seeded with ``failure.step``, ``failure.error`` and
``failure.run_id``. The failed step stays failed whatever the recovery does:
the recovery repairs the world for the next run, it does not redo the step.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pluggy

from .api import validate_block
from .attempt import Abandon, Tally
from .classify import Classifier, qualified_name
from .config import InvalidReferenceError, RetryConfig, StepErrorHandling, resolve_reference
from .orchestrator import (
    Context,
    Framework0Error,
    StepReturnedNonZero,
    execute,
    load_checked_recipe,
    resolve_callable,
)
from .pipeline import Pipeline
from .stores.memory import MemoryStore
from .testing import timing

__all__ = [
    "RecoveryOrchestrator",
    "RecoveryRunResult",
    "RecoveryWorkflow",
    "WorkflowAction",
    "WorkflowResult",
    "WorkflowStepResult",
    "recover_problem",
    "recovery_recipe_path",
    "run_recovery_recipe",
]

StepOutcome = Literal["succeeded", "failed", "skipped", "rolled_back", "rollback_failed"]
Code = Callable[[Any, Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class WorkflowAction:
    """One step or rollback of a workflow: ``call(context, args)``, optionally retried."""

    name: str
    call: Code
    args: Mapping[str, Any]
    retry: RetryConfig | None


class RecoveryWorkflow:
    """Recovery steps run in order, and rollbacks run (newest first) if one fails.

    Steps and rollbacks are callables ``f(context, args)`` (0 or None for
    success, as recipe steps) or strings naming one: ``pkg.mod:Name`` or
    ``pkg.mod.func``, resolved at once like a recipe step's code.
    """

    def __init__(self, name: str = "recovery") -> None:
        self.name = name
        self.steps: list[WorkflowAction] = []
        self.rollbacks: list[WorkflowAction] = []

    def add_step(
        self,
        step: Code | str,
        *,
        args: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | RetryConfig | None = None,
        name: str | None = None,
    ) -> RecoveryWorkflow:
        """Append a step; ``retry`` takes the keys of a recipe's ``retry:``. Returns self.

        Raises:
            ResilienceConfigError: when ``retry`` is invalid.
            ScriptletImportError: when a named step cannot be imported.
        """
        self.steps.append(_action(step, args=args, retry=retry, name=name))
        return self

    def add_rollback(
        self,
        rollback: Code | str,
        *,
        args: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | RetryConfig | None = None,
        name: str | None = None,
    ) -> RecoveryWorkflow:
        """Append a rollback, run only if a step fails (see :meth:`add_step`). Returns self."""
        self.rollbacks.append(_action(rollback, args=args, retry=retry, name=name))
        return self


@dataclass(frozen=True, slots=True)
class WorkflowStepResult:
    """What became of one step (``kind="step"``) or rollback (``kind="rollback"``)."""

    name: str
    kind: Literal["step", "rollback"]
    outcome: StepOutcome
    attempts: int = 0
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "error": self.error,
            "error_type": self.error_type,
        }


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    """The outcome of a workflow: steps, then rollbacks, each with its outcome."""

    workflow: str
    results: tuple[WorkflowStepResult, ...]

    @property
    def ok(self) -> bool:
        """Whether every step succeeded."""
        return all(r.outcome == "succeeded" for r in self.results if r.kind == "step")

    @property
    def outcome(self) -> str:
        """``succeeded``, ``failed`` (no rollbacks), ``rolled_back`` or ``rollback_failed``."""
        if self.ok:
            return "succeeded"
        undone = [r.outcome for r in self.results if r.kind == "rollback"]
        if not undone:
            return "failed"
        return "rolled_back" if all(o == "rolled_back" for o in undone) else "rollback_failed"

    def outcome_of(self, name: str, *, kind: Literal["step", "rollback"] = "step") -> str:
        """Return the outcome of the step (or rollback) called ``name``.

        Raises:
            KeyError: when the workflow has no such step.
        """
        for result in self.results:
            if result.name == name and result.kind == kind:
                return result.outcome
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "workflow": self.workflow,
            "ok": self.ok,
            "outcome": self.outcome,
            "results": [r.to_dict() for r in self.results],
        }


class RecoveryOrchestrator:
    """Creates and runs recovery workflows against one Context.

    Args:
        context: The Context the steps read and write (default: a new one).
        classifier: Decides which errors are transient, for ``retry``.
    """

    def __init__(
        self, context: Context | None = None, *, classifier: Classifier | None = None
    ) -> None:
        self.context = context if context is not None else Context()
        self.classifier = classifier or Classifier()

    def create_workflow(self, name: str = "recovery") -> RecoveryWorkflow:
        """Return a new, empty workflow."""
        return RecoveryWorkflow(name)

    def execute_workflow(self, workflow: RecoveryWorkflow) -> WorkflowResult:
        """Run the steps until one fails; if one did, run the rollbacks newest first."""
        results: list[WorkflowStepResult] = []
        failed = False
        for action in workflow.steps:
            if failed:
                results.append(WorkflowStepResult(action.name, "step", "skipped"))
                continue
            result = self._run(workflow, action, "step")
            failed = result.outcome == "failed"
            results.append(result)
        for action in reversed(workflow.rollbacks):
            if failed:
                results.append(self._run(workflow, action, "rollback"))
            else:
                results.append(WorkflowStepResult(action.name, "rollback", "skipped"))
        return WorkflowResult(workflow.name, tuple(results))

    def _run(
        self, workflow: RecoveryWorkflow, action: WorkflowAction, kind: Literal["step", "rollback"]
    ) -> WorkflowStepResult:
        who = f"{workflow.name}: {action.name}" + (" (rollback)" if kind == "rollback" else "")
        store = MemoryStore()
        pipeline: Pipeline[None] = Pipeline(
            StepErrorHandling(retry=action.retry),
            name=who,
            breaker_store=store,
            bulkhead_store=store,
            timing=timing(),
            classify=self.classifier.classify,
        )
        view = self.context.writer(who)

        def attempt(number: int, abandon: Abandon) -> None:
            code = action.call(view, dict(action.args))
            if code is not None and (type(code) is not int or code != 0):
                raise StepReturnedNonZero(who, code)

        tally = Tally()
        good: StepOutcome = "succeeded" if kind == "step" else "rolled_back"
        bad: StepOutcome = "failed" if kind == "step" else "rollback_failed"
        try:
            pipeline.run(attempt, tally=tally)
        except Exception as exc:
            text = str(exc) if isinstance(exc, StepReturnedNonZero) else _describe(exc)
            return WorkflowStepResult(
                action.name, kind, bad, tally.attempts, text, qualified_name(type(exc))
            )
        return WorkflowStepResult(action.name, kind, good, tally.attempts)


# ------------------------------------------------------------------ recovery recipes


@dataclass(frozen=True, slots=True)
class RecoveryRunResult:
    """How a recovery recipe went.

    ``outcome`` is ``succeeded``, ``failed`` or ``invalid`` (it could not be
    loaded, or it would recover itself recursively; ``error`` says why).
    """

    recipe: str
    outcome: Literal["succeeded", "failed", "invalid"]
    report: dict[str, Any] | None = None
    error: str | None = None
    context: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the recovery recipe succeeded."""
        return self.outcome == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        """Return the entry of the run report's ``recovery`` section."""
        return {
            "recipe": self.recipe,
            "outcome": self.outcome,
            "error": self.error,
            "report": self.report,
        }


_ACTIVE: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar(
    "framework0_active_recoveries", default=frozenset()
)


def recovery_recipe_path(recipe_path: str | Path, recover: str) -> Path:
    """Return where ``recover`` points: relative paths are taken from the recipe's folder."""
    return Path(recipe_path).parent / recover


def recover_problem(recipe_path: str | Path, recover: str) -> str | None:
    """Return why ``recover`` (as written in the recipe at ``recipe_path``) is unusable, or None."""
    target = recovery_recipe_path(recipe_path, recover)
    if not target.exists():
        return f"recovery recipe {recover} not found (looked for {target})"
    if not target.is_file():
        return f"recovery recipe {recover} is not a file"
    return None


def run_recovery_recipe(
    path: Path,
    *,
    pm: pluggy.PluginManager,
    failure: Mapping[str, Any],
    workers: int = 1,
    options: Mapping[str, Any] | None = None,
) -> RecoveryRunResult:
    """Load and run the recovery recipe at ``path`` with the plugins of ``pm``.

    The sub-run gets a fresh Context holding ``failure.<key>`` for each key of
    ``failure`` (``step``, ``error``: the failed step's last error record,
    ``run_id``), and the parent run's ``options`` (its ``--state``). A recipe
    that is invalid, or already recovering further up the same call chain,
    is not run: the outcome is ``invalid``; one that cannot start (its state
    store is unreachable) has the outcome ``failed``.
    """
    resolved = Path(path).resolve()
    active = _ACTIVE.get()
    if resolved in active:
        return RecoveryRunResult(
            str(path), "invalid", error=f"{path} is already running as a recovery (a loop)"
        )
    token = _ACTIVE.set(active | {resolved})
    try:
        try:
            recipe = load_checked_recipe(str(path), pm)
        except Framework0Error as exc:
            return RecoveryRunResult(str(path), "invalid", error=str(exc))
        context = Context({f"failure.{key}": value for key, value in failure.items()})
        try:
            result = execute(
                recipe, hook=pm.hook, workers=workers, context=context, options=options
            )
        except Framework0Error as exc:
            return RecoveryRunResult(str(path), "failed", error=str(exc))
        return RecoveryRunResult(
            str(path),
            "succeeded" if result.succeeded else "failed",
            report=result.report,
            context=context.to_dict(),
        )
    finally:
        _ACTIVE.reset(token)


# ------------------------------------------------------------------ internals


def _action(
    code: Code | str,
    *,
    args: Mapping[str, Any] | None,
    retry: Mapping[str, Any] | RetryConfig | None,
    name: str | None,
) -> WorkflowAction:
    if isinstance(code, str):
        module, function = _split(code)
        call = resolve_callable(module, function)
        label = name or code
    elif callable(code):
        call = code
        label = name or str(getattr(code, "__name__", type(code).__name__))
    else:
        raise TypeError(f"expected a callable or a 'pkg.mod:Name' string, not {code!r}")
    block = validate_block({"retry": retry}) if retry is not None else None
    return WorkflowAction(label, call, dict(args or {}), block.retry if block else None)


def _split(text: str) -> tuple[str, str]:
    if ":" in text:
        return resolve_reference(text, None)
    module, _, function = text.rpartition(".")
    if not module:
        raise InvalidReferenceError(f"malformed reference {text!r}; write pkg.mod:Name")
    return module, function


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
