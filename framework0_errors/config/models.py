"""The ``error_handling:`` blocks as frozen pydantic models: the one source of truth.

The JSON Schema (:mod:`.schema`) and the reference documentation
(:mod:`.reference`) are generated from these classes, so a key exists, has a
default and a description in exactly one place. Every model is strict (no
``"3"`` for ``3``), frozen and rejects unknown keys. Durations are seconds.

A field typed ``X | None`` whose description says "null" accepts an explicit
``null``; that is how a step switches off a policy it would inherit from
``defaults`` or a ``use:`` policy. Fields typed :data:`Absent` may be left out
but not written as ``null``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from .fields import (
    CATEGORIES,
    DOTTED_PATTERN,
    FUNCTION_PATTERN,
    REFERENCE_PATTERN,
    SELECTOR_HELP,
    SELECTOR_PATTERN,
    SEVERITIES,
    Absent,
    Category,
    ConfigModel,
    DottedName,
    FunctionName,
    Int,
    Name,
    OnFailure,
    Regex,
    Selector,
    Severity,
    not_null,
)
from .notification_models import (
    Channel,
    EmailChannel,
    LogChannel,
    NotificationsConfig,
    Route,
    RouteMatch,
    SlackChannel,
    WebhookChannel,
)

__all__ = [
    "CATEGORIES",
    "DOTTED_PATTERN",
    "FUNCTION_PATTERN",
    "REFERENCE_PATTERN",
    "SELECTOR_PATTERN",
    "SEVERITIES",
    "BulkheadConfig",
    "Channel",
    "CircuitBreakerConfig",
    "ClassificationMatch",
    "ClassificationRule",
    "DetectConfig",
    "EmailChannel",
    "ErrorsConfig",
    "FallbackConfig",
    "LogChannel",
    "NotificationsConfig",
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
    "WebhookChannel",
]


# ---------------------------------------------------------------- step-level policies


class RetryConfig(ConfigModel):
    """Call the step again after a failure, waiting between attempts."""

    max_attempts: Int = Field(
        default=3,
        ge=1,
        description="Total attempts including the first (1 = no retry).",
        examples=[3, 5],
    )
    backoff_strategy: Literal["fixed", "linear", "exponential"] = Field(
        default="exponential",
        description="How the wait grows: `fixed` waits `initial_delay` every time, `linear` "
        "`initial_delay * n`, `exponential` `initial_delay * multiplier^(n-1)`.",
        examples=["exponential", "fixed"],
    )
    initial_delay: float = Field(
        default=1.0, ge=0, description="Seconds to wait before the first retry.", examples=[0.5, 2]
    )
    multiplier: float = Field(
        default=2.0, ge=1, description="Growth factor of `exponential` backoff.", examples=[2, 1.5]
    )
    max_delay: float = Field(
        default=60.0, ge=0, description="Cap in seconds on any one wait.", examples=[30, 60]
    )
    jitter: Literal["none", "full", "equal"] = Field(
        default="none",
        description="Randomise waits (AWS Architecture Blog definitions): `full` draws from "
        "[0, delay], `equal` from [delay/2, delay].",
        examples=["full"],
    )
    retry_on: list[Selector] | None = Field(
        default=None,
        description="Errors worth retrying; null retries transient errors only. " + SELECTOR_HELP,
        examples=[["ConnectionError", "TimeoutError"], ["category:NETWORK"]],
    )
    give_up_on: list[Selector] = Field(
        default=[],
        description="Errors never retried, even when `retry_on` selects them. " + SELECTOR_HELP,
        examples=[["PermissionError", "category:VALIDATION"]],
    )
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="Total seconds across all attempts and waits; null for no limit.",
        examples=[120],
    )


class ScriptletRef(ConfigModel):
    """Python code named by module and function, like a step's own `module`/`function`."""

    module: DottedName = Field(
        description="Dotted module path, importable beside the recipe.",
        examples=["business_logic.data_processor_fallback"],
    )
    function: Annotated[FunctionName | Absent, BeforeValidator(not_null)] = Field(
        default=None,
        description="Class or function in `module`; left out, the step's own `function`.",
        examples=["ProcessDataFallback"],
    )


