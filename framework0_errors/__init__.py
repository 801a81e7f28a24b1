"""framework0-errors: declarative error handling and recovery for Framework0 recipes.

The host lives in :mod:`framework0_errors.orchestrator`; plugins implement its
hooks with :data:`hookimpl` and register in the ``framework0`` entry-point
group.
"""

from ._version import __version__
from .api import ErrorHandler, ResilienceConfigError, get_error_handler, resilient
from .orchestrator.context import Context, ContextValueError
from .orchestrator.failures import MissingContextKeys, StepFailure, StepReturnedNonZero
from .orchestrator.hookspecs import hookimpl
from .orchestrator.problems import Framework0Error, Problem, RecipeInvalid
from .pipeline import FallbackFailedError
from .policies.exceptions import BulkheadFullError, CircuitOpenError, StepTimeoutError
from .recovery import RecoveryOrchestrator

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "Context",
    "ContextValueError",
    "ErrorHandler",
    "FallbackFailedError",
    "Framework0Error",
    "MissingContextKeys",
    "Problem",
    "RecipeInvalid",
    "RecoveryOrchestrator",
    "ResilienceConfigError",
    "StepFailure",
    "StepReturnedNonZero",
    "StepTimeoutError",
    "__version__",
    "get_error_handler",
    "hookimpl",
    "resilient",
]
