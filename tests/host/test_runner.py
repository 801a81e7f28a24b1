"""Running recipes: scriptlet shapes, failures, dependencies, workers, hooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from framework0_errors.orchestrator import (
    Context,
    Invocation,
    Next,
    StepMiddleware,
    execute,
    hookimpl,
    load_recipe,
    plugin_manager,
)

from ..conftest import CliResult, Project

pytestmark = pytest.mark.usefixtures("host_only")

STEPS = """
import threading, time

class Framework0Style:
    def __init__(self, context=None):
        self.context = context

    def run(self, context, args):
        context.set("greeting", "hello " + args["who"])
        return 0

def plain(context, args):
    context.set("plain", True)

def returns_three(context, args):
    return 3

def returns_text(context, args):
    return "ok"

def raises(context, args):
    raise ValueError("bad input row 7")

def forgets(context, args):
    return 0

def exits(context, args):
    raise SystemExit(4)

BARRIER = threading.Barrier(4, timeout=10)

def together(context, args):
    BARRIER.wait()
    context.set("met." + args["n"], True)

def sleepy(context, args):
    time.sleep(float(args.get("seconds", 0.3)))
"""


def _recipe(project: Project, body: str) -> str:
    project.module("steps_mod", STEPS)
    return project.recipe("steps:\n" + body)


def _step(name: str, function: str, extra: str = "") -> str:
    return f"  - name: {name}\n    module: steps_mod\n    function: {function}\n{extra}"


def test_framework0_recipe_runs_unchanged(
    project: Project, run_cli: Callable[..., CliResult]
) -> None:
    """test_meta, idx, type: python, a class scriptlet, args and ctx_has_keys all work."""
    project.module("steps_mod", STEPS)
    path = project.recipe(
        """
        test_meta:
          test_id: F0-001
          tester: ops
        steps:
          - idx: 2
            name: plain_step
            type: python
            module: steps_mod
            function: plain
          - idx: 1
            name: greet
            type: python
            module: steps_mod
            function: Framework0Style
            args:
              who: world
            success:
              ctx_has_keys: [greeting]
        """
    )
    result = run_cli("run", path, "--context-out", "ctx.json", "--report", "report.json")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[1].split()[:2] == ["ok", "greet"]
    assert lines[2].split()[:2] == ["ok", "plain_step"]
    assert "succeeded (2 succeeded, 0 failed, 0 skipped)" in lines[-1]
    out = json.loads((project.root / "ctx.json").read_text())
    assert out["context"] == {"greeting": "hello world", "plain": True}
    assert [(c["key"], c["who"]) for c in out["history"]] == [
        ("greeting", "greet"),
        ("plain", "plain_step"),
    ]
    report = json.loads((project.root / "report.json").read_text())
    assert report["run_id"] == out["run_id"]
    assert [s["name"] for s in report["steps"]] == ["greet", "plain_step"]
    assert all(s["status"] == "succeeded" for s in report["steps"])
    assert set(report["steps"][0]) >= {"start", "end", "duration", "error"}


@pytest.mark.parametrize(
    ("function", "words"),
    [
        ("returns_three", "step 'a' returned 3"),
        ("returns_text", "returned 'ok' (expected an int, 0 for success)"),
        ("raises", "ValueError: bad input row 7"),
        ("exits", "called sys.exit(4)"),
    ],
)
def test_failures_give_exit_1(
    project: Project, run_cli: Callable[..., CliResult], function: str, words: str
) -> None:
    """A non-zero return, an exception or sys.exit fails the step with its reason."""
    path = _recipe(project, _step("a", function))
    result = run_cli("run", path, "--report", "r.json")
    assert result.code == 1
    assert "FAILED" in result.out
    assert words in result.out
    report = json.loads((project.root / "r.json").read_text())
    assert report["status"] == "failed"
    assert words in report["steps"][0]["error"]


def test_missing_success_keys_fail(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """A step that does not set its ctx_has_keys fails, naming the keys."""
    path = _recipe(project, _step("a", "forgets", "    success:\n      ctx_has_keys: [x, y]\n"))
    result = run_cli("run", path)
    assert result.code == 1
    assert "did not set required context key(s): x, y" in result.out


def test_dependents_skipped_independent_go_on(
    project: Project, run_cli: Callable[..., CliResult]
) -> None:
    """A failure skips its dependents (saying why) while independent steps still run."""
    body = (
        _step("bad", "raises")
        + _step("child", "plain", "    depends_on: bad\n")
        + _step("grandchild", "plain", "    depends_on: [child]\n")
        + _step("other", "plain")
    )
    result = run_cli("run", _recipe(project, body))
    assert result.code == 1
    out = result.out
    assert "skipped  child" in out
    assert "depends on 'bad', which failed" in out
    assert "depends on 'child', which was skipped" in out
    assert "ok       other" in out
    assert "(1 succeeded, 1 failed, 2 skipped)" in out


def test_workers_run_independent_steps_together(project: Project) -> None:
    """With 4 workers, 4 independent steps meet at a barrier only concurrency can pass."""
    body = "".join(_step(f"s{n}", "together", f"    args: {{n: '{n}'}}\n") for n in range(4))
    recipe = load_recipe(_recipe(project, body))
    result = execute(recipe, hook=plugin_manager().hook, workers=4)
    assert result.succeeded
    assert result.run.context.get("met") == {str(n): True for n in range(4)}


def test_workers_respect_dependencies(project: Project) -> None:
    """Under workers, a step starts only after everything it depends on succeeded."""
    body = (
        _step("a", "plain")
        + _step("b", "Framework0Style", "    depends_on: [a]\n    args: {who: b}\n")
        + _step("c", "raises", "    depends_on: [a]\n")
        + _step("d", "plain", "    depends_on: [b, c]\n")
    )
    recipe = load_recipe(_recipe(project, body))
    result = execute(recipe, hook=plugin_manager().hook, workers=3)
    statuses = {n: r.status for n, r in result.results.items()}
    assert statuses == {"a": "succeeded", "b": "succeeded", "c": "failed", "d": "skipped"}
    changes = [c.who for c in result.run.context.history()]
    assert changes.index("a") < changes.index("b")


def test_workers_must_be_positive(project: Project) -> None:
    """execute() refuses fewer than one worker."""
    recipe = load_recipe(_recipe(project, _step("a", "plain")))
    with pytest.raises(ValueError, match="at least 1"):
        execute(recipe, hook=plugin_manager().hook, workers=0)


class Recorder:
    """A plugin that wraps every step and records what it observes."""

    def __init__(self, policy: str | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.policy = policy

    @hookimpl
    def framework0_step_middleware(self, step: Any) -> list[StepMiddleware]:
        def twice(invocation: Invocation, call_next: Next) -> None:
            self.events.append(("before", step.name))
            try:
                call_next(invocation)
            except ValueError:
                invocation.notes["detail"] = "swallowed"
                invocation.run.report_step_error(
                    invocation, ValueError(), attempt=1, record={"seen": True}
                )
                raise

        def outer(invocation: Invocation, call_next: Next) -> None:
            self.events.append(("outer", step.name))
            call_next(invocation)

        return [StepMiddleware("inner", twice, order=200), StepMiddleware("outer", outer, 10)]

    @hookimpl
    def framework0_run_start(self, run: Any) -> None:
        self.events.append(("run_start", run.recipe.name))

    @hookimpl
    def framework0_step_start(self, step: Any) -> None:
        self.events.append(("start", step.name))

    @hookimpl
    def framework0_step_end(self, result: Any) -> None:
        self.events.append(("end", (result.name, result.status)))

    @hookimpl
    def framework0_step_error(self, step: Any, attempt: int, record: Any) -> None:
        self.events.append(("error", (step.name, attempt, record)))

    @hookimpl
    def framework0_failure_policy(self) -> str | None:
        return self.policy

    @hookimpl
    def framework0_run_end(self, report: dict[str, Any]) -> None:
        report["recorder"] = len(self.events)


def test_middleware_order_and_events(project: Project) -> None:
    """Middleware run outer-to-inner by order; every hook sees the run."""
    recorder = Recorder()
    recipe = load_recipe(_recipe(project, _step("a", "plain") + _step("b", "raises")))
    result = execute(recipe, hook=plugin_manager(plugins=[recorder]).hook)
    assert recorder.events == [
        ("run_start", "recipe"),
        ("start", "a"),
        ("outer", "a"),
        ("before", "a"),
        ("end", ("a", "succeeded")),
        ("start", "b"),
        ("outer", "b"),
        ("before", "b"),
        ("error", ("b", 1, {"seen": True})),
        ("end", ("b", "failed")),
    ]
    assert result.results["b"].detail == "swallowed"
    assert result.report["recorder"] == len(recorder.events)


def test_host_reports_final_error_without_plugins(project: Project) -> None:
    """Without a recording plugin the host emits step_error once, with no record."""
    seen: list[Any] = []

    class Observer:
        @hookimpl
        def framework0_step_error(self, step: Any, error: BaseException, record: Any) -> None:
            seen.append((step.name, type(error).__name__, record))

    recipe = load_recipe(_recipe(project, _step("a", "raises")))
    execute(recipe, hook=plugin_manager(plugins=[Observer()]).hook)
    assert seen == [("a", "ValueError", None)]


@pytest.mark.parametrize("workers", [1, 2])
def test_stop_policy_starts_nothing_new(project: Project, workers: int) -> None:
    """A 'stop' failure policy leaves steps not yet started unrun, saying why."""
    body = _step("bad", "raises", "    idx: 1\n") + _step("later", "plain", "    idx: 2\n")
    recipe = load_recipe(_recipe(project, body))
    pm = plugin_manager(plugins=[Recorder(policy="stop")])
    result = execute(recipe, hook=pm.hook, workers=workers)
    later = result.results["later"]
    if workers == 1:
        assert later.status == "skipped"
        assert later.reason == "not run: the recipe stopped because step 'bad' failed"
    assert result.results["bad"].status == "failed"
    assert not result.succeeded


def test_context_passed_in_is_used(project: Project) -> None:
    """A Context given to execute() is the one steps write to."""
    ctx = Context({"seed": 1})
    recipe = load_recipe(_recipe(project, _step("a", "plain")))
    result = execute(recipe, hook=plugin_manager().hook, context=ctx)
    assert result.run.context is ctx
    assert ctx.get("plain") is True
    result.run.request_stop("first")
    result.run.request_stop("second")
    assert result.run.stop_reason == "first"