Reference = Annotated[str, StringConstraints(pattern=REFERENCE_PATTERN)] | ScriptletRef
_REFERENCE_HELP = (
    "`pkg.mod` (the step's own `function` in that module), `pkg.mod:Name`, or a mapping "
    "`{module, function}`."
)


class FallbackConfig(ConfigModel):
    """When the step still fails, call other code or write static values instead.

    Give exactly one of `scriptlet` and `value`.
    """

    merge_exclusive = (frozenset({"scriptlet", "value"}),)
    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["scriptlet"]}, {"required": ["value"]}]}
    )

    scriptlet: Annotated[Reference | Absent, BeforeValidator(not_null)] = Field(
        default=None,
        description="Code run instead of the step: " + _REFERENCE_HELP + " Give it or `value`.",
        examples=["business_logic.data_processor_fallback", "pkg.fallbacks:CachedData"],
    )
    args: dict[str, JsonValue] = Field(
        default={},
        description="Arguments for the fallback scriptlet.",
        examples=[{"source": "cache"}],
    )
    value: Annotated[dict[str, JsonValue] | Absent, BeforeValidator(not_null)] = Field(
        default=None,
        description="Context keys and the values to write instead of calling code. "
        "Give it or `scriptlet`.",
        examples=[{"processed_data": []}],
    )
    on: list[Selector] | None = Field(
        default=None,
        description="Errors that trigger the fallback; null for any error. " + SELECTOR_HELP,
        examples=[["category:NETWORK", "CircuitOpenError"]],
    )

    @model_validator(mode="after")
    def _one_source(self) -> FallbackConfig:
        if (self.scriptlet is None) == (self.value is None):
            raise ValueError("give exactly one of 'scriptlet' and 'value'")
        return self


class CircuitBreakerConfig(ConfigModel):
    """Stop calling a failing dependency for a while; shared by name."""

    name: str | None = Field(
        default=None,
        min_length=1,
        description="Breakers are shared by name across steps, runs and processes; "
        "null means the step name.",
        examples=["orders_api"],
    )
    failure_threshold: Int = Field(
        default=5, ge=1, description="Consecutive failures that open the breaker.", examples=[5]
    )
    recovery_timeout: float = Field(
        default=60.0, gt=0, description="Seconds open before a half-open trial.", examples=[60, 30]
    )
    half_open_max_calls: Int = Field(
        default=1, ge=1, description="Trial calls allowed while half-open.", examples=[1]
    )


class TimeoutConfig(ConfigModel):
    """Limit one attempt of the step."""

    seconds: float = Field(gt=0, description="Seconds one attempt may take.", examples=[30, 2.5])


class BulkheadConfig(ConfigModel):
    """Limit how many executions run at once; shared by name."""

    name: str | None = Field(
        default=None,
        min_length=1,
        description="Bulkheads are shared by name across steps, runs and processes; "
        "null means the step name.",
        examples=["database"],
    )
    max_concurrent: Int = Field(
        default=1, ge=1, description="Executions allowed at the same time.", examples=[4]
    )
    max_wait: float = Field(
        default=0.0,
        ge=0,
        description="Seconds to wait for a free slot before giving up.",
        examples=[10],
    )


class RollbackConfig(ConfigModel):
    """Compensation run if a later failure rolls the recipe back."""

    scriptlet: Reference = Field(
        description="Code that undoes the step: " + _REFERENCE_HELP,
        examples=["business_logic.orders:CancelOrder"],
    )
    args: dict[str, JsonValue] = Field(
        default={},
        description="Arguments for the rollback scriptlet.",
        examples=[{"reason": "rollback"}],
    )
    retry: RetryConfig | None = Field(
        default=None,
        description="Retry the rollback itself; null for a single attempt.",
        examples=[{"max_attempts": 3}],
    )


