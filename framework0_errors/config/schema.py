"""JSON Schema of the ``error_handling:`` blocks, generated from :mod:`.models`.

How the host embeds it in the recipe schema (one shared set of ``$defs``):

* merge :func:`error_handling_defs` into the recipe schema's root ``$defs``
  (every name starts with ``eh_``, so nothing collides with the host's own);
* use :func:`recipe_block_schema` as the schema of the recipe's top-level
  ``error_handling`` key and :func:`step_block_schema` as that of each step's.

Both are ``{"$ref": "#/$defs/eh_…"}`` plus a description; every ``$ref`` in
the definitions points at ``#/$defs/eh_…`` of the document they end up in.
This is exactly the shape of the host's ``KeyClaim(key, level, schema, defs)``.

:func:`error_handling_schema` is the standalone document shipped as
``schemas/error_handling.schema.json``: the step-level block at its root and
every definition (the recipe-level block is ``$defs/eh_RecipeErrorHandling``).

Post-processing of pydantic's output, so that a validator reports every
mistake as its own error at its own path (never buried in "is not valid under
any of the given schemas"): ``title`` noise is dropped; unions of simple types
become one ``type`` list (``"type": ["number", "null"]``); a model that may be
``null`` (or a string) becomes ``if: {type: null}`` / ``else: {$ref: …}``;
pydantic's ``discriminator`` (not JSON Schema) becomes an ``if``/``then``
dispatch on ``type``. Keys that may be left out but not written as ``null``
lose their ``default: null``. Every model object has
``additionalProperties: false`` (the models forbid extra keys).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from .models import (
    CATEGORIES,
    DOTTED_PATTERN,
    FUNCTION_PATTERN,
    REFERENCE_PATTERN,
    SELECTOR_PATTERN,
    RecipeErrorHandling,
    StepErrorHandling,
)

__all__ = [
    "DEF_PREFIX",
    "PATTERN_HELP",
    "SCHEMA_ID",
    "error_handling_defs",
    "error_handling_schema",
    "recipe_block_schema",
    "render_error_handling_schema",
    "step_block_schema",
]

DEF_PREFIX = "eh_"
SCHEMA_ID = "https://framework0-errors.dev/schemas/error_handling.schema.json"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_REF_ROOT = "#/$defs/"
_STEP_DESCRIPTION = (
    "How failures of this step are handled: retry, fallback, circuit breaker, timeout, "
    "bulkhead, rollback, and what a final failure does."
)
_RECIPE_DESCRIPTION = (
    "Recipe-wide error handling: defaults for every step, named policies, classification "
    "rules, notifications and error records."
)
PATTERN_HELP: dict[str, str] = {
    SELECTOR_PATTERN: "an error name (ConnectionError, requests.exceptions.Timeout) or "
    f"category:NAME with NAME one of {', '.join(CATEGORIES)}",
    REFERENCE_PATTERN: "pkg.module or pkg.module:Name",
    DOTTED_PATTERN: "a dotted Python name such as pkg.module",
    FUNCTION_PATTERN: "a Python name such as ProcessData",
}
"""What each ``pattern`` of the schema means, for error messages a person can read."""

# Keywords whose value is one subschema, a list of them, or a name -> subschema map.
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "propertyNames")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "$defs", "patternProperties")


def error_handling_defs() -> dict[str, Any]:
    """Return every definition, keyed ``eh_<Model>``, to merge into a root ``$defs``."""
    return copy.deepcopy(_defs())


def step_block_schema() -> dict[str, Any]:
    """Return the schema of a step's ``error_handling`` key (a ``$ref`` into the defs)."""
    return {"$ref": f"{_REF_ROOT}{DEF_PREFIX}StepErrorHandling", "description": _STEP_DESCRIPTION}


def recipe_block_schema() -> dict[str, Any]:
    """Return the schema of the recipe's top-level ``error_handling`` key."""
    return {
        "$ref": f"{_REF_ROOT}{DEF_PREFIX}RecipeErrorHandling",
        "description": _RECIPE_DESCRIPTION,
    }


