"""Any input gives a valid recipe or located problems, never a traceback."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from framework0_errors.orchestrator import (
    Problem,
    RecipeInvalid,
    claims,
    parse_recipe,
    parse_yaml,
    plugin_manager,
)

PM = plugin_manager()
CLAIMS = claims(PM)

KEYS = st.sampled_from(
    [
        "steps", "name", "module", "function", "args", "depends_on", "idx", "success",
        "error_handling", "retry", "max_attempts", "backoff_strategy", "fallback", "value",
        "scriptlet", "circuit_breaker", "timeout", "seconds", "bulkhead", "use", "policies",
        "defaults", "on_failure", "notify", "classification", "match", "x",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["exponential", "fail", "ConnectionError", "category:NETWORK", "a.b:C"]),
    st.text(max_size=8),
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)


def _dump(data: Any) -> str:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, out)
    return out.getvalue()


def _problems(text: str) -> tuple[bool, list[Problem]]:
    try:
        recipe = parse_recipe(text, "fuzz.yaml", claims=CLAIMS, resolve=False)
    except RecipeInvalid as exc:
        return False, exc.problems
    return True, [p for found in PM.hook.framework0_validate_recipe(recipe=recipe) for p in found]


def _check(text: str) -> None:
    loaded, problems = _problems(text)
    assert loaded or problems, "an invalid recipe names at least one problem"
    assert all(isinstance(p, Problem) and p.file == "fuzz.yaml" for p in problems)
    assert all(p.line >= 1 and p.column >= 1 for p in problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_any_document_is_a_recipe_or_located_problems(data: Any) -> None:
    """Arbitrary YAML data never makes the loader or validators raise anything else."""
    _check(_dump(data))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, DOCS, max_size=4))
def test_any_step_block_is_checked_calmly(block: dict[str, Any]) -> None:
    """A well-formed step with an arbitrary error_handling block validates or is located."""
    _check(
        _dump(
            {
                "error_handling": {"policies": {"p": {}}},
                "steps": [{"name": "a", "module": "m", "function": "f", "error_handling": block}],
            }
        )
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_located(text: str) -> None:
    """Arbitrary text gives data or a located YAML problem."""
    files = []
    try:
        parse_yaml(text, "t.yaml")
    except RecipeInvalid as exc:
        files = [p.file for p in exc.problems]
    assert set(files) <= {"t.yaml"}