class StepErrorHandling(ConfigModel):
    """How failures of one step are handled: the step's `error_handling:` block."""

    use: Name | list[Name] | None = Field(
        default=None,
        description="Recipe-level policy name, or list of names, applied in order over "
        "`defaults` and under this block.",
        examples=["network_call", ["network_call", "slow_service"]],
    )
    retry: RetryConfig | None = Field(
        default=None, description="Retry policy; null for none.", examples=[{"max_attempts": 3}]
    )
    fallback: FallbackConfig | None = Field(
        default=None,
        description="Fallback policy; null for none.",
        examples=[{"scriptlet": "pkg.fallback"}],
    )
    circuit_breaker: CircuitBreakerConfig | None = Field(
        default=None,
        description="Circuit breaker; null for none.",
        examples=[{"failure_threshold": 5}],
    )
    timeout: TimeoutConfig | None = Field(
        default=None, description="Per-attempt timeout; null for none.", examples=[{"seconds": 30}]
    )
    bulkhead: BulkheadConfig | None = Field(
        default=None,
        description="Concurrency limit; null for none.",
        examples=[{"max_concurrent": 2}],
    )
    rollback: RollbackConfig | None = Field(
        default=None,
        description="Compensation code; null for none.",
        examples=[{"scriptlet": "pkg.undo"}],
    )
    recover: str | None = Field(
        default=None,
        min_length=1,
        description="Recovery workflow: path of a recipe file, relative to this recipe's "
        "folder, run in a fresh Context (seeded with `failure.step`, `failure.error` and "
        "`failure.run_id`) when this step's failure is final; the step stays failed. "
        "Null for none.",
        examples=["restart_service.yaml"],
    )
    on_failure: OnFailure | None = Field(
        default=None,
        description="Once every recovery is spent: `fail` the recipe, `continue` with "
        "independent steps, or `rollback` completed steps; null means the recipe's setting.",
        examples=["continue"],
    )
    notify: list[Name] = Field(
        default=[],
        description="Notification channels told when this step's failure is final.",
        examples=[["ops_slack"]],
    )


# ---------------------------------------------------------------- recipe-level settings


class ClassificationMatch(ConfigModel):
    """Conditions of a classification rule; give one or more, and every one given must hold."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    exception: Annotated[DottedName | Absent, BeforeValidator(not_null)] = Field(
        default=None,
        description="Error name, matched over the exception's MRO by qualified or simple name.",
        examples=["psycopg.errors.DeadlockDetected"],
    )
    message: Annotated[Regex | Absent, BeforeValidator(not_null)] = Field(
        default=None,
        description="Regular expression searched case-insensitively in the error message.",
        examples=["rate limit|quota"],
    )
    return_code: Annotated[Int | Absent, BeforeValidator(not_null)] = Field(
        default=None, description="The step's non-zero return code.", examples=[3]
    )

    @model_validator(mode="after")
    def _some_condition(self) -> ClassificationMatch:
        if self.exception is None and self.message is None and self.return_code is None:
            raise ValueError("give one or more of 'exception', 'message', 'return_code'")
        return self


class ClassificationRule(ConfigModel):
    """An extra classification rule: `match` and one or more of the fields it sets.

    Rules are tried in order, before the built-in ones; the first that matches wins.
    """

    model_config = ConfigDict(json_schema_extra={"minProperties": 2})

    match: ClassificationMatch = Field(
        description="Which errors the rule applies to.", examples=[{"message": "rate limit"}]
    )
    category: Annotated[Category | Absent, BeforeValidator(not_null)] = Field(
        default=None, description="Category to give matching errors.", examples=["NETWORK"]
    )
    severity: Annotated[Severity | Absent, BeforeValidator(not_null)] = Field(
        default=None, description="Severity to give matching errors.", examples=["HIGH"]
    )
    transient: Annotated[bool | Absent, BeforeValidator(not_null)] = Field(
        default=None, description="Whether matching errors are worth retrying.", examples=[True]
    )
    hint: Annotated[str | Absent, BeforeValidator(not_null)] = Field(
        default=None,
        description="What to do about it, shown in reports.",
        examples=["Check the API quota"],
    )

    @model_validator(mode="after")
    def _some_outcome(self) -> ClassificationRule:
        if (self.category, self.severity, self.transient, self.hint) == (None,) * 4:
            raise ValueError("set one or more of 'category', 'severity', 'transient', 'hint'")
        return self


class DetectConfig(ConfigModel):
    """Which log records count as errors when scanning a run's logs."""

    level: Literal["WARNING", "ERROR", "CRITICAL"] = Field(
        default="ERROR",
        description="Lowest log level that counts as an error.",
        examples=["WARNING"],
    )
    patterns: list[Regex] = Field(
        default=[],
        description="Regular expressions; a log message matching one counts as an error.",
        examples=[["(?i)deadlock", "retrying in \\d+s"]],
    )


