"""Recovery workflows in code, and recovery recipes run through the host."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from framework0_errors.api import ResilienceConfigError
from framework0_errors.config import InvalidReferenceError
from framework0_errors.orchestrator import Context, ScriptletImportError, plugin_manager
from framework0_errors.recovery import (
    RecoveryOrchestrator,
    RecoveryRunResult,
    WorkflowResult,
    recover_problem,
    recovery_recipe_path,
    run_recovery_recipe,
)
from framework0_errors.testing import FakeClock, fake_time

from ..conftest import Project
from . import scriptlets

M = "tests.recovery.scriptlets"
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    scriptlets.CALLS.clear()
    yield
    scriptlets.CALLS.clear()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Retries wait on this clock, instantly."""
    with fake_time() as fake:
        yield fake


def _log(tag: str) -> Any:
    def step(context: Any, args: Mapping[str, Any]) -> int:
        context.set("log", [*context.get("log", []), tag])
        return 0

    step.__name__ = tag
    return step


def _boom(context: Any, args: Mapping[str, Any]) -> int:
    raise OSError("disk gone")


# ------------------------------------------------------------------ workflows in code


def test_all_steps_succeed_and_rollbacks_are_skipped() -> None:
    """Steps run in order; with no failure no rollback runs."""
    context = Context()
    orchestrator = RecoveryOrchestrator(context)
    workflow = orchestrator.create_workflow("restart")
    workflow.add_step(_log("stop")).add_step(_log("start")).add_rollback(_log("undo"))
    result = orchestrator.execute_workflow(workflow)
    assert result.ok
    assert result.outcome == "succeeded"
    assert context.get("log") == ["stop", "start"]
    assert result.outcome_of("undo", kind="rollback") == "skipped"
    assert [c.who for c in context.history()] == ["restart: stop", "restart: start"]


def test_first_failure_skips_the_rest_and_rolls_back_newest_first() -> None:
    """A failing step stops the workflow; rollbacks then run in reverse order of adding."""
    context = Context()
    orchestrator = RecoveryOrchestrator(context)
    workflow = orchestrator.create_workflow()
    workflow.add_step(_log("drain")).add_step(_boom, name="restart").add_step(_log("verify"))
    workflow.add_rollback(_log("undrain")).add_rollback(_log("page"))
    result = orchestrator.execute_workflow(workflow)
    assert not result.ok
    assert [(r.name, r.kind, r.outcome) for r in result.results] == [
        ("drain", "step", "succeeded"),
        ("restart", "step", "failed"),
        ("verify", "step", "skipped"),
        ("page", "rollback", "rolled_back"),
        ("undrain", "rollback", "rolled_back"),
    ]
    assert result.outcome == "rolled_back"
    assert context.get("log") == ["drain", "page", "undrain"]
    failed = result.results[1]
    assert (failed.error, failed.error_type, failed.attempts) == (
        "OSError: disk gone",
        "OSError",
        1,
    )
    assert context.history()[-1].who == "recovery: undrain (rollback)"


def test_failed_rollback_does_not_stop_the_others() -> None:
    """A rollback that fails is rollback_failed; the earlier-added ones still run."""
    context = Context()
    orchestrator = RecoveryOrchestrator(context)
    workflow = orchestrator.create_workflow()
    workflow.add_step(_boom).add_rollback(_log("first")).add_rollback(f"{M}:undo_returns")
    result = orchestrator.execute_workflow(workflow)
    assert result.outcome == "rollback_failed"
    assert result.outcome_of(f"{M}:undo_returns", kind="rollback") == "rollback_failed"
    assert result.outcome_of("first", kind="rollback") == "rolled_back"
    bad = result.results[1]
    assert bad.error == f"step 'recovery: {M}:undo_returns (rollback)' returned 3"


def test_failure_without_rollbacks_is_failed() -> None:
    """No rollbacks: the outcome is just failed."""
    orchestrator = RecoveryOrchestrator()
    workflow = orchestrator.create_workflow().add_step(_boom)
    result = orchestrator.execute_workflow(workflow)
    assert result.outcome == "failed"
    assert result.to_dict()["results"][0]["outcome"] == "failed"


def test_step_retry_uses_the_recipe_retry_keys(clock: FakeClock) -> None:
    """retry= takes a recipe retry block: waits and attempts match it."""
    orchestrator = RecoveryOrchestrator()
    workflow = orchestrator.create_workflow()
    workflow.add_step(
        f"{M}.flaky_connection",
        args={"name": "svc", "fail_times": 2},
        retry={"max_attempts": 3, "initial_delay": 2, "backoff_strategy": "fixed"},
    )
    result = orchestrator.execute_workflow(workflow)
    assert result.ok
    assert result.results[0].attempts == 3
    assert clock.sleeps == [2.0, 2.0]


@pytest.mark.parametrize("reference", [f"{M}:Undo", f"{M}.Undo"])
def test_string_references_resolve_like_recipe_code(reference: str) -> None:
    """'pkg.mod:Name' and 'pkg.mod.Name' both resolve, classes included."""
    context = Context()
    orchestrator = RecoveryOrchestrator(context)
    workflow = orchestrator.create_workflow().add_step(reference, args={"k": 1})
    assert orchestrator.execute_workflow(workflow).ok
    assert context.get("undone.by_class") == {"k": 1}


