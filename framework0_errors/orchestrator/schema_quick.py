"""A quick judge of JSON Schema validity, for the few keywords recipe schemas use.

jsonschema is general, and its generality costs: for a recipe of a thousand
steps it takes about half the time of loading it. Nearly every recipe is
valid, so it is judged here first, by the same schema: :func:`surely_valid`
walks the keywords it knows and answers True only when each holds. Any
other keyword, or any doubt, is a "don't know" (False), and jsonschema then
judges the recipe and explains what it finds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["surely_valid"]

# Keywords that say nothing about validity.
_NOTES = frozenset(
    ("$schema", "$id", "$defs", "title", "description", "examples", "default", "$comment")
)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def surely_valid(schema: Any, instance: Any, root: Mapping[str, Any] | None = None) -> bool:
    """Return True if ``instance`` is valid against ``schema``; False if invalid or unsure.

    Knows ``type``, ``minLength``, ``enum``, ``const``, ``properties``,
    ``additionalProperties``, ``required``, ``items``, ``anyOf`` and local
    ``$ref`` (``#/$defs/NAME``), with JSON's types: ``true`` is not an
    integer, and a float, even ``1.0``, is left to jsonschema. ``root`` is
    the schema that ``$ref`` points into (``schema`` itself by default).
    """
    if schema is True:
        return True
    if not isinstance(schema, Mapping):
        return False  # False, or not a schema
    return _valid(schema, instance, schema if root is None else root)


def _valid(schema: Any, instance: Any, root: Mapping[str, Any]) -> bool:
    if schema is True:
        return True
    if not isinstance(schema, Mapping):
        return False
    for keyword, value in schema.items():
        if keyword in _NOTES:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None or not check(value, instance, schema, root):
            return False
    return True


def _type(expected: Any, instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    kind = type(instance)
    # Exact types: bool is no integer in JSON, and subclasses are left to jsonschema.
    return isinstance(names, list) and any(kind in _TYPES.get(name, ()) for name in names)


def _min_length(least: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    return type(least) is int and (type(instance) is not str or len(instance) >= least)


def _enum(choices: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    return isinstance(choices, list) and any(_same(choice, instance) for choice in choices)


def _const(value: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    return _same(value, instance)


def _same(a: Any, b: Any) -> bool:
    # Atoms only, of one type (1 == True in Python, not in JSON); anything else is unsure.
    return type(a) is type(b) and type(a) in (str, int, bool, type(None)) and a == b


def _properties(props: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    if type(instance) is not dict:
        return True
    return isinstance(props, Mapping) and all(
        key not in props or _valid(props[key], value, root) for key, value in instance.items()
    )


def _additional(extra: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    if type(instance) is not dict or extra is True:
        return True
    if extra is not False or "patternProperties" in schema:
        return False
    props = schema.get("properties", {})
    return all(key in props for key in instance)


def _required(keys: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    return type(instance) is not dict or all(key in instance for key in keys)


def _items(item: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    return type(instance) is not list or all(_valid(item, value, root) for value in instance)


def _any_of(branches: Any, instance: Any, schema: Mapping[str, Any], root: Any) -> bool:
    return isinstance(branches, list) and any(_valid(b, instance, root) for b in branches)


def _ref(ref: Any, instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return False
    defs = root.get("$defs")
    name = ref.removeprefix("#/$defs/")
    if not isinstance(defs, Mapping) or "/" in name or "~" in name or name not in defs:
        return False
    return _valid(defs[name], instance, root)


_KEYWORDS = {
    "type": _type,
    "minLength": _min_length,
    "enum": _enum,
    "const": _const,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "items": _items,
    "anyOf": _any_of,
    "$ref": _ref,
}
