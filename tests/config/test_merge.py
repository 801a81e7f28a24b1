"""Merging a step's block: defaults, then `use` policies in order, then the step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from framework0_errors.config import (
    PolicyCycleError,
    RecipeErrorHandling,
    RetryConfig,
    StepErrorHandling,
    UnknownPolicyError,
    effective_step_block,
    merge_layers,
)
from framework0_errors.orchestrator.problems import Framework0Error

from .helpers import blocks, models_accept

RECIPE: dict[str, Any] = {
    "defaults": {
        "retry": {"max_attempts": 2, "initial_delay": 5, "retry_on": ["OSError"]},
        "timeout": {"seconds": 10},
        "notify": ["ops"],
    },
    "policies": {
        "network": {
            "retry": {"max_attempts": 4, "retry_on": ["category:NETWORK"]},
            "circuit_breaker": {"failure_threshold": 3},
        },
        "patient": {"retry": {"max_attempts": 6}, "timeout": {"seconds": 60}},
        "cached": {"fallback": {"value": {"data": []}}},
        "chained": {"use": "network", "bulkhead": {"max_concurrent": 2}},
    },
}


def _effective(block: dict[str, Any] | None, recipe: Any = None) -> StepErrorHandling:
    result = effective_step_block(block, RECIPE if recipe is None else recipe, step_name="load")
    assert result is not None
    return result


def test_merge_order_is_defaults_then_use_then_step() -> None:
    """Each later layer wins key by key: defaults < network < patient < the step."""
    block = _effective({"use": ["network", "patient"], "retry": {"initial_delay": 1}})
    assert block.retry is not None
    assert block.retry.max_attempts == 6  # patient over network over defaults
    assert block.retry.retry_on == ["category:NETWORK"]  # network over defaults
    assert block.retry.initial_delay == 1.0  # the step over defaults
    assert block.timeout is not None
    assert block.timeout.seconds == 60.0
    assert block.notify == ["ops"]  # defaults survive where nobody overrides
    assert block.use is None


def test_use_order_matters() -> None:
    """With `use: [patient, network]`, network (later) wins max_attempts."""
    block = _effective({"use": ["patient", "network"]})
    assert block.retry is not None
    assert block.retry.max_attempts == 4


def test_unset_keys_do_not_override_lower_layers() -> None:
    """A step naming only initial_delay keeps max_attempts from defaults, not the model default."""
    block = _effective({"retry": {"initial_delay": 0.5}})
    assert block.retry is not None
    assert (block.retry.max_attempts, block.retry.initial_delay) == (2, 0.5)


def test_lists_are_replaced_not_concatenated() -> None:
    """A step's retry_on and notify replace the inherited lists."""
    block = _effective({"retry": {"retry_on": ["KeyError"]}, "notify": []})
    assert block.retry is not None
    assert block.retry.retry_on == ["KeyError"]
    assert block.notify == []


def test_null_switches_an_inherited_policy_off_and_a_mapping_starts_afresh() -> None:
    """`timeout: null` removes the default timeout; a later mapping over null is used as is."""
    assert _effective({"timeout": None}).timeout is None
    recipe = {"defaults": {"retry": None}, "policies": {"p": {"retry": {"max_attempts": 9}}}}
    block = _effective({"use": "p"}, recipe)
    assert block.retry is not None
    assert block.retry.max_attempts == 9


def test_fallback_scriptlet_and_value_replace_each_other() -> None:
    """A layer giving fallback.scriptlet drops an inherited fallback.value, and the reverse."""
    block = _effective({"use": "cached", "fallback": {"scriptlet": "pkg.fb", "args": {"a": 1}}})
    assert block.fallback is not None
    assert (block.fallback.scriptlet, block.fallback.value) == ("pkg.fb", None)
    recipe = {"policies": {"code": {"fallback": {"scriptlet": "pkg.fb", "on": ["KeyError"]}}}}
    block = _effective({"use": "code", "fallback": {"value": {"x": 1}}}, recipe)
    assert block.fallback is not None
    assert (block.fallback.scriptlet, block.fallback.value) == (None, {"x": 1})
    assert block.fallback.on == ["KeyError"]  # the rest of the policy is still merged


