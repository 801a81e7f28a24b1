"""Every example recipe in recipes/ runs as documented."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from framework0_errors.testing import fake_time

from .conftest import CliResult, Project

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

EXPECTED = {
    "demo.yaml": (0, ["recovered after 3 attempts", "fallback (value): timed out after 0.5s"]),
    "brief_example.yaml": (0, ["fallback business_logic.data_processor_fallback"]),
    "retry.yaml": (0, ["recovered after 3 attempts"]),
    "fallback.yaml": (0, ["fallback framework0_errors.demo.fallbacks:CachedPrices after 2"]),
    "timeout.yaml": (0, ["timed out after 0.5s"]),
    "circuit_breaker.yaml": (1, ["short-circuited (breaker payments-api open)"]),
    "bulkhead.yaml": (0, ["export_latam"]),
    "saga.yaml": (
        1,
        [
            "FAILED   charge",
            "rollback of reserve: compensated",
            "charge: rolled back",
            "restart_service.yaml for charge: succeeded",
        ],
    ),
    "restart_service.yaml": (0, []),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, project: Project, run_cli: Callable[..., CliResult]) -> None:
    """The example's exit code and step lines are what its comments promise."""
    for item in RECIPES.iterdir():
        target = project.root / item.name
        if item.is_dir():
            shutil.copytree(item, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(item, target)
    code, lines = EXPECTED[name]
    if name == "bulkhead.yaml":
        # Real time: its steps queue for one slot, and a fake clock that jumps
        # on every poll would end their wait at once.
        result = run_cli("run", str(project.root / name), "--workers", "4")
    else:
        with fake_time():
            result = run_cli("run", str(project.root / name))
    assert result.code == code, result
    for line in lines:
        assert line in result.out
