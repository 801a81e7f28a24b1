"""What the configuration models are built from: names, patterns, field types, the base model.

Patterns and field types used by the models of :mod:`.models` and
:mod:`.notification_models`, and :class:`ConfigModel`, their shared base:
strict (no ``"3"`` for ``3``), frozen, and refusing unknown keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "CATEGORIES",
    "DOTTED_PATTERN",
    "FUNCTION_PATTERN",
    "REFERENCE_PATTERN",
    "SELECTOR_HELP",
    "SELECTOR_PATTERN",
    "SEVERITIES",
    "Absent",
    "Category",
    "ConfigModel",
    "DottedName",
    "FunctionName",
    "Int",
    "Name",
    "OnFailure",
    "Outcome",
    "Regex",
    "Selector",
    "Severity",
    "not_null",
]

CATEGORIES = ("SYSTEM", "NETWORK", "VALIDATION", "BUSINESS", "SECURITY", "FRAMEWORK", "UNKNOWN")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL", "FATAL")

Category = Literal[
    "SYSTEM", "NETWORK", "VALIDATION", "BUSINESS", "SECURITY", "FRAMEWORK", "UNKNOWN"
]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL", "FATAL"]
OnFailure = Literal["fail", "continue", "rollback"]
Outcome = Literal["failed", "recovered", "rolled_back", "breaker_opened", "breaker_closed"]

# Patterns are ASCII-only and use no flags or lookarounds, so that Python and
# ECMA-262 (editors) read them alike. pydantic uses Python's `re` (not its Rust
# default) so that `$` behaves exactly as in jsonschema, which uses re.search.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENT}(?:\.{_IDENT})*"
_ANY_CASE = "".join(f"[{c.upper()}{c.lower()}]" for c in "category")
_CATEGORY_ANY_CASE = "|".join(
    "".join(f"[{c.upper()}{c.lower()}]" for c in name) for name in CATEGORIES
)
SELECTOR_PATTERN = rf"^(?:{_DOTTED}|{_ANY_CASE}:(?:{_CATEGORY_ANY_CASE}))$"
DOTTED_PATTERN = rf"^{_DOTTED}$"
REFERENCE_PATTERN = rf"^{_DOTTED}(?::{_IDENT})?$"
FUNCTION_PATTERN = rf"^{_IDENT}$"

_T = TypeVar("_T")


def _integral(value: Any) -> Any:
    # JSON Schema counts 3.0 as an integer; strict pydantic would not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, OverflowError) as exc:  # OverflowError: a{4294967296}
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def not_null(value: _T) -> _T:
    """Refuse an explicit null: for keys typed ``X | Absent``, with ``BeforeValidator``."""
    if value is None:
        raise ValueError("must not be null; leave the key out instead")
    return value


Int = Annotated[int, BeforeValidator(_integral)]
Name = Annotated[str, StringConstraints(min_length=1)]
Selector = Annotated[str, StringConstraints(pattern=SELECTOR_PATTERN)]
DottedName = Annotated[str, StringConstraints(pattern=DOTTED_PATTERN)]
FunctionName = Annotated[str, StringConstraints(pattern=FUNCTION_PATTERN)]
Regex = Annotated[str, AfterValidator(_compiles), Field(json_schema_extra={"format": "regex"})]
Absent = SkipJsonSchema[None]
"""The ``None`` of a key that may be left out but not written as ``null``."""

SELECTOR_HELP = (
    "Error selectors: an error name, builtin (`ConnectionError`) or dotted "
    "(`requests.exceptions.Timeout`), matched against the exception's whole MRO by "
    "qualified or simple name; or a category, `category:NETWORK` (case-insensitive)."
)


class ConfigModel(BaseModel):
    """Shared configuration of every config model."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, regex_engine="python-re", validate_default=False
    )

    merge_exclusive: ClassVar[tuple[frozenset[str], ...]] = ()
    """Groups of alternative keys: a layer setting one drops the others set below it."""
