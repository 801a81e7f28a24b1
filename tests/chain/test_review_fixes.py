"""Guarantees a review found missing: slots of abandoned attempts, copies, secrets, failures."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from framework0_errors.orchestrator import Context, execute, hookimpl, load_recipe, plugin_manager
from framework0_errors.stores.select import MemoryStateStore, StoreUnavailableError

from ..conftest import CliResult, Project
from . import scriptlets

M = "tests.chain.scriptlets"


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    scriptlets.RELEASE.clear()
    yield
    scriptlets.RELEASE.set()


def test_abandoned_attempt_keeps_its_bulkhead_slot(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A timed-out attempt still running holds its slot: the next step is refused one."""
    block = """    error_handling:
      bulkhead: {name: db, max_concurrent: 1, max_wait: 0}
      timeout: {seconds: 0.1}
      fallback: {value: {%s: fallback}}
"""
    text = f"""
steps:
  - name: first
    module: {M}
    function: stuck
    args: {{name: first}}
{block % "first_result"}
  - name: second
    module: {M}
    function: plain_ok
    depends_on: [first]
{block % "second_result"}"""
    result = run_cli("run", project.recipe(text), "--context-out", "ctx.json")
    assert result.code == 0, result
    assert "rejected (bulkhead db full)" in result.out
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    assert ctx["second_result"] == "fallback"


def test_values_from_get_are_copies() -> None:
    """Changing what get() returned does not change the Context behind set()'s back."""
    ctx = Context({"data": {"n": [1]}, "a.b": {"c": 1}})
    ctx.get("data")["n"].append(2)
    ctx.get("a")["b"]["c"] = 99
    assert ctx.get("data") == {"n": [1]}
    assert ctx.get("a.b") == {"c": 1}
    assert len(ctx.history()) == 2


def test_secrets_of_bare_steps_and_fallbacks_are_masked(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A step without a block, and a fallback's own args: no secret in any output."""
    text = f"""
error_handling: {{on_failure: continue}}
steps:
  - name: bare
    module: {M}
    function: flaky
    args: {{name: bare, fail_times: 9, password: bare-secret-1}}
  - name: guarded
    module: {M}
    function: dead
    args: {{name: guarded}}
    error_handling:
      fallback:
        scriptlet: "{M}:fallback_leaks"
        args: {{api_key: fallback-secret-2}}
"""
    result = run_cli(
        "run", project.recipe(text), "--context-out", "ctx.json", "--report", "report.json"
    )
    assert result.code == 1
    outputs = result.out + (project.root / "ctx.json").read_text()
    outputs += (project.root / "report.json").read_text()
    assert "bare-secret-1" not in outputs
    assert "fallback-secret-2" not in outputs
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    assert [r["exception_type"] for r in ctx["errors.guarded"]] == [
        "ConnectionError",
        "RuntimeError",
    ]


class Broken:
    """A plugin whose observer fails."""

    @hookimpl
    def framework0_step_end(self) -> None:
        raise RuntimeError("observer crashed")


def test_failing_observer_becomes_a_warning(project: Project) -> None:
    """A plugin hook that raises does not lose the run; the report says what failed."""
    project.module("m", "def ok(context, args):\n    context.set('done', True)\n")
    recipe = load_recipe(project.recipe("steps:\n  - name: a\n    module: m\n    function: ok\n"))
    pm = plugin_manager(plugins=[Broken()], disabled=["error_handling"])
    result = execute(recipe, hook=pm.hook)
    assert result.succeeded
    assert result.report["warnings"] == [
        "framework0_step_end failed: RuntimeError: observer crashed"
    ]


def test_store_that_stops_answering_is_a_warning(
    run_cli: Callable[..., CliResult], project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints to a store that went away: the run finishes, with one warning."""

    def gone(self: Any, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailableError("connection reset by 127.0.0.1:6379")

    monkeypatch.setattr(MemoryStateStore, "save_checkpoint", gone)
    monkeypatch.setattr(MemoryStateStore, "append_error", gone)
    text = f"""
error_handling: {{on_failure: continue}}
steps:
  - name: a
    module: {M}
    function: dead
    args: {{name: a}}
  - name: b
    module: {M}
    function: plain_ok
"""
    result = run_cli("run", project.recipe(text), "--state", "memory:", "--report", "r.json")
    assert result.code == 1
    assert "ok       b" in result.out
    report = json.loads((project.root / "r.json").read_text())
    (warning,) = report["warnings"]
    assert "state store stopped answering" in warning
    assert "state store stopped answering" in result.err
