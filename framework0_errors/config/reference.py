"""Generate ``docs/configuration.md``, the key reference, from the JSON Schema.

Regenerate with ``python -m framework0_errors.config.reference > docs/configuration.md``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .models import DOTTED_PATTERN, FUNCTION_PATTERN, REFERENCE_PATTERN, SELECTOR_PATTERN
from .schema import DEF_PREFIX, error_handling_defs

__all__ = ["render_configuration_reference"]

# (anchor, heading, definition): one table per block, in reading order.
_SECTIONS = (
    ("step", "Step block: `error_handling:`", "StepErrorHandling"),
    ("retry", "`retry`", "RetryConfig"),
    ("fallback", "`fallback`", "FallbackConfig"),
    ("scriptlet-reference", "Scriptlet references", "ScriptletRef"),
    ("circuit-breaker", "`circuit_breaker`", "CircuitBreakerConfig"),
    ("timeout", "`timeout`", "TimeoutConfig"),
    ("bulkhead", "`bulkhead`", "BulkheadConfig"),
    ("rollback", "`rollback`", "RollbackConfig"),
    ("recipe", "Recipe block: top-level `error_handling:`", "RecipeErrorHandling"),
    ("classification", "`classification` rules", "ClassificationRule"),
    ("classification-match", "`classification[].match`", "ClassificationMatch"),
    ("errors", "`errors`", "ErrorsConfig"),
    ("errors-detect", "`errors.detect`", "DetectConfig"),
    ("state", "`state`", "StateConfig"),
    ("notifications", "`notifications`", "NotificationsConfig"),
    ("channel-log", "Channel `type: log`", "LogChannel"),
    ("channel-webhook", "Channel `type: webhook`", "WebhookChannel"),
    ("channel-slack", "Channel `type: slack`", "SlackChannel"),
    ("channel-email", "Channel `type: email`", "EmailChannel"),
    ("routes", "`notifications.routes[]`", "Route"),
    ("route-match", "`notifications.routes[].match`", "RouteMatch"),
)
_PATTERNS = {
    SELECTOR_PATTERN: "error selector",
    REFERENCE_PATTERN: "`pkg.mod` or `pkg.mod:Name`",
    DOTTED_PATTERN: "dotted name",
    FUNCTION_PATTERN: "name",
}
_INTRO = """\
# Configuration reference

<!-- Generated from the models in framework0_errors/config; do not edit.
     Regenerate: python -m framework0_errors.config.reference > docs/configuration.md -->

Error handling is declared in YAML: per step in an `error_handling:` block, and
for the whole recipe in a top-level `error_handling:` block. The JSON Schema of
both is `schemas/error_handling.schema.json`; `framework0 schema` prints the
whole recipe schema, and `framework0 validate` checks a recipe against it.

```yaml
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
```

Rules that hold everywhere:

- Durations are seconds, as numbers (`60`, `2.5`). Unknown keys are errors.
- Values are taken as written: `"3"` is not the number 3.
- Recipes are YAML 1.2 (`yes` and `on` are strings), unless the file starts
  with a `%YAML 1.1` directive. Anchors, aliases and merge keys
  (`<<: *common`) work; a key written twice in one mapping is an error.
- A policy key (`retry`, `fallback`, ...) that is absent or `null` means "no such
  policy"; `null` lets a step switch off a policy it would inherit.
- A key whose default is shown as `—` may be left out but not written as `null`.
- A step's effective block is the recipe's `defaults`, then each policy named
  in `use` (in order), then the step's own block, merged key by key: policies
  given on both sides are merged key by key, anything else (lists, `args`,
  references) is replaced; the later layer wins. A layer giving
  `fallback.scriptlet` drops an inherited `fallback.value`, and the reverse.
  Policies may `use` other policies; so may `defaults`.
- Error selectors are an error name, builtin (`ConnectionError`) or dotted
  (`requests.exceptions.Timeout`), matched against the exception's whole MRO
  by qualified or simple name, or a category such as `category:NETWORK`
  (categories: SYSTEM, NETWORK, VALIDATION, BUSINESS, SECURITY, FRAMEWORK,
  UNKNOWN; case-insensitive).
- Notification settings may contain `${ENV_VAR}` references; secrets belong
  there, never in the recipe. `framework0 validate` reports unset variables.
"""


def render_configuration_reference() -> str:
    """Return the Markdown text of ``docs/configuration.md``."""
    defs = error_handling_defs()
    anchors = {f"#/$defs/{DEF_PREFIX}{name}": anchor for anchor, _, name in _SECTIONS}
    parts = [_INTRO]
    for anchor, heading, name in _SECTIONS:
        node = defs[DEF_PREFIX + name]
        parts.append(f'\n<a id="{anchor}"></a>\n\n## {heading}\n\n{_text(node["description"])}\n')
        parts.append("\n| key | type | default | description |\n|---|---|---|---|\n")
        required = set(node.get("required", ()))
        for key, prop in sorted(node["properties"].items()):
            default = "required" if key in required else _default(prop)
            kind = _type(prop, anchors)
            parts.append(f"| `{key}` | {kind} | {default} | {_text(prop['description'])} |\n")
    return "".join(parts)


def _type(node: dict[str, Any], anchors: dict[str, str]) -> str:
    if "$ref" in node:
        anchor = anchors[node["$ref"]]
        label = "`{module, function}`" if anchor == "scriptlet-reference" else anchor
        return f"[{label.replace('-', ' ')}](#{anchor})"
    if "else" in node:
        first = {**node["if"], **node.get("then", {})}
        other = _type(node["else"], anchors)
        if first == {"type": "null"}:
            return f"{other} or null"
        return f"{_type(first, anchors)} or {other}"
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        names = " \\| ".join(f"`{v}`" for v in node["enum"] if v is not None)
        return names + (" or null" if None in node["enum"] else "")
    kinds = node.get("type", "any JSON value")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return " or ".join(_one_type(kind, node, anchors) for kind in kinds)


def _one_type(kind: str, node: dict[str, Any], anchors: dict[str, str]) -> str:
    if kind == "array":
        least = f" (at least {node['minItems']})" if "minItems" in node else ""
        return f"list{least} of {_type(node['items'], anchors)}"
    if kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, dict) and "allOf" in values:
            return "mapping of name to channel (by `type`, below)"
        if isinstance(values, dict) and values:
            return f"mapping of name to {_type(values, anchors)}"
        return "mapping"
    if kind == "string":
        if "pattern" in node:
            return _PATTERNS[node["pattern"]]
        return "regular expression" if node.get("format") == "regex" else "string"
    if kind in ("number", "integer"):
        bounds = [
            f"≥ {node['minimum']}" if "minimum" in node else "",
            f"> {node['exclusiveMinimum']}" if "exclusiveMinimum" in node else "",
            f"≤ {node['maximum']}" if "maximum" in node else "",
        ]
        return f"{kind} {', '.join(b for b in bounds if b)}".strip()
    return str(kind)


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return "—"
    value = node["default"]
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"`{text}`".replace("|", "\\|")


def _text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.write(render_configuration_reference())
