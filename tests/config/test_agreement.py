"""One source of truth: the JSON Schema and the models accept and reject the same blocks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings

from .helpers import blocks, corpus, models_accept, schema_accepts

CASES = corpus()
_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case_is_judged_as_expected_by_both(case: dict[str, Any]) -> None:
    """Each corpus document is accepted or rejected as marked, by schema and models alike."""
    kind, doc = case["kind"], case["doc"]
    assert schema_accepts(kind, doc) is case["valid"]
    assert models_accept(kind, doc) is case["valid"]


def test_corpus_has_both_kinds_and_both_verdicts() -> None:
    """The corpus exercises valid and invalid documents at both levels."""
    seen = {(c["kind"], c["valid"]) for c in CASES}
    assert seen == {("step", True), ("step", False), ("recipe", True), ("recipe", False)}


@_SETTINGS
@given(blocks("step"))
def test_generated_step_blocks_get_the_same_verdict(doc: Any) -> None:
    """Schema and models agree on generated step-level blocks."""
    assert schema_accepts("step", doc) == models_accept("step", doc), doc


@_SETTINGS
@given(blocks("recipe"))
def test_generated_recipe_blocks_get_the_same_verdict(doc: Any) -> None:
    """Schema and models agree on generated recipe-level blocks."""
    assert schema_accepts("recipe", doc) == models_accept("recipe", doc), doc


@pytest.mark.parametrize("kind", ["step", "recipe"])
def test_generator_reaches_rich_valid_blocks(kind: str) -> None:
    """The generator produces valid blocks with several keys, not only rejects."""
    found = find(
        blocks(kind),
        lambda d: isinstance(d, dict) and len(d) >= 3 and models_accept(kind, d),
        settings=settings(max_examples=2000, database=None, deadline=None),
    )
    assert schema_accepts(kind, found)
