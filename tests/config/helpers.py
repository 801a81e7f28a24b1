"""Shared helpers of the config tests: the corpus, validators and a block generator."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from framework0_errors.config import (
    RecipeErrorHandling,
    StepErrorHandling,
    error_handling_defs,
    error_handling_schema,
)
from framework0_errors.config.models import (
    DOTTED_PATTERN,
    FUNCTION_PATTERN,
    REFERENCE_PATTERN,
    SELECTOR_PATTERN,
)
from framework0_errors.orchestrator.yamlsource import parse_yaml

HERE = Path(__file__).parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def corpus() -> list[dict[str, Any]]:
    """Return the shared corpus of valid and invalid blocks (tests/config/corpus.yaml)."""
    text = (HERE / "corpus.yaml").read_text(encoding="utf-8")
    data, _ = parse_yaml(text, "corpus.yaml")
    return list(data)


@functools.cache
def validator(kind: str) -> Draft202012Validator:
    """Return a validator of the step-level or recipe-level block."""
    if kind == "step":
        schema = error_handling_schema()
    else:
        schema = {
            "$schema": DRAFT,
            "$ref": "#/$defs/eh_RecipeErrorHandling",
            "$defs": error_handling_defs(),
        }
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_accepts(kind: str, doc: Any) -> bool:
    """Whether the JSON Schema accepts ``doc`` as a block of ``kind``."""
    return bool(validator(kind).is_valid(doc))


def models_accept(kind: str, doc: Any) -> bool:
    """Whether the pydantic models accept ``doc`` as a block of ``kind``."""
    model = StepErrorHandling if kind == "step" else RecipeErrorHandling
    try:
        model.model_validate(doc)
    except ValidationError:
        return False
    return True


# ------------------------------------------------------------------ generator

# Per pattern: strings that match it, then strings that do not (or only by Python's `$`).
_POOLS: dict[str, tuple[list[str], list[str]]] = {
    SELECTOR_PATTERN: (
        ["ConnectionError", "requests.exceptions.Timeout", "category:NETWORK", "Category:security"],
        ["category:weather", "category:", "9bad", "a..b", "two words", "ConnectionError\n", ""],
    ),
    REFERENCE_PATTERN: (["pkg.mod", "pkg.mod:Name", "a"], ["pkg:a:b", "pkg.", ":Name", ""]),
    DOTTED_PATTERN: (["pkg.mod", "a", "a.b.Error"], ["1a", "a b", ""]),
    FUNCTION_PATTERN: (["Name", "_x"], ["a.b", "", "9"]),
}
_REGEXES = (["a+", "rate limit|quota", "(?i)deadlock", ""], ["(", "[a-"])
_NAMES = st.sampled_from(["a", "b", "ops", "network_call", "", "x y"])
_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-2, 2, allow_nan=False),
    st.text(max_size=3),
    st.lists(st.integers(0, 1), max_size=2),
    st.dictionaries(st.sampled_from(["k", "type"]), st.integers(0, 1), max_size=1),
)


def blocks(kind: str) -> st.SearchStrategy[Any]:
    """Generate blocks of ``kind`` near the schema: mostly well-formed, often slightly wrong."""
    defs = error_handling_defs()
    name = "eh_StepErrorHandling" if kind == "step" else "eh_RecipeErrorHandling"
    return _near(defs[name], defs)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from ``good`` with odds of 7 in 8, else from ``bad``."""
    return st.integers(0, 7).flatmap(lambda n: bad if n == 0 else good)


def _pick(pool: tuple[list[Any], list[Any]]) -> st.SearchStrategy[Any]:
    return _mostly(st.sampled_from(pool[0]), st.sampled_from(pool[1]))


def _near(node: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _mostly(_shaped(node, defs), _JUNK)


def _shaped(node: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rpartition("/")[2]]
        return st.deferred(lambda: _shaped(target, defs))
    if "else" in node:
        first = {**node["if"], **node.get("then", {})}
        return st.one_of(_shaped(first, defs), _shaped(node["else"], defs))
    if "allOf" in node:  # the channel dispatcher: any of the kinds, or a bad kind
        kinds = [_shaped(branch["then"], defs) for branch in node["allOf"]]
        return st.one_of(*kinds, st.fixed_dictionaries({"type": st.sampled_from(["sms", ""])}))
    if "enum" in node:
        near_misses = [str(v).swapcase() for v in node["enum"] if isinstance(v, str)]
        return _pick((node["enum"], near_misses))
    if "const" in node:
        return _pick(([node["const"]], ["other"]))
    kinds = node.get("type")
    if kinds is None:
        return _JUNK
    if isinstance(kinds, list):
        return st.one_of(*(_shaped({**node, "type": k}, defs) for k in kinds))
    return _by_type(kinds, node, defs)


def _by_type(kind: str, node: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.one_of(st.integers(-2, 70000), st.sampled_from([1.0, 3.0, 2.5]))
    if kind == "number":
        return st.one_of(
            st.integers(-2, 100), st.floats(-1, 1e6, allow_nan=False, allow_infinity=False)
        )
    if kind == "string":
        if "pattern" in node:
            return _pick(_POOLS[node["pattern"]])
        if node.get("format") == "regex":
            return _pick(_REGEXES)
        return st.text(max_size=4)
    if kind == "array":
        return st.lists(_near(node.get("items", {}), defs), max_size=3)
    props = node.get("properties")
    if props:
        required = set(node.get("required", ()))
        fixed = {k: _near(v, defs) for k, v in props.items() if k in required}
        optional = {k: _near(v, defs) for k, v in props.items() if k not in required}
        shaped = st.fixed_dictionaries(fixed, optional=optional)
        return _mostly(shaped, shaped.map(lambda d: {**d, "typo_key": 1}))
    values = node.get("additionalProperties")
    inner = _near(values, defs) if isinstance(values, dict) and values else _JUNK
    return st.dictionaries(_NAMES, inner, max_size=2)