def error_handling_schema() -> dict[str, Any]:
    """Return the standalone draft 2020-12 document: the step block, with all ``$defs``."""
    defs = error_handling_defs()
    step = copy.deepcopy(defs[f"{DEF_PREFIX}StepErrorHandling"])
    step["description"] = _STEP_DESCRIPTION
    return {
        "$schema": _DRAFT,
        "$id": SCHEMA_ID,
        "title": "framework0-errors: a step's error_handling block",
        **step,
        "$defs": defs,
    }


def render_error_handling_schema() -> str:
    """Return :func:`error_handling_schema` as stable JSON text (what the file holds)."""
    text = json.dumps(error_handling_schema(), indent=2, sort_keys=True, ensure_ascii=False)
    return text + "\n"


@functools.cache
def _defs() -> dict[str, Any]:
    _, raw = models_json_schema(
        [(StepErrorHandling, "validation"), (RecipeErrorHandling, "validation")],
        ref_template=_REF_ROOT + DEF_PREFIX + "{model}",
    )
    defs: dict[str, Any] = raw["$defs"]
    # pydantic's JsonValue is an empty definition ("any JSON"): inline it.
    inline = {f"{_REF_ROOT}{DEF_PREFIX}{name}" for name, body in defs.items() if body == {}}
    out: dict[str, Any] = {}
    for name, body in defs.items():
        if body != {}:
            out[DEF_PREFIX + name] = _clean(body, inline)
    return dict(sorted(out.items()))


def _clean(node: dict[str, Any], inline: set[str]) -> dict[str, Any]:
    """Return a tidied copy of one schema node and, recursively, its subschemas."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref in inline:
        return {k: v for k, v in node.items() if k not in ("$ref", "title")}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in _ONE and isinstance(value, dict):
            out[key] = _clean(value, inline)
        elif key in _MANY:
            out[key] = [_clean(item, inline) for item in value]
        elif key in _MAP:
            out[key] = {name: _clean(sub, inline) for name, sub in value.items()}
        else:
            out[key] = value
    out = _dispatch(out)
    out = _flatten(out)
    if out.get("default", 0) is None and not _allows_null(out):
        del out["default"]
    return out


def _dispatch(node: dict[str, Any]) -> dict[str, Any]:
    """Turn pydantic's ``oneOf`` + ``discriminator`` into an ``if``/``then`` dispatch."""
    disc = node.pop("discriminator", None)
    if disc is None:
        return node
    tag = disc["propertyName"]
    mapping: dict[str, str] = disc["mapping"]
    node.pop("oneOf", None)
    return {
        **node,
        "type": "object",
        "required": [tag],
        "properties": {
            tag: {"enum": sorted(mapping), "description": "Which kind of entry this is."}
        },
        "allOf": [
            {
                "if": {"properties": {tag: {"const": value}}, "required": [tag]},
                "then": {"$ref": mapping[value]},
            }
            for value in sorted(mapping)
        ],
    }


def _flatten(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite pydantic's ``anyOf`` unions so that validators report errors where they are.

    Inside ``anyOf`` every mistake becomes one "not valid under any" error whose
    sub-errors a reporter must pick from. Branches of distinct simple types
    become one ``type`` list (their keywords apply per type anyway); a simple
    type or a model becomes ``if: {type: T}`` / ``else: {$ref: model}``, so
    each mistake inside the model is its own error at its own path.
    """
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return node
    out = {k: v for k, v in node.items() if k != "anyOf"}
    simple = [b for b in branches if isinstance(b.get("type"), str) and "$ref" not in b]
    refs = [b for b in branches if set(b) == {"$ref"}]
    keywords = [k for b in simple for k in b if k != "type"]
    # enum is not type-specific: it may only be widened by null.
    enum_ok = all("enum" not in b for b in simple) or all(
        b == {"type": "null"} for b in simple if "enum" not in b
    )
    if len(simple) == len(branches) and len(set(keywords)) == len(keywords) and enum_ok:
        for branch in simple:
            out.update(branch)
        out["type"] = [b["type"] for b in simple]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    if len(simple) == 1 and len(refs) == 1 and len(branches) == 2 and "const" not in simple[0]:
        then = {k: v for k, v in simple[0].items() if k != "type"}
        out["if"] = {"type": simple[0]["type"]}
        if then:
            out["then"] = then
        out["else"] = refs[0]
        return out
    return node


def _allows_null(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if node.get("if") == {"type": "null"}:
        return True
    return any(_allows_null(branch) for branch in node.get("anyOf", ()))
