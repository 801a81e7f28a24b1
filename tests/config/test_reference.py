"""docs/configuration.md is generated from the schema and kept up to date."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from framework0_errors.config import error_handling_defs
from framework0_errors.config.reference import render_configuration_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
MODULE = "framework0_errors.config.reference"


def test_configuration_reference_is_up_to_date() -> None:
    """docs/configuration.md equals the reference rendered from the current schema."""
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert actual == render_configuration_reference(), (
        "docs/configuration.md is out of date; regenerate it with: "
        "python -m framework0_errors.config.reference > docs/configuration.md"
    )


@pytest.mark.parametrize(
    "block",
    ["retry", "fallback", "circuit_breaker", "timeout", "bulkhead", "rollback", "errors"],
)
def test_reference_has_a_section_per_block(block: str) -> None:
    """Each policy and recipe setting has its own heading."""
    assert f"## `{block}`" in render_configuration_reference()


def test_every_key_of_every_block_is_in_a_table_with_its_default() -> None:
    """Each property appears as a table row; defaults are shown as written in YAML."""
    text = render_configuration_reference()
    for name, node in error_handling_defs().items():
        for key in node.get("properties", {}):
            if name != "eh_ScriptletRef" or key in ("module", "function"):
                assert f"| `{key}` |" in text, (name, key)
    assert "| `max_attempts` | integer ≥ 1 | `3` |" in text
    assert "| `backoff_strategy` | `fixed` \\| `linear` \\| `exponential` | `exponential` |" in text
    assert "| `seconds` | number > 0 | required |" in text
    assert "| `function` | name | — |" in text


def test_reference_links_resolve_to_anchors() -> None:
    """Every in-page link points at an anchor the page defines."""
    text = render_configuration_reference()
    targets = {part.split(")")[0] for part in text.split("](#")[1:]}
    assert targets
    for target in targets:
        assert f'<a id="{target}"></a>' in text


def test_module_entry_point_prints_the_reference(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m framework0_errors.config.reference` writes the reference to stdout."""
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    runpy.run_module(MODULE, run_name="__main__")
    assert capsys.readouterr().out == render_configuration_reference()
