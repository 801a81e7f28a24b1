"""The generated JSON Schema: the shipped file, its shape, and how the host embeds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from framework0_errors.config import (
    PATTERN_HELP,
    RecipeErrorHandling,
    StepErrorHandling,
    error_handling_defs,
    error_handling_schema,
    recipe_block_schema,
    render_error_handling_schema,
    step_block_schema,
)
from framework0_errors.config.models import (
    DOTTED_PATTERN,
    FUNCTION_PATTERN,
    REFERENCE_PATTERN,
    SELECTOR_PATTERN,
)
from framework0_errors.orchestrator.middleware import KeyClaim
from framework0_errors.orchestrator.problems import RecipeInvalid
from framework0_errors.orchestrator.recipe import build_recipe_schema, parse_recipe

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "error_handling.schema.json"
CLAIMS = [
    KeyClaim("error_handling", "step", step_block_schema(), error_handling_defs()),
    KeyClaim("error_handling", "recipe", recipe_block_schema(), error_handling_defs()),
]
BRIEF_RECIPE = """\
steps:
  - idx: 1
    name: data_processing
    type: python
    module: business_logic.data_processor
    function: ProcessDataScriptlet
    error_handling:
      retry:
        max_attempts: 3
        backoff_strategy: exponential
        retry_on: [ConnectionError, TimeoutError]
      fallback:
        scriptlet: business_logic.data_processor_fallback
      circuit_breaker:
        failure_threshold: 5
        recovery_timeout: 60
    success:
      ctx_has_keys: [processed_data]
"""


def _subschemas(node: Any, *, conditions: bool = True) -> Iterator[dict[str, Any]]:
    """Yield every schema object in ``node``, without entering defaults or examples.

    ``conditions=False`` skips the tests under ``if`` (they describe no object).
    """
    if not isinstance(node, dict):
        return
    yield node
    for key, value in node.items():
        if key in ("properties", "$defs", "patternProperties"):
            for sub in value.values():
                yield from _subschemas(sub, conditions=conditions)
        elif key in ("items", "additionalProperties", "not", "then", "else") or (
            key == "if" and conditions
        ):
            yield from _subschemas(value, conditions=conditions)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in value:
                yield from _subschemas(sub, conditions=conditions)


def _model_defs() -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in error_handling_defs().items() if "properties" in d]


def test_schema_file_is_the_rendered_schema() -> None:
    """schemas/error_handling.schema.json equals render_error_handling_schema() byte for byte."""
    expected = render_error_handling_schema()
    actual = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert actual == expected, (
        "schemas/error_handling.schema.json is out of date; regenerate it with: python -c "
        '"from framework0_errors.config import render_error_handling_schema as r; '
        "open('schemas/error_handling.schema.json', 'w', encoding='utf-8').write(r())\""
    )


def test_rendering_is_stable_sorted_json_with_trailing_newline() -> None:
    """The rendered text is sorted, indented by 2 and ends with one newline."""
    text = render_error_handling_schema()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert text == render_error_handling_schema()


def test_standalone_document_is_a_valid_draft_2020_12_schema() -> None:
    """The standalone document declares draft 2020-12, an $id and a title, and is well-formed."""
    schema = error_handling_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/error_handling.schema.json")
    assert schema["title"]
    assert set(schema["properties"]) == set(StepErrorHandling.model_fields)
    assert "eh_RecipeErrorHandling" in schema["$defs"]


def test_every_definition_is_prefixed_and_every_ref_resolves_inside_the_defs() -> None:
    """All $defs are named eh_*, and every $ref points at one of them."""
    defs = error_handling_defs()
    assert all(name.startswith("eh_") for name in defs)
    refs = {s["$ref"] for s in _subschemas({"$defs": defs}) if "$ref" in s}
    assert refs
    assert {ref.removeprefix("#/$defs/") for ref in refs} <= set(defs)
    assert all(ref.startswith("#/$defs/eh_") for ref in refs)


@pytest.mark.parametrize(("name", "node"), _model_defs(), ids=[n for n, _ in _model_defs()])
def test_every_property_has_description_examples_and_default(
    name: str, node: dict[str, Any]
) -> None:
    """Each property has a description and examples, and a default unless required or absent."""
    for key, prop in node["properties"].items():
        assert prop.get("description"), (name, key)
        assert prop.get("examples"), (name, key)
        if key in node.get("required", ()):
            assert "default" not in prop, (name, key)


@pytest.mark.parametrize(("name", "node"), _model_defs(), ids=[n for n, _ in _model_defs()])
def test_examples_and_defaults_are_valid_values_of_their_property(
    name: str, node: dict[str, Any]
) -> None:
    """Every example and default validates against the schema of its own property."""
    defs = error_handling_defs()
    for key, prop in node["properties"].items():
        validator = Draft202012Validator({**prop, "$defs": defs})
        for value in [*prop["examples"], *([prop["default"]] if "default" in prop else [])]:
            assert validator.is_valid(value), (name, key, value)


def test_defaults_in_the_schema_are_the_model_defaults() -> None:
    """A property's schema default is what the model fills in when the key is left out."""
    checked = 0
    for model in (StepErrorHandling, RecipeErrorHandling):
        node = error_handling_defs()[f"eh_{model.__name__}"]
        empty = model.model_validate({}).model_dump(mode="json", by_alias=True)
        for key, prop in node["properties"].items():
            if "default" in prop and key != "errors":
                assert prop["default"] == empty[key], key
                checked += 1
    assert checked >= 10


