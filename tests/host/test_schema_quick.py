"""The quick judge of recipe schemas: never says valid where jsonschema finds a fault."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from framework0_errors.orchestrator import build_recipe_schema, claims, plugin_manager
from framework0_errors.orchestrator.schema_quick import surely_valid

CLAIMS = claims(plugin_manager())
SCHEMA = build_recipe_schema(CLAIMS)
# As when every claimed value was accepted by its claim's quick judge.
ACCEPTED = build_recipe_schema(CLAIMS, accepted=[c for c in CLAIMS if c.accepts])
STEP_KEYS = ["name", "module", "function", "idx", "type", "args", "depends_on", "success"]

atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.sampled_from(["", "a", "python", "s1", "category:NETWORK"]),
)
json_values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "ctx_has_keys", "x"]), inner, max_size=3),
    ),
    max_leaves=6,
)
steps = st.dictionaries(
    st.sampled_from([*STEP_KEYS, "error_handling", "unknown"]),
    st.one_of(json_values, st.sampled_from(["s1", "m"]), st.lists(st.sampled_from(["s1", ""]))),
    max_size=8,
)
recipes = st.dictionaries(
    st.sampled_from(["steps", "test_meta", "error_handling", "stray"]),
    st.one_of(json_values, st.lists(steps, max_size=3)),
    max_size=3,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes)
def test_what_it_calls_valid_jsonschema_calls_valid(recipe: dict[str, Any]) -> None:
    """Soundness, on the recipe schema with and without the claims' own schemas."""
    for schema in (SCHEMA, ACCEPTED):
        if surely_valid(schema, recipe):
            assert not list(Draft202012Validator(schema).iter_errors(recipe))


def test_a_plain_valid_recipe_is_judged_quickly() -> None:
    """The usual recipe needs no jsonschema run."""
    recipe = {
        "test_meta": {"id": 1},
        "steps": [
            {"name": "a", "module": "m", "function": "f", "args": {"x": [1, None]}},
            {
                "name": "b",
                "module": "m",
                "function": "f",
                "idx": 2,
                "type": "python",
                "depends_on": ["a"],
                "success": {"ctx_has_keys": ["k"]},
                "error_handling": {"retry": {"max_attempts": 3}},
            },
        ],
    }
    assert surely_valid(ACCEPTED, recipe)
    assert not surely_valid(SCHEMA, recipe)  # a claim's own schema uses keywords it leaves alone


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        ({"type": "integer"}, True, False),  # JSON has no boolean integers
        ({"type": "integer"}, 1.0, False),  # valid, but left to jsonschema
        ({"type": "number"}, 1.5, True),
        ({"type": ["string", "null"]}, None, True),
        ({"enum": [1]}, True, False),
        ({"const": "a"}, "a", True),
        ({"minLength": 2}, "é", False),
        ({"minLength": 2}, 5, True),  # applies to strings only
        ({"pattern": "^a"}, "a", False),  # not known: unsure
        ({"additionalProperties": {"type": "string"}}, {"a": "b"}, False),
        ({"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}}, "s", True),
        ({"$ref": "#/$defs/missing", "$defs": {}}, "s", False),
        ({"$ref": "other.json"}, "s", False),
        (False, "anything", False),
        (True, "anything", True),
    ],
)
def test_keywords(schema: Any, instance: Any, expected: bool) -> None:
    """Each keyword as JSON Schema means it, and 'unsure' wherever it is not certain."""
    assert surely_valid(schema, instance) is expected
