"""framework0-errors: declarative error handling and recovery for Framework0 recipes.

The host lives in :mod:`framework0_errors.orchestrator`; plugins implement its
hooks with :data:`hookimpl` and register in the ``framework0`` entry-point
group.
"""

from ._version import __version__
from .orchestrator.context import Context, ContextValueError
from .orchestrator.failures import MissingContextKeys, StepFailure, StepReturnedNonZero
from .orchestrator.hookspecs import hookimpl
from .orchestrator.problems import Framework0Error, Problem, RecipeInvalid

__all__ = [
    "Context",
    "ContextValueError",
    "Framework0Error",
    "MissingContextKeys",
    "Problem",
    "RecipeInvalid",
    "StepFailure",
    "StepReturnedNonZero",
    "__version__",
    "hookimpl",
]