def test_every_model_object_forbids_unknown_keys() -> None:
    """Every object schema with properties sets additionalProperties to false."""
    schema = error_handling_schema()
    nodes = [s for s in _subschemas(schema, conditions=False) if "properties" in s]
    dispatchers = [s for s in nodes if "allOf" in s]
    assert len(dispatchers) == 1  # the channel `type` dispatch, which routes to models
    for node in nodes:
        if node not in dispatchers:
            assert node["additionalProperties"] is False, sorted(node["properties"])


def test_no_pydantic_artefacts_remain() -> None:
    """No title, discriminator or anyOf is left; keys that cannot be null have no null default."""
    root = error_handling_schema()
    for node in _subschemas(root):
        assert "discriminator" not in node
        assert "anyOf" not in node
        assert "title" not in node or node is root
    function = error_handling_defs()["eh_ScriptletRef"]["properties"]["function"]
    assert "default" not in function


def test_nullable_keys_render_as_type_lists_or_null_guards() -> None:
    """`X | None` renders as a type list, or as if-null/else-$ref for models."""
    defs = error_handling_defs()
    deadline = defs["eh_RetryConfig"]["properties"]["deadline"]
    assert deadline["type"] == ["number", "null"]
    on_failure = defs["eh_StepErrorHandling"]["properties"]["on_failure"]
    assert on_failure["enum"][-1] is None
    retry = defs["eh_StepErrorHandling"]["properties"]["retry"]
    assert retry["if"] == {"type": "null"}
    assert retry["else"] == {"$ref": "#/$defs/eh_RetryConfig"}


def test_fragments_are_refs_into_the_defs() -> None:
    """The two fragments the host plugs in are $refs to the step and recipe definitions."""
    assert step_block_schema()["$ref"] == "#/$defs/eh_StepErrorHandling"
    assert recipe_block_schema()["$ref"] == "#/$defs/eh_RecipeErrorHandling"
    assert step_block_schema()["description"]
    assert recipe_block_schema()["description"]


def test_defs_are_returned_as_fresh_copies() -> None:
    """Mutating what error_handling_defs() returned does not change the next call."""
    first = error_handling_defs()
    first["eh_RetryConfig"]["properties"].clear()
    assert error_handling_defs()["eh_RetryConfig"]["properties"]


def test_selector_pattern_is_in_the_schema_for_editors() -> None:
    """Error selectors are checked by a schema pattern, not only by the models."""
    items = error_handling_defs()["eh_RetryConfig"]["properties"]["retry_on"]["items"]
    assert items["pattern"] == SELECTOR_PATTERN


def test_every_pattern_has_a_readable_explanation() -> None:
    """PATTERN_HELP explains every pattern the schema uses."""
    used = {s["pattern"] for s in _subschemas(error_handling_schema()) if "pattern" in s}
    assert used == {SELECTOR_PATTERN, REFERENCE_PATTERN, DOTTED_PATTERN, FUNCTION_PATTERN}
    assert used <= set(PATTERN_HELP)


def test_embedded_in_the_host_recipe_schema_the_brief_example_validates() -> None:
    """Embedded as documented (defs + two $refs), the brief's recipe passes the host's loader."""
    schema = build_recipe_schema(CLAIMS)
    Draft202012Validator.check_schema(schema)
    recipe = parse_recipe(BRIEF_RECIPE, "brief.yaml", claims=CLAIMS, resolve=False)
    assert recipe.steps[0].name == "data_processing"


def test_embedded_schema_reports_each_mistake_at_its_own_place() -> None:
    """Three mistakes in one block give three located problems, each at its key."""
    text = BRIEF_RECIPE.replace("max_attempts: 3", "max_attemps: 3").replace(
        "backoff_strategy: exponential", "backoff_strategy: quadratic"
    )
    text = text.replace("recovery_timeout: 60", "recovery_timeout: -1")
    with pytest.raises(RecipeInvalid) as caught:
        parse_recipe(text, "brief.yaml", claims=CLAIMS, resolve=False)
    paths = [p.path for p in caught.value.problems]
    assert paths == [
        "steps[0].error_handling.retry.max_attemps",
        "steps[0].error_handling.retry.backoff_strategy",
        "steps[0].error_handling.circuit_breaker.recovery_timeout",
    ]
    assert caught.value.problems[0].line == 9


def test_unions_that_cannot_be_flattened_are_left_as_written() -> None:
    """A union of two models stays an anyOf (no future model is silently mangled)."""
    from framework0_errors.config.schema import _flatten

    node = {"anyOf": [{"$ref": "#/$defs/eh_A"}, {"$ref": "#/$defs/eh_B"}], "description": "d"}
    assert _flatten(dict(node)) == node
