"""Rollback and recovery in recipes, end to end, through `framework0 run`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import CliResult, Project

M = "tests.recovery.scriptlets"
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
Outcome = tuple[int, dict[str, Any], dict[str, Any]]
Runner = Callable[..., Outcome]


@pytest.fixture
def run_recipe(run_cli: Callable[..., CliResult], project: Project) -> Runner:
    """Run a recipe file and return (exit code, report, flat context)."""

    def plugin(path: str, *, workers: int = 1) -> Outcome:
        ctx, rep = project.root / "ctx.json", project.root / "report.json"
        result = run_cli(
            "run", path, "--workers", str(workers), "--context-out", str(ctx), "--report", str(rep)
        )
        assert result.code in (0, 1), result
        report = json.loads(rep.read_text())
        return result.code, report, json.loads(ctx.read_text())["context"]

    return plugin


def _undo(name: str, marker: Path) -> str:
    args = json.dumps({"name": name, "file": str(marker)})
    return f"rollback: {{scriptlet: '{M}:mark', args: {args}}}"


def _marks(marker: Path) -> list[dict[str, Any]]:
    if not marker.exists():
        return []
    return [json.loads(line) for line in marker.read_text().splitlines()]


def _compensated(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in report.get("rollback", {}).get("steps", [])}


def test_failed_charge_releases_the_reservation(run_recipe: Runner, project: Project) -> None:
    """reserve → charge (ValueError, on_failure: rollback): reserve is undone once, exit 1."""
    marker = project.root / "undo.jsonl"
    path = project.recipe(
        f"""
        steps:
          - name: reserve
            module: {M}
            function: ok
            args: {{name: reserve}}
            error_handling:
              {_undo("reserve", marker)}
          - name: charge
            module: {M}
            function: fail_value
            depends_on: [reserve]
            error_handling:
              on_failure: rollback
        """
    )
    code, report, ctx = run_recipe(path)
    assert code == 1
    assert [m["name"] for m in _marks(marker)] == ["reserve"]
    assert ctx.get("recovery.charge", {}).get("outcome") == "rolled_back"
    steps = _compensated(report)
    assert list(steps) == ["reserve"]
    assert steps["reserve"]["status"] == "compensated"
    assert steps["reserve"]["error"] is None
    assert steps["reserve"]["end"] >= steps["reserve"]["start"]
    assert report["rollback"]["trigger"] == ["charge"]
    assert report["status"] == "failed"


def test_diamond_undoes_both_branches_before_the_root(run_recipe: Runner, project: Project) -> None:
    """a → (b, c) → d, d fails: b's and c's compensations end before a's starts."""
    marker = project.root / "undo.jsonl"
    body = "".join(
        f"""
          - name: {name}
            module: {M}
            function: ok
            args: {{name: {name}}}
            depends_on: {deps}
            error_handling:
              {_undo(name, marker)}"""
        for name, deps in (("a", "[]"), ("b", "[a]"), ("c", "[a]"))
    )
    path = project.recipe(
        f"""
        steps:{body}
          - name: d
            module: {M}
            function: fail_value
            depends_on: [b, c]
            error_handling:
              on_failure: rollback
        """
    )
    code, report, ctx = run_recipe(path, workers=2)
    assert code == 1
    steps = _compensated(report)
    assert set(steps) == {"a", "b", "c"}
    assert steps["a"]["start"] >= max(steps["b"]["end"], steps["c"]["end"])
    marks = _marks(marker)
    assert marks[-1]["name"] == "a"
    assert ctx["recovery.d"]["outcome"] == "rolled_back"


def test_failing_compensation_does_not_stop_the_others(
    run_recipe: Runner, project: Project
) -> None:
    """b's compensation raises: it is reported failed, a's still runs; rollback_failed."""
    marker = project.root / "undo.jsonl"
    path = project.recipe(
        f"""
        error_handling:
          on_failure: rollback
        steps:
          - name: a
            module: {M}
            function: ok
            args: {{name: a}}
            error_handling:
              {_undo("a", marker)}
          - name: b
            module: {M}
            function: ok
            args: {{name: b}}
            depends_on: [a]
            error_handling:
              rollback: {{scriptlet: '{M}:undo_raises', args: {{name: b}}}}
          - name: c
            module: {M}
            function: fail_value
            depends_on: [b]
        """
    )
    code, report, ctx = run_recipe(path)
    assert code == 1
    steps = _compensated(report)
    assert steps["b"]["status"] == "failed"
    assert steps["b"]["error"] == "RuntimeError: cannot undo b with key -"
    assert steps["a"]["status"] == "compensated"
    assert [m["name"] for m in _marks(marker)] == ["a"]
    assert report["rollback"]["ok"] is False
    assert ctx["recovery.c"]["outcome"] == "rollback_failed"


def test_on_failure_fail_does_not_roll_back(run_recipe: Runner, project: Project) -> None:
    """Without on_failure: rollback, compensations are registered but never run."""
    marker = project.root / "undo.jsonl"
    path = project.recipe(
        f"""
        steps:
          - name: a
            module: {M}
            function: ok
            args: {{name: a}}
            error_handling:
              {_undo("a", marker)}
          - name: b
            module: {M}
            function: fail_value
        """
    )
    code, report, _ctx = run_recipe(path)
    assert code == 1
    assert _marks(marker) == []
    assert "rollback" not in report


def test_saga_example_rolls_back_and_recovers(run_recipe: Runner, project: Project) -> None:
    """recipes/saga.yaml: the card is declined, stock released, the payment service restarted."""
    for name in ("saga.yaml", "restart_service.yaml", "saga_steps.py"):
        shutil.copy(RECIPES / name, project.root / name)
    code, report, ctx = run_recipe(str(project.root / "saga.yaml"))
    assert code == 1
    assert ctx["order.released"] == {"id": "R-WIDGET-1-2", "reason": "order failed"}
    assert "order.refunded" not in ctx, "charge failed, so it has nothing to undo"
    assert ctx["recovery.charge"]["outcome"] == "rolled_back"
    assert list(_compensated(report)) == ["reserve"]
    charge = next(s for s in report["steps"] if s["name"] == "charge")
    assert charge["status"] == "failed", "a successful recovery does not un-fail the step"
    recovery = report["recovery"]["charge"]
    assert recovery["outcome"] == "succeeded"
    assert recovery["report"]["recipe"] == "restart_service"


def test_recover_runs_the_recovery_recipe_with_the_failure(
    run_recipe: Runner, project: Project
) -> None:
    """recover: a failed step's recovery recipe runs, told which step failed and how."""
    project.recipe(
        f"""
        steps:
          - name: note
            module: {M}
            function: ok
            args: {{name: recovered}}
        """,
        name="fix.yaml",
    )
    path = project.recipe(
        f"""
        steps:
          - name: load
            module: {M}
            function: fail_value
            args: {{name: load}}
            error_handling:
              recover: fix.yaml
        """
    )
    code, report, ctx = run_recipe(path)
    assert code == 1
    recovery = report["recovery"]["load"]
    assert recovery["outcome"] == "succeeded"
    assert recovery["report"]["status"] == "succeeded"
    assert report["steps"][0]["status"] == "failed"
    assert ctx.get("recovery.load", {}).get("outcome", "failed") == "failed"
