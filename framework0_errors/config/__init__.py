"""Configuration of error handling: models, their JSON Schema, merging and checks.

* :mod:`.models` — the frozen pydantic models, the one source of truth (with
  :mod:`.notification_models` for ``notifications:``, and :mod:`.fields`, the
  patterns, field types and base model they share);
* :mod:`.schema` — the JSON Schema generated from them, and how to embed it;
* :mod:`.merge` — a step's effective block (``defaults`` → ``use`` → step);
* :mod:`.loading` — a recipe's blocks parsed into models, merged per step;
* :mod:`.checks` — what a schema cannot say, as located problems;
* :mod:`.reference` — ``docs/configuration.md``, generated from the schema (not
  imported here, so that ``python -m`` runs it cleanly).
"""

from __future__ import annotations

from .checks import (
    InvalidReferenceError,
    check_recipe,
    checked_recipe_config,
    resolve_reference,
    seconds_text,
    worst_case_seconds,
)
from .loading import load_recipe_config
from .merge import (
    MergedBlock,
    PolicyCycleError,
    UnknownPolicyError,
    effective_step_block,
    merge_layers,
    plain_copy,
)
from .models import (
    BulkheadConfig,
    Channel,
    CircuitBreakerConfig,
    ClassificationMatch,
    ClassificationRule,
    DetectConfig,
    EmailChannel,
    ErrorsConfig,
    FallbackConfig,
    LogChannel,
    NotificationsConfig,
    RecipeErrorHandling,
    RetryConfig,
    RollbackConfig,
    Route,
    RouteMatch,
    ScriptletRef,
    SlackChannel,
    StateConfig,
    StepErrorHandling,
    TimeoutConfig,
    WebhookChannel,
)
from .schema import (
    PATTERN_HELP,
    error_handling_defs,
    error_handling_schema,
    recipe_block_schema,
    render_error_handling_schema,
    step_block_schema,
)

__all__ = [
    "PATTERN_HELP",
    "BulkheadConfig",
    "Channel",
    "CircuitBreakerConfig",
    "ClassificationMatch",
    "ClassificationRule",
    "DetectConfig",
    "EmailChannel",
    "ErrorsConfig",
    "FallbackConfig",
    "InvalidReferenceError",
    "LogChannel",
    "MergedBlock",
    "NotificationsConfig",
    "PolicyCycleError",
    "RecipeErrorHandling",
    "RetryConfig",
    "RollbackConfig",
    "Route",
    "RouteMatch",
    "ScriptletRef",
    "SlackChannel",
    "StateConfig",
    "StepErrorHandling",
    "TimeoutConfig",
    "UnknownPolicyError",
    "WebhookChannel",
    "check_recipe",
    "checked_recipe_config",
    "effective_step_block",
    "error_handling_defs",
    "error_handling_schema",
    "load_recipe_config",
    "merge_layers",
    "plain_copy",
    "recipe_block_schema",
    "render_error_handling_schema",
    "resolve_reference",
    "seconds_text",
    "step_block_schema",
    "worst_case_seconds",
]