@pytest.mark.parametrize(
    ("reference", "error"),
    [
        ("nodots", InvalidReferenceError),
        ("bad ref:x", InvalidReferenceError),
        ("tests.recovery.missing_module.run", ScriptletImportError),
        (42, TypeError),
    ],
)
def test_bad_references_fail_when_added(reference: Any, error: type[Exception]) -> None:
    """A step that cannot be resolved is refused at add time, not at run time."""
    with pytest.raises(error):
        RecoveryOrchestrator().create_workflow().add_step(reference)


def test_invalid_retry_is_refused_like_yaml() -> None:
    """retry settings go through the same validation as a recipe's."""
    with pytest.raises(ResilienceConfigError, match=r"retry\.max_attempts: 0 is less"):
        RecoveryOrchestrator().create_workflow().add_rollback(_boom, retry={"max_attempts": 0})


def test_outcome_of_unknown_step_is_a_key_error() -> None:
    """Asking for a step the workflow does not have raises KeyError."""
    result = WorkflowResult("w", ())
    with pytest.raises(KeyError):
        result.outcome_of("nope")
    assert result.to_dict() == {"workflow": "w", "ok": True, "outcome": "succeeded", "results": []}


# ------------------------------------------------------------------ recovery recipes


@pytest.fixture
def examples(project: Project) -> Project:
    """The example recipes and their scriptlets, copied into the project folder."""
    for name in ("restart_service.yaml", "saga.yaml", "saga_steps.py"):
        shutil.copy(RECIPES / name, project.root / name)
    return project


def test_recovery_recipe_runs_with_the_failure_in_its_context(examples: Project) -> None:
    """The recipe runs through the host with the plugins; failure.* seeds its Context."""
    record = {"exception_type": "ValueError", "message": "card declined"}
    result = run_recovery_recipe(
        examples.root / "restart_service.yaml",
        pm=plugin_manager(),
        failure={"step": "charge", "error": record, "run_id": "r-1"},
    )
    assert result.ok
    assert result.outcome == "succeeded"
    assert result.report is not None
    assert result.report["status"] == "succeeded"
    assert result.context["failure.step"] == "charge"
    assert result.context["failure.error"] == record
    assert result.context["failure.run_id"] == "r-1"
    assert result.context["service.payments.diagnosis"] == {
        "failed_step": "charge",
        "error_type": "ValueError",
        "message": "card declined",
        "run_id": "r-1",
    }
    assert result.to_dict()["report"]["recipe"] == "restart_service"


def test_failing_recovery_recipe_is_failed(project: Project) -> None:
    """A recovery recipe whose step fails has outcome failed, with its report."""
    path = project.recipe(
        f"steps: [{{name: fix, module: {M}, function: fail_value}}]", name="fix.yaml"
    )
    result = run_recovery_recipe(Path(path), pm=plugin_manager(), failure={})
    assert result.outcome == "failed"
    assert result.report is not None
    assert result.report["steps"][0]["status"] == "failed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "file not found"),
        ("steps: [{name: x}]", "missing required key 'module'"),
    ],
)
def test_invalid_recovery_recipe_is_not_run(
    project: Project, text: str | None, message: str
) -> None:
    """A missing or invalid recovery recipe is reported as invalid, with the problem."""
    path = project.root / "fix.yaml"
    if text is not None:
        path.write_text(text)
    result = run_recovery_recipe(path, pm=plugin_manager(), failure={"step": "s"})
    assert result.outcome == "invalid"
    assert message in (result.error or "")
    assert result.report is None


def test_recovery_recipe_that_recovers_itself_stops_at_the_loop(project: Project) -> None:
    """A recovery recipe that (through recover:) would run itself again is refused inside."""
    path = project.recipe(
        f"""
        steps:
          - name: fix
            module: {M}
            function: fail_value
            error_handling:
              recover: fix.yaml
        """,
        name="fix.yaml",
    )
    result = run_recovery_recipe(Path(path), pm=plugin_manager(), failure={"step": "s"})
    assert result.outcome == "failed"
    assert result.report is not None
    inner = result.report["recovery"]["fix"]
    assert inner["outcome"] == "invalid"
    assert "already running as a recovery" in inner["error"]


def test_recover_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    """recover: names a file beside the recipe; missing files and folders are problems."""
    recipe = tmp_path / "main.yaml"
    (tmp_path / "fix.yaml").write_text("steps: []\n")
    (tmp_path / "folder.yaml").mkdir()
    assert recovery_recipe_path(recipe, "fix.yaml") == tmp_path / "fix.yaml"
    assert recover_problem(recipe, "fix.yaml") is None
    assert "not found" in (recover_problem(recipe, "nope.yaml") or "")
    assert "is not a file" in (recover_problem(recipe, "folder.yaml") or "")


def test_run_result_reports_its_fields() -> None:
    """to_dict gives recipe, outcome, error and the sub-run's report."""
    result = RecoveryRunResult("fix.yaml", "invalid", error="bad")
    assert not result.ok
    assert result.to_dict() == {
        "recipe": "fix.yaml",
        "outcome": "invalid",
        "error": "bad",
        "report": None,
    }


def test_recovery_recipe_that_cannot_start_has_failed(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recovery run whose state store is unreachable reports failed, with why."""
    path = project.recipe(
        f"""
        steps:
          - name: fix
            module: {M}
            function: ok
        """,
        name="fix.yaml",
    )
    result = run_recovery_recipe(
        Path(path),
        pm=plugin_manager(),
        failure={"step": "s"},
        options={"state": "redis://127.0.0.1:1/0"},
    )
    assert result.outcome == "failed"
    assert "127.0.0.1:1" in (result.error or "")
