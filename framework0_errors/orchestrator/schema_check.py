"""Turn JSON Schema errors into located problems a person can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from .problems import Problem
from .yamlsource import Locator

__all__ = ["schema_problems"]

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def schema_problems(
    validator: Draft202012Validator,
    data: Any,
    locator: Locator,
    *,
    pattern_help: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Validate ``data`` and return one located problem per schema violation.

    ``pattern_help`` says in words what each regex ``pattern`` of the schema
    means, so a person is not shown the regex.
    """
    helps = pattern_help or {}
    problems: list[Problem] = []
    for error in validator.iter_errors(data):
        chosen = best_match([error])  # the branch of a oneOf/anyOf that got furthest
        problems.extend(_explain(chosen or error, locator, helps))
    unique = {(p.line, p.column, p.path, p.message): p for p in problems}
    return sorted(unique.values(), key=Problem.sort_key)


def _explain(
    error: ValidationError, locator: Locator, helps: Mapping[str, str]
) -> Iterator[Problem]:
    path = list(error.absolute_path)
    keyword = error.validator
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    expected: Any = error.validator_value
    if keyword in ("anyOf", "oneOf"):
        yield locator.problem(path, _alternatives(error))
        return
    if keyword in ("additionalProperties", "unevaluatedProperties") and isinstance(
        error.instance, Mapping
    ):
        allowed = _allowed_keys(schema)
        for key in error.instance:
            if key in allowed or _matches_pattern(schema, key):
                continue
            yield locator.problem([*path, key], _unknown_key(str(key), allowed))
        return
    if keyword == "enum":
        choices = ", ".join(_show(v) for v in expected)
        yield locator.problem(
            path, f"{_show(error.instance)} is not allowed; use one of: {choices}"
        )
        return
    if keyword == "const":
        yield locator.problem(path, f"must be {_show(expected)}")
        return
    if keyword == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        yield locator.problem(path, f"expected {expected}, got {_got(error.instance)}")
        return
    if keyword == "required" and isinstance(error.instance, Mapping):
        missing = [k for k in expected if k not in error.instance]
        for key in missing:
            yield locator.problem(path, f"missing required key '{key}'")
        return
    if keyword == "pattern":
        meaning = helps.get(str(expected), f"text matching the pattern {expected}")
        yield locator.problem(path, f"{_show(error.instance)} is not valid here; write {meaning}")
        return
    if keyword == "format" and expected == "regex":
        yield locator.problem(path, f"{_show(error.instance)} is not a valid regular expression")
        return
    yield locator.problem(path, error.message)


def _alternatives(error: ValidationError) -> str:
    # Reached when no branch of a oneOf/anyOf got further than another.
    branches = [e for e in error.context or () if not e.relative_path]
    if branches and all(e.validator == "type" for e in branches):
        names = [_TYPE_NAMES.get(str(e.validator_value), str(e.validator_value)) for e in branches]
        return f"expected {' or '.join(names)}, got {_got(error.instance)}"
    subschemas = error.validator_value if isinstance(error.validator_value, list) else []
    exclusive = [s.get("required", []) for s in subschemas if isinstance(s, Mapping)]
    if error.validator == "oneOf" and exclusive and all(len(r) == 1 for r in exclusive):
        keys = ", ".join(sorted(r[0] for r in exclusive))
        return f"give exactly one of: {keys}"
    return error.message


def _allowed_keys(schema: Mapping[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    return list(props) if isinstance(props, Mapping) else []


def _matches_pattern(schema: Mapping[str, Any], key: Any) -> bool:
    import re

    patterns = schema.get("patternProperties", {})
    return any(re.search(p, str(key)) for p in patterns)


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}'; did you mean '{close[0]}'?"
    if allowed:
        return f"unknown key '{key}'; allowed keys: {', '.join(sorted(allowed))}"
    return f"unknown key '{key}'"


def _got(value: Any) -> str:
    return "null" if value is None else f"{_kind(value)} {_show(value)}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "null" if value is None else type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict | list):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )
