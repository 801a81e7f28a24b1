"""The chain end to end: recipes with error_handling blocks, run through the CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from framework0_errors.testing import FakeClock

from ..conftest import CliResult, Project
from . import scriptlets

M = "tests.chain.scriptlets"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    scriptlets.RELEASE.clear()
    scriptlets.ACTIVE.update(now=0, max=0)
    yield
    scriptlets.RELEASE.set()


def _run(
    run_cli: Callable[..., CliResult], path: str, *extra: str
) -> tuple[CliResult, dict[str, Any], dict[str, Any]]:
    folder = Path(path).parent
    result = run_cli(
        "run",
        path,
        "--context-out",
        str(folder / "ctx.json"),
        "--report",
        str(folder / "report.json"),
        *extra,
    )
    ctx = json.loads((folder / "ctx.json").read_text()) if (folder / "ctx.json").exists() else {}
    report = (
        json.loads((folder / "report.json").read_text())
        if (folder / "report.json").exists()
        else {}
    )
    return result, ctx, report


def test_brief_example_falls_back_after_three_tries(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """The brief's block: 3 tries with exponential waits, then the fallback; the recipe succeeds."""
    example = Path(__file__).parents[2] / "recipes" / "brief_example.yaml"
    path = project.recipe(example.read_text())
    (project.root / "business_logic").symlink_to(example.parent / "business_logic")
    result, out, report = _run(run_cli, path)
    assert result.code == 0, result
    ctx = out["context"]
    assert ctx["demo.calls.data_processing"] == 3
    assert clock.sleeps == [1.0, 2.0]
    assert ctx["processed_data"]["source"] == "cache"
    assert ctx["recovery.data_processing"]["outcome"] == "fallback"
    assert [r["attempt"] for r in ctx["errors.data_processing"]] == [1, 2, 3]
    assert "fallback business_logic.data_processor_fallback after 3 attempts" in result.out
    assert report["steps"][0]["outcome"] == "fallback"


def test_retry_counts_and_secrets(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """Fails twice then succeeds: 3 calls, 2 records, no secret anywhere in the outputs."""
    path = project.recipe(
        f"""
        steps:
          - name: fetch
            module: {M}
            function: flaky
            args: {{name: fetch, fail_times: 2, password: hunter2-secret}}
            error_handling:
              retry: {{max_attempts: 3, initial_delay: 0.5}}
        """
    )
    result, out, _report = _run(run_cli, path)
    assert result.code == 0, result
    ctx = out["context"]
    assert ctx["calls.fetch"] == 3
    records = ctx["errors.fetch"]
    assert [r["attempt"] for r in records] == [1, 2]
    assert all(r["category"] == "NETWORK" and r["fingerprint"] for r in records)
    assert records[0]["fingerprint"] == records[1]["fingerprint"]
    assert ctx["recovery.fetch"] == {
        "attempts": 3,
        "outcome": "recovered",
        "strategy": "retry",
        "duration": ctx["recovery.fetch"]["duration"],
        "error_type": None,
    }
    assert "recovered after 3 attempts" in result.out
    assert clock.sleeps == [0.5, 1.0]
    for name in ("ctx.json", "report.json"):
        assert "hunter2-secret" not in (project.root / name).read_text()


def test_error_not_in_retry_on_is_tried_once(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A ValueError not in retry_on fails at the first attempt, with exit 1."""
    path = project.recipe(
        f"""
        steps:
          - name: fetch
            module: {M}
            function: flaky
            args: {{name: fetch, error: ValueError, password: s3cr3t-value}}
            error_handling:
              retry: {{max_attempts: 3, retry_on: [ConnectionError]}}
        """
    )
    result, out, report = _run(run_cli, path)
    assert result.code == 1
    assert out["context"]["calls.fetch"] == 1
    assert clock.sleeps == []
    assert out["context"]["recovery.fetch"]["outcome"] == "failed"
    assert "s3cr3t-value" not in result.out
    assert "s3cr3t-value" not in json.dumps(report)


def test_shared_breaker_short_circuits_third_step(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """Three steps share a breaker with threshold 2: the third is not called."""
    steps = "".join(
        f"""
          - name: s{i}
            module: {M}
            function: dead
            args: {{name: s{i}}}
            error_handling:
              circuit_breaker: {{name: payments, failure_threshold: 2, recovery_timeout: 60}}
              on_failure: continue
        """
        for i in range(3)
    )
    result, out, report = _run(run_cli, project.recipe("steps:" + steps))
    assert result.code == 1
    ctx = out["context"]
    assert ctx["calls.s0"] == 1
    assert ctx["calls.s1"] == 1
    assert "calls.s2" not in ctx
    assert "short-circuited (breaker payments open)" in result.out
    assert ctx["circuit_breakers.payments"]["state"] == "open"
    assert report["circuit_breakers"]["payments"]["consecutive_failures"] == 2
    assert ctx["errors.s2"][0]["exception_type"] == "framework0_errors.CircuitOpenError"


def test_timeout_fences_late_writes(run_cli: Callable[..., CliResult], project: Project) -> None:
    """A stuck attempt times out, the fallback value lands, and its late write does not."""
    path = project.recipe(
        f"""
        steps:
          - name: slow
            module: {M}
            function: stuck
            args: {{name: slow}}
            error_handling:
              timeout: {{seconds: 0.2}}
              fallback: {{value: {{report: cached}}}}
        """
    )
    result, out, _report = _run(run_cli, path)
    assert result.code == 0, result
    ctx = out["context"]
    assert ctx["report"] == "cached"
    assert ctx["recovery.slow"]["outcome"] == "fallback"
    assert "timed out after 0.2s" in result.out
    assert ctx["errors.slow"][0]["exception_type"] == "framework0_errors.StepTimeoutError"
    assert "late" not in ctx


def test_late_write_is_recorded_as_discarded(project: Project) -> None:
    """The abandoned attempt's write after its timeout is refused and listed."""
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    path = project.recipe(
        f"""
        steps:
          - name: slow
            module: {M}
            function: stuck
            args: {{name: slow}}
            error_handling:
              timeout: {{seconds: 0.1}}
              fallback: {{value: {{report: cached}}}}
        """
    )
    pm = plugin_manager()
    result = execute(load_checked_recipe(path, pm), hook=pm.hook)
    assert result.succeeded
    done = threading.Event()
    original = result.run.context._discard_locked

    def spy(*args: Any) -> None:
        original(*args)
        done.set()

    result.run.context._discard_locked = spy  # type: ignore[method-assign]
    scriptlets.RELEASE.set()
    assert done.wait(10)
    (discarded,) = result.run.context.discarded()
    assert discarded.key == "late"
    assert "timed out after 0.1s" in discarded.reason
    assert "late" not in result.run.context


def test_bulkhead_serialises_parallel_steps(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """Four steps sharing a bulkhead of 1 under 4 workers never overlap."""
    steps = "".join(
        f"""
          - name: w{i}
            module: {M}
            function: exclusive
            error_handling:
              bulkhead: {{name: db, max_concurrent: 1, max_wait: 30}}
        """
        for i in range(4)
    )
    result, _out, _report = _run(run_cli, project.recipe("steps:" + steps), "--workers", "4")
    assert result.code == 0, result
    assert scriptlets.ACTIVE["max"] == 1


def test_logged_error_is_detected_on_success(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A step that logs an error and returns 0 succeeds with a detected error record."""
    path = project.recipe(
        f"""
        steps:
          - name: etl
            module: {M}
            function: logs_error
        """
    )
    result, out, _report = _run(run_cli, path)
    assert result.code == 0
    (record,) = out["context"]["errors.etl"]
    assert record["detected"] is True
    assert record["message"] == "partial data: 3 rows skipped"
    assert record["logger"] == "acme.etl"


def test_recipe_rule_overrides_builtin(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A classification rule on the message makes a ConnectionError permanent BUSINESS."""
    path = project.recipe(
        f"""
        error_handling:
          classification:
            - match: {{message: "quota exceeded"}}
              category: BUSINESS
              transient: false
        steps:
          - name: q
            module: {M}
            function: quota
            args: {{name: q}}
            error_handling:
              retry: {{max_attempts: 3}}
        """
    )
    result, out, _report = _run(run_cli, path)
    assert result.code == 1
    ctx = out["context"]
    assert ctx["calls.q"] == 1
    assert ctx["errors.q"][0]["category"] == "BUSINESS"
    assert ctx["errors.q"][0]["transient"] is False


def test_failure_of_a_bare_step_is_recorded(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A step without error handling still gets its error record, once."""
    path = project.recipe(
        f"""
        steps:
          - name: bare
            module: {M}
            function: dead
            args: {{name: bare}}
        """
    )
    result, out, _report = _run(run_cli, path)
    assert result.code == 1
    (record,) = out["context"]["errors.bare"]
    assert record["category"] == "NETWORK"
    assert "recovery.bare" not in out["context"]