class ErrorsConfig(ConfigModel):
    """How errors are recorded in the Context."""

    keep: Int = Field(
        default=20, ge=1, description="Error records kept per step (the newest).", examples=[50]
    )
    redact_keys: list[Name] = Field(
        default=[],
        description="Extra key patterns whose values are secrets, hidden in records and logs.",
        examples=[["api_token", "*_secret"]],
    )
    detect: DetectConfig = Field(
        default=DetectConfig.model_validate({}),
        description="Error detection in logs.",
        examples=[{"level": "WARNING"}],
    )


class StateConfig(ConfigModel):
    """Where breaker, bulkhead, history and checkpoint state lives between runs."""

    url: Name | None = Field(
        default=None,
        description="State store: `sqlite:PATH`, `redis://HOST:PORT/DB` or `memory:`. The "
        "`--state` option and the FRAMEWORK0_STATE variable take precedence; unset, "
        "`sqlite:.framework0/state.db` in the working directory.",
        examples=["redis://127.0.0.1:6379/0", "sqlite:/var/lib/framework0/state.db"],
    )
    on_unavailable: Literal["fail", "local"] = Field(
        default="fail",
        description="If the store cannot be reached: `fail` the run with a clear message, or "
        "use `local` state (the embedded SQLite default) with a warning in the report.",
        examples=["local"],
    )
    history: Int = Field(
        default=1000,
        ge=1,
        description="Error records kept in the store across runs (the newest).",
        examples=[5000],
    )
    checkpoints: bool = Field(
        default=True,
        description="Commit the Context and step outcomes after every step, so a killed run "
        "can be resumed with `--resume`; false saves one store write per step.",
        examples=[False],
    )


# ---------------------------------------------------------------- recipe level


class RecipeErrorHandling(ConfigModel):
    """Recipe-wide error handling: the recipe's top-level `error_handling:` block."""

    defaults: StepErrorHandling | None = Field(
        default=None,
        description="Merged under every step's block, key by key; the step wins. May `use` "
        "policies too.",
        examples=[{"retry": {"max_attempts": 2}}],
    )
    policies: dict[str, StepErrorHandling] = Field(
        default={},
        description="Named blocks that steps (and other policies) apply with `use`.",
        examples=[{"network_call": {"retry": {"retry_on": ["category:NETWORK"]}}}],
    )
    classification: list[ClassificationRule] = Field(
        default=[],
        description="Extra classification rules, tried in order before the built-in ones.",
        examples=[[{"match": {"message": "rate limit"}, "category": "NETWORK", "transient": True}]],
    )
    notifications: NotificationsConfig | None = Field(
        default=None,
        description="Notification channels and routes; null for none.",
        examples=[{"channels": {"ops_log": {"type": "log"}}}],
    )
    on_failure: OnFailure = Field(
        default="fail",
        description="What a step's final failure does unless the step says otherwise.",
        examples=["rollback"],
    )
    errors: ErrorsConfig = Field(
        default=ErrorsConfig.model_validate({}),
        description="How errors are recorded.",
        examples=[{"keep": 50}],
    )
    state: StateConfig = Field(
        default=StateConfig.model_validate({}),
        description="Where resilience state lives between runs, shared by processes.",
        examples=[{"url": "redis://127.0.0.1:6379/0", "on_unavailable": "local"}],
    )