def test_args_are_replaced_whole() -> None:
    """Scriptlet args are values, not policies: the later mapping replaces the earlier."""
    recipe = {"policies": {"p": {"fallback": {"scriptlet": "a.b", "args": {"x": 1, "y": 2}}}}}
    block = _effective({"use": "p", "fallback": {"scriptlet": "a.b", "args": {"y": 3}}}, recipe)
    assert block.fallback is not None
    assert block.fallback.args == {"y": 3}


def test_rollback_retry_is_merged_key_by_key() -> None:
    """rollback.retry is a policy too: its keys merge individually."""
    recipe = {"defaults": {"rollback": {"scriptlet": "a.undo", "retry": {"max_attempts": 5}}}}
    block = _effective({"rollback": {"scriptlet": "a.undo", "retry": {"jitter": "full"}}}, recipe)
    assert block.rollback is not None
    assert block.rollback.retry is not None
    assert (block.rollback.retry.max_attempts, block.rollback.retry.jitter) == (5, "full")


def test_policies_may_use_policies_and_so_may_defaults() -> None:
    """`chained` brings in `network` first; defaults may `use` a policy."""
    block = _effective({"use": "chained"})
    assert block.circuit_breaker is not None
    assert block.circuit_breaker.failure_threshold == 3
    assert block.bulkhead is not None
    assert block.bulkhead.max_concurrent == 2
    recipe = {"defaults": {"use": "p"}, "policies": {"p": {"timeout": {"seconds": 1}}}}
    assert _effective(None, recipe).timeout is not None


def test_breaker_and_bulkhead_are_named_after_the_step_unless_named() -> None:
    """circuit_breaker.name and bulkhead.name default to the step name."""
    block = _effective({"circuit_breaker": {}, "bulkhead": {"name": "db"}}, {})
    assert block.circuit_breaker is not None
    assert block.circuit_breaker.name == "load"
    assert block.bulkhead is not None
    assert block.bulkhead.name == "db"


@pytest.mark.parametrize(
    ("block", "recipe"),
    [(None, None), (None, {}), ({}, {"defaults": {}}), ({"retry": None, "notify": []}, {})],
    ids=["nothing", "no-defaults", "empty-defaults", "all-null"],
)
def test_nothing_applies_gives_none(block: Any, recipe: Any) -> None:
    """Steps without error handling get None, so they cost nothing."""
    assert effective_step_block(block, recipe, step_name="s") is None


def test_an_empty_policy_mapping_applies_the_policy_with_its_defaults() -> None:
    """`retry: {}` means "retry with the default settings", not "no retry"."""
    block = effective_step_block({"retry": {}}, None, step_name="s")
    assert block is not None
    assert block.retry == RetryConfig()


def test_unknown_use_lists_the_known_policies() -> None:
    """An unknown policy name raises a Framework0Error naming it and the known ones."""
    with pytest.raises(UnknownPolicyError) as caught:
        effective_step_block({"use": ["network", "netwrok"]}, RECIPE, step_name="s")
    error = caught.value
    assert isinstance(error, Framework0Error)
    assert error.name == "netwrok"
    assert error.known == ("cached", "chained", "network", "patient")
    assert error.path == ("error_handling", "use", 1)
    assert "did you mean 'network'?" in str(error)
    assert "known policies: cached, chained, network, patient" in str(error)
    assert type(error).__module__ == "framework0_errors"


def test_unknown_use_without_any_policies_says_where_to_define_them() -> None:
    """With no policies at all, the error says how to add one."""
    with pytest.raises(UnknownPolicyError, match="defines no policies"):
        effective_step_block({"use": "x"}, None, step_name="s")


def test_policy_cycle_is_an_error() -> None:
    """Policies using each other in a cycle raise PolicyCycleError with the cycle."""
    recipe = {"policies": {"a": {"use": "b"}, "b": {"use": ["a"]}}}
    with pytest.raises(PolicyCycleError) as caught:
        effective_step_block({"use": "a"}, recipe, step_name="s")
    assert caught.value.cycle == ("a", "b", "a")
    assert caught.value.path == ("error_handling", "policies", "b", "use", 0)
    assert "a -> b -> a" in str(caught.value)


def test_models_are_accepted_in_place_of_mappings() -> None:
    """A validated recipe model and step model merge like their raw forms."""
    recipe = RecipeErrorHandling.model_validate(RECIPE)
    step = StepErrorHandling.model_validate({"use": "network", "retry": {"jitter": "equal"}})
    from_models = effective_step_block(step, recipe, step_name="load")
    assert from_models == _effective({"use": "network", "retry": {"jitter": "equal"}})


