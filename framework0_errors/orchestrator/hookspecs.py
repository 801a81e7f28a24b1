"""The hooks through which plugins extend the Framework0 host.

Plugins implement these with ``@framework0_errors.hookimpl`` and are found
through the ``framework0`` entry-point group. Each hook lists its arguments;
an implementation may accept any subset of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .context import Context
    from .middleware import KeyClaim, StepMiddleware
    from .problems import Problem
    from .recipe import Recipe, Step
    from .runner import Run, StepResult

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "framework0"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# recipe keys and validation
# -------------------------------------------------------------------------


@hookspec
def framework0_claim_keys() -> list[KeyClaim]:
    """Claim recipe-level or step-level keys, each with its JSON Schema.

    A key in a recipe that no plugin (and not the host) claims is an error.
    The schemas become part of the recipe schema that ``framework0 schema``
    prints and that every recipe is validated against.

    :return: the claims of this plugin.
    """
    raise NotImplementedError


@hookspec
def framework0_validate_recipe(recipe: Recipe) -> list[Problem]:
    """Check a loaded recipe beyond what its JSON Schema can say.

    Called only after the recipe passed the schema and the host's own checks.

    :param recipe: the loaded recipe; ``recipe.locator`` places problems.
    :return: located problems; warnings do not stop a run, errors do.
    """
    raise NotImplementedError


@hookspec
def framework0_describe_step(recipe: Recipe, step: Step) -> str | None:
    """Describe what this plugin does around ``step`` (for ``framework0 explain``).

    :param recipe: the loaded recipe.
    :param step: the step to describe.
    :return: one line, or None when the plugin does nothing for this step.
    """
    raise NotImplementedError


# -------------------------------------------------------------------------
# running
# -------------------------------------------------------------------------


@hookspec
def framework0_step_middleware(run: Run, step: Step) -> list[StepMiddleware] | None:
    """Contribute middleware that wraps every execution of ``step``.

    Called once per step per run. Each middleware receives the invocation
    and the next callable, so it may call it zero, one or many times. The
    host orders all contributions by ``StepMiddleware.order`` (lower is
    outer) and composes them once.

    :param run: the run being prepared.
    :param step: the step to wrap.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def framework0_failure_policy(run: Run, step: Step, error: BaseException) -> str | None:
    """Decide what a final step failure does to the rest of the run.

    Stops at the first non-None result. ``"continue"`` (the host's default)
    skips the step's dependents and lets independent steps go on;
    ``"stop"`` starts no new step, letting running ones finish.

    :param run: the current run.
    :param step: the step that failed.
    :param error: the exception it failed with.
    """
    raise NotImplementedError


# -------------------------------------------------------------------------
# observing
# -------------------------------------------------------------------------


@hookspec
def framework0_run_start(run: Run, context: Context) -> None:
    """Observe the start of a run, before any step is executed.

    :param run: the run; ``run.extras`` is a per-run namespace for plugins.
    :param context: the run's Context.
    """


@hookspec
def framework0_run_end(run: Run, context: Context, report: dict[str, Any]) -> None:
    """Observe the end of a run; plugins may add keys to ``report``.

    :param run: the run.
    :param context: the final Context.
    :param report: the JSON run report being written.
    """


@hookspec
def framework0_run_aborted(run: Run, error: BaseException) -> None:
    """Observe that the run stopped early: no report and no ``run_end`` follow.

    ``error`` is what stopped it: a KeyboardInterrupt (Ctrl-C), or an error
    raised by a hook or callback outside any step. Release what the run
    holds. It also follows a ``run_start`` that failed or was interrupted,
    perhaps before this plugin's own ``run_start`` ran: expect to find
    nothing set up. With ``workers`` > 1 the steps that were running have ended,
    unless a second interrupt abandoned them (they may still be running in
    their threads).

    :param run: the run.
    :param error: what stopped it.
    """


@hookspec
def framework0_step_start(run: Run, step: Step) -> None:
    """Observe that ``step`` is about to be executed.

    :param run: the run.
    :param step: the step.
    """


@hookspec
def framework0_step_end(run: Run, step: Step, result: StepResult) -> None:
    """Observe that ``step`` ended, succeeded, failed or was skipped.

    :param run: the run.
    :param step: the step.
    :param result: its result (status, times, error, detail).
    """


@hookspec
def framework0_step_error(
    run: Run, step: Step, error: BaseException, attempt: int, record: dict[str, Any] | None
) -> None:
    """Observe a failure of ``step``.

    Without plugins that record errors, the host emits it once for a step's
    final failure with ``record=None``. A plugin that handles errors emits it
    for every failed attempt through :meth:`Run.report_step_error`, with its
    error record.

    :param run: the run.
    :param step: the step.
    :param error: the exception.
    :param attempt: 1 for the first attempt.
    :param record: a JSON-ready error record, when a plugin made one.
    """
