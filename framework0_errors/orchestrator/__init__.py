"""The Framework0-compatible host: recipes, Context, runner and plugin hooks.

The host knows nothing about error handling; plugins extend it through the
hooks in :mod:`~framework0_errors.orchestrator.hookspecs`.
"""

from .context import Change, Context, ContextValueError, DiscardedWrite, StepContext
from .failures import MissingContextKeys, StepFailure, StepReturnedNonZero
from .hookspecs import hookimpl, hookspec
from .middleware import Invocation, KeyClaim, Next, StepMiddleware, compose
from .plugins import PluginLoadError, claims, load_checked_recipe, plugin_manager
from .problems import Framework0Error, Problem, RecipeInvalid, format_path
from .recipe import (
    Recipe,
    Step,
    build_recipe_schema,
    load_recipe,
    non_finite_problems,
    parse_recipe,
)
from .runner import STEP_THREAD_PREFIX, Run, RunResult, StepResult, StepsAbandoned, execute
from .scriptlets import ScriptletImportError, resolve_callable
from .yamlsource import Locator, load_yaml, parse_yaml

__all__ = [
    "STEP_THREAD_PREFIX",
    "Change",
    "Context",
    "ContextValueError",
    "DiscardedWrite",
    "Framework0Error",
    "Invocation",
    "KeyClaim",
    "Locator",
    "MissingContextKeys",
    "Next",
    "PluginLoadError",
    "Problem",
    "Recipe",
    "RecipeInvalid",
    "Run",
    "RunResult",
    "ScriptletImportError",
    "Step",
    "StepContext",
    "StepFailure",
    "StepMiddleware",
    "StepResult",
    "StepReturnedNonZero",
    "StepsAbandoned",
    "build_recipe_schema",
    "claims",
    "compose",
    "execute",
    "format_path",
    "hookimpl",
    "hookspec",
    "load_checked_recipe",
    "load_recipe",
    "load_yaml",
    "non_finite_problems",
    "parse_recipe",
    "parse_yaml",
    "plugin_manager",
    "resolve_callable",
]