def test_raw_recipe_is_validated() -> None:
    """An invalid recipe mapping raises pydantic's ValidationError."""
    with pytest.raises(ValidationError):
        effective_step_block({"retry": {}}, {"defaults": {"retyr": {}}}, step_name="s")


def test_origins_point_where_each_value_is_written() -> None:
    """merge_layers records the recipe path of every merged value."""
    merged = merge_layers(
        {"use": "network", "retry": {"initial_delay": 1}},
        RECIPE,
        step_name="load",
        step_path=("steps", 3, "error_handling"),
    )
    assert merged.origin("retry", "initial_delay") == (
        "steps",
        3,
        "error_handling",
        "retry",
        "initial_delay",
    )
    assert merged.origin("retry", "max_attempts") == (
        "error_handling",
        "policies",
        "network",
        "retry",
        "max_attempts",
    )
    assert merged.origin("notify", 0) == ("error_handling", "defaults", "notify", 0)
    assert merged.origin("timeout", "seconds")[:3] == ("error_handling", "defaults", "timeout")
    assert merged.origin("bulkhead") == ()
    assert not merged.is_empty


def test_recipe_model_defaults_apply_to_steps_without_a_block() -> None:
    """A validated recipe with defaults gives a step without a block those defaults."""
    recipe = RecipeErrorHandling.model_validate({"defaults": {"timeout": {"seconds": 4}}})
    block = effective_step_block(None, recipe, step_name="s")
    assert block is not None
    assert block.timeout is not None
    assert block.timeout.seconds == 4.0
    assert effective_step_block(None, RecipeErrorHandling(), step_name="s") is None


def test_unknown_keys_in_a_step_block_are_rejected() -> None:
    """A misspelt key in a raw step block fails validation; merge_layers keeps it as a value."""
    with pytest.raises(ValidationError, match="retyr"):
        effective_step_block({"retyr": {"max_attempts": 2}}, None, step_name="s")
    merged = merge_layers({"retyr": {"a": 1}}, {"defaults": {"retry": {}}}, step_name="s")
    assert merged.data == {"retry": {}, "retyr": {"a": 1}}


def _without_use(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "use"}


_VALID_BLOCKS = (
    blocks("step")
    .filter(lambda d: isinstance(d, dict) and models_accept("step", d))
    .map(_without_use)
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    defaults=_VALID_BLOCKS,
    policies=st.dictionaries(st.sampled_from(["p", "q", "r"]), _VALID_BLOCKS, max_size=3),
    step=_VALID_BLOCKS,
    data=st.data(),
)
def test_valid_layers_always_merge_into_a_valid_block(
    defaults: dict[str, Any], policies: dict[str, Any], step: dict[str, Any], data: st.DataObject
) -> None:
    """Any valid defaults, `use` policies and step block merge into a valid block."""
    use = data.draw(st.lists(st.sampled_from(sorted(policies)), max_size=3)) if policies else []
    recipe = {"defaults": defaults, "policies": policies}
    block = effective_step_block({**step, "use": use}, recipe, step_name="s")
    merged = merge_layers({**step, "use": use}, recipe, step_name="s")
    assert (block is None) == merged.is_empty
    if any(value is not None and value != [] for value in step.values()):
        assert isinstance(block, StepErrorHandling)  # the last layer's settings survive


def test_merging_copies_the_layers_so_that_no_step_changes_another() -> None:
    """Merged data is the step's own: the recipe's layers and other steps' data stay as written."""
    recipe = {
        "defaults": {"circuit_breaker": {"failure_threshold": 3}, "notify": ["ops"]},
        "policies": {"cached": {"fallback": {"value": {"data": [1, {"x": 2}]}}}},
    }
    written = repr(recipe)
    first = merge_layers({"use": "cached"}, recipe, step_name="a").data
    second = merge_layers({"use": "cached"}, recipe, step_name="b").data
    assert first["circuit_breaker"]["name"] == "a"  # named after its step
    assert second["circuit_breaker"]["name"] == "b"
    first["fallback"]["value"]["data"][1]["x"] = 99
    first["notify"].append("more")
    assert second["fallback"]["value"]["data"] == [1, {"x": 2}]
    assert second["notify"] == ["ops"]
    assert repr(recipe) == written
