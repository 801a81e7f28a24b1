"""The pydantic models: the brief's block, defaults, strictness and the done-when rejections."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from framework0_errors.config import models as m
from framework0_errors.config.models import (
    EmailChannel,
    FallbackConfig,
    LogChannel,
    NotificationsConfig,
    RecipeErrorHandling,
    RetryConfig,
    ScriptletRef,
    SlackChannel,
    StepErrorHandling,
    WebhookChannel,
)

from .helpers import schema_accepts

BRIEF_BLOCK: dict[str, Any] = {
    "retry": {
        "max_attempts": 3,
        "backoff_strategy": "exponential",
        "retry_on": ["ConnectionError", "TimeoutError"],
    },
    "fallback": {"scriptlet": "business_logic.data_processor_fallback"},
    "circuit_breaker": {"failure_threshold": 5, "recovery_timeout": 60},
}
ALL_MODELS = [
    obj
    for obj in vars(m).values()  # models.py's own and those it re-exports
    if isinstance(obj, type)
    and issubclass(obj, BaseModel)
    and obj.__module__.startswith("framework0_errors.config.")
]


def _errors(model: type[BaseModel], doc: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(doc)
    return [dict(e) for e in caught.value.errors()]


def test_brief_example_block_validates_as_written() -> None:
    """DESIGN §1's block passes the schema and the models, with the values it states."""
    assert schema_accepts("step", BRIEF_BLOCK)
    block = StepErrorHandling.model_validate(BRIEF_BLOCK)
    assert block.retry is not None
    assert block.retry.max_attempts == 3
    assert block.retry.retry_on == ["ConnectionError", "TimeoutError"]
    assert block.fallback is not None
    assert block.fallback.scriptlet == "business_logic.data_processor_fallback"
    assert block.circuit_breaker is not None
    assert block.circuit_breaker.recovery_timeout == 60.0
    assert block.timeout is None


@pytest.mark.parametrize(
    ("retry", "error_type"),
    [
        ({"max_attemps": 3}, "extra_forbidden"),
        ({"backoff_strategy": "quadratic"}, "literal_error"),
        ({"max_attempts": -1}, "greater_than_equal"),
    ],
    ids=["max_attemps", "quadratic", "max_attempts=-1"],
)
def test_done_when_rejections_hold_for_schema_and_models(
    retry: dict[str, Any], error_type: str
) -> None:
    """A misspelt key, an unknown strategy and attempts below 1 are rejected by both."""
    doc = {"retry": retry}
    assert not schema_accepts("step", doc)
    errors = _errors(StepErrorHandling, doc)
    assert [e["type"] for e in errors] == [error_type]
    assert errors[0]["loc"][:2] == ("retry", next(iter(retry)))


def test_retry_defaults_are_the_documented_ones() -> None:
    """An empty retry block means 3 exponential attempts from 1s, x2, capped at 60s."""
    retry = RetryConfig.model_validate({})
    assert (retry.max_attempts, retry.backoff_strategy, retry.jitter) == (3, "exponential", "none")
    assert (retry.initial_delay, retry.multiplier, retry.max_delay) == (1.0, 2.0, 60.0)
    assert (retry.retry_on, retry.give_up_on, retry.deadline) == (None, [], None)


def test_recipe_defaults_are_the_documented_ones() -> None:
    """An empty recipe block fails on failure, keeps 20 records and has no policies."""
    recipe = RecipeErrorHandling.model_validate({})
    assert recipe.on_failure == "fail"
    assert recipe.errors.keep == 20
    assert recipe.errors.detect.level == "ERROR"
    assert (recipe.defaults, recipe.policies, recipe.notifications) == (None, {}, None)


def test_models_are_frozen() -> None:
    """Config objects cannot be changed after validation."""
    retry = RetryConfig.model_validate({})
    with pytest.raises(ValidationError):
        retry.max_attempts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "doc",
    [{"max_attempts": "3"}, {"max_attempts": True}, {"initial_delay": "1"}, {"max_attempts": 2.5}],
)
def test_values_are_taken_as_written(doc: dict[str, Any]) -> None:
    """Strings, booleans and fractions are not coerced into numbers."""
    assert _errors(RetryConfig, doc)


def test_whole_floats_count_as_integers_like_json_schema() -> None:
    """3.0 is an integer for JSON Schema, so the models take it as 3."""
    assert RetryConfig.model_validate({"max_attempts": 3.0}).max_attempts == 3


def test_null_switches_a_policy_off_but_absent_keys_refuse_null() -> None:
    """`retry: null` is accepted; `fallback.value: null` is not (leave it out instead)."""
    assert StepErrorHandling.model_validate({"retry": None}).retry is None
    errors = _errors(FallbackConfig, {"scriptlet": "a.b", "value": None})
    assert "must not be null" in errors[0]["msg"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"scriptlet": "a.b", "value": {"x": 1}}, "exactly one"),
        ({"args": {}}, "exactly one"),
    ],
)
def test_fallback_needs_exactly_one_source(doc: dict[str, Any], message: str) -> None:
    """A fallback gives a scriptlet or a value, never both or neither."""
    assert message in _errors(FallbackConfig, doc)[0]["msg"]


def test_scriptlet_reference_mapping_form() -> None:
    """`{module, function}` is a reference; function may be left out."""
    fallback = FallbackConfig.model_validate({"scriptlet": {"module": "pkg.mod"}})
    assert fallback.scriptlet == ScriptletRef(module="pkg.mod")
    assert isinstance(fallback.scriptlet, ScriptletRef)
    assert fallback.scriptlet.function is None


def test_channels_are_told_apart_by_type() -> None:
    """Each channel becomes the model its `type` names; `from` fills from_addr."""
    notifications = NotificationsConfig.model_validate(
        {
            "channels": {
                "l": {"type": "log"},
                "w": {"type": "webhook", "url": "https://x"},
                "s": {"type": "slack", "webhook_url": "${SLACK}"},
                "e": {"type": "email", "host": "h", "from": "a@x", "to": ["b@x"]},
            }
        }
    )
    kinds = {name: type(ch) for name, ch in notifications.channels.items()}
    assert kinds == {"l": LogChannel, "w": WebhookChannel, "s": SlackChannel, "e": EmailChannel}
    email = notifications.channels["e"]
    assert isinstance(email, EmailChannel)
    assert email.from_addr == "a@x"
    assert email.subject == "[framework0] {recipe}: {step} {outcome}"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"match": {"message": "("}, "category": "NETWORK"}, "not a valid regular expression"),
        ({"match": {}, "category": "NETWORK"}, "one or more of 'exception'"),
        ({"match": {"message": "x"}}, "one or more of 'category'"),
    ],
)
def test_classification_rules_are_checked(doc: dict[str, Any], message: str) -> None:
    """A rule needs a compilable regex, a condition and an outcome."""
    errors = _errors(m.ClassificationRule, doc)
    assert message in errors[0]["msg"]


def test_detect_patterns_must_compile() -> None:
    """errors.detect.patterns are regular expressions, checked when loaded."""
    errors = _errors(m.DetectConfig, {"patterns": ["ok", "[a-"]})
    assert errors[0]["loc"] == ("patterns", 1)
    assert "not a valid regular expression" in errors[0]["msg"]


@pytest.mark.parametrize("model", ALL_MODELS, ids=[c.__name__ for c in ALL_MODELS])
def test_every_field_has_a_description_and_examples(model: type[BaseModel]) -> None:
    """Every field of every model documents itself."""
    for name, info in model.model_fields.items():
        assert info.description, (model.__name__, name)
        assert info.examples, (model.__name__, name)
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"
