"""The committed schemas, the example recipes and an independent validator agree."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from framework0_errors.cli import render_schema
from framework0_errors.orchestrator import build_recipe_schema, claims, plugin_manager

from .conftest import CliResult

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
SCHEMA = ROOT / "schemas" / "recipe.schema.json"


def _check_jsonschema(path: Path) -> int:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA), str(path)],
        capture_output=True,
        check=False,
    ).returncode


def test_committed_recipe_schema_is_what_schema_prints() -> None:
    """schemas/recipe.schema.json is exactly `framework0 schema` (regenerate it if not)."""
    expected = render_schema(build_recipe_schema(claims(plugin_manager())))
    assert SCHEMA.read_text() == expected, (
        "schemas/recipe.schema.json is stale: run `framework0 schema > schemas/recipe.schema.json`"
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_example_recipes_are_valid_everywhere(
    recipe: Path, run_cli: Callable[..., CliResult]
) -> None:
    """Every example starts with the editor modeline and passes both validators."""
    assert recipe.read_text().startswith(
        "# yaml-language-server: $schema=../schemas/recipe.schema.json\n"
    )
    assert run_cli("validate", str(recipe)).code == 0
    assert _check_jsonschema(recipe) == 0


@pytest.mark.parametrize("recipe", INVALID, ids=lambda p: p.name)
def test_invalid_fixtures_are_rejected_everywhere(
    recipe: Path, run_cli: Callable[..., CliResult]
) -> None:
    """Each invalid fixture fails framework0 validate (exit 2) and check-jsonschema."""
    result = run_cli("validate", str(recipe))
    assert result.code == 2
    assert result.out.startswith(f"{recipe}:")
    assert _check_jsonschema(recipe) == 1


def test_there_are_fixtures() -> None:
    """The parametrized tests above have something to check."""
    assert len(RECIPES) >= 6
    assert len(INVALID) >= 8
