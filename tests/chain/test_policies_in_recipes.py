"""More chain behaviour: on_failure, fallback filters and failures, use/defaults, explain."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from framework0_errors.chain import _detail
from framework0_errors.config.models import FallbackConfig
from framework0_errors.policies import BulkheadFullError, CircuitOpenError, StepTimeoutError
from framework0_errors.testing import FakeClock

from ..conftest import CliResult, Project
from . import scriptlets

M = "tests.chain.scriptlets"


def _ctx(project: Project) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project.root / "ctx.json").read_text())["context"]
    return data


def _dead_step(name: str, extra: str = "", function: str = "dead") -> str:
    return f"""
  - name: {name}
    module: {M}
    function: {function}
    args: {{name: {name}}}
{extra}"""


@pytest.mark.parametrize(("policy", "ran"), [("fail", False), ("continue", True)])
def test_on_failure_fail_stops_continue_goes_on(
    run_cli: Callable[..., CliResult], project: Project, policy: str, ran: bool
) -> None:
    """on_failure: fail starts no new step; continue lets independent steps run."""
    text = (
        f"error_handling:\n  on_failure: {policy}\nsteps:"
        + _dead_step("first")
        + _dead_step("second", function="flaky")
    )
    result = run_cli("run", project.recipe(text), "--context-out", "ctx.json")
    assert result.code == 1
    assert ("calls.second" in _ctx(project)) is ran
    if not ran:
        assert "not run: the recipe stopped because step 'first' failed" in result.out


def test_step_on_failure_overrides_recipe(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A step's own on_failure wins over the recipe's."""
    text = (
        "error_handling:\n  on_failure: fail\nsteps:"
        + _dead_step("first", "    error_handling:\n      on_failure: continue\n")
        + _dead_step("second", function="flaky")
    )
    run_cli("run", project.recipe(text), "--context-out", "ctx.json")
    assert _ctx(project)["calls.second"] == 1


def test_failed_fallback_chains_both_errors(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """When the fallback fails too, the step fails with both errors chained."""
    block = f"""    error_handling:
      fallback:
        scriptlet: {M}:fallback_broken
"""
    result = run_cli("run", project.recipe("steps:" + _dead_step("s", block)), "--report", "r.json")
    assert result.code == 1
    step = json.loads((project.root / "r.json").read_text())["steps"][0]
    assert step["error_type"] == "framework0_errors.FallbackFailedError"
    assert "connection refused" in step["error"]
    assert "cache is empty too" in step["error"]


def test_fallback_on_filters_errors(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """fallback.on limits which errors reach the fallback."""
    block = f"""    error_handling:
      fallback:
        scriptlet: {{module: {M}, function: fallback_ok}}
        args: {{why: x}}
        on: [ValueError]
"""
    result = run_cli("run", project.recipe("steps:" + _dead_step("s", block)))
    assert result.code == 1
    block = block.replace("[ValueError]", "[category:NETWORK]")
    (project.root / "recipe.yaml").unlink()
    path = project.recipe("steps:" + _dead_step("s", block))
    result = run_cli("run", path, "--context-out", "ctx.json")
    assert result.code == 0
    assert _ctx(project)["result"] == {"from": "fallback", "why": "x"}


def test_fallback_must_satisfy_success_keys(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A fallback that does not set ctx_has_keys fails the step."""
    block = """    error_handling:
      fallback: {value: {other: 1}}
    success: {ctx_has_keys: [needed]}
"""
    result = run_cli("run", project.recipe("steps:" + _dead_step("s", block)))
    assert result.code == 1
    assert "did not set required context key(s): needed" in result.out


def test_defaults_and_use_policies(
    clock: FakeClock, run_cli: Callable[..., CliResult], project: Project
) -> None:
    """Recipe defaults and a use: policy shape the effective retry; explain shows it."""
    text = f"""
error_handling:
  defaults:
    retry: {{max_attempts: 2, initial_delay: 0.1}}
  policies:
    patient:
      retry: {{max_attempts: 4, backoff_strategy: fixed}}
steps:
  - name: a
    module: {M}
    function: flaky
    args: {{name: a, fail_times: 3}}
    error_handling:
      use: patient
      timeout: {{seconds: 5}}
  - name: b
    module: {M}
    function: flaky
    args: {{name: b, fail_times: 0}}
"""
    path = project.recipe(text)
    result = run_cli("run", path, "--context-out", "ctx.json")
    assert result.code == 0, result
    assert _ctx(project)["calls.a"] == 4
    assert clock.sleeps == [0.1, 0.1, 0.1]
    explained = run_cli("explain", path)
    assert explained.code == 0
    assert (
        "a: retry(4 attempts, fixed 0.1s, on transient errors) → timeout(5s) → step; "
        "worst case 20.3s" in explained.out
    )
    assert "b: retry(2 attempts, exponential 0.1s×2 ≤60s, on transient errors) → step" in (
        explained.out
    )


def test_explain_every_policy(run_cli: Callable[..., CliResult], project: Project) -> None:
    """explain names every policy with its settings and the worst case."""
    text = f"""
steps:
  - name: fetch
    module: {M}
    function: flaky
    args: {{name: fetch}}
    error_handling:
      fallback: {{scriptlet: "{M}:fallback_ok", on: [category:NETWORK]}}
      retry:
        max_attempts: 3
        initial_delay: 1
        max_delay: 30
        jitter: full
        retry_on: [category:NETWORK]
        give_up_on: [PermissionError]
        deadline: 10
      circuit_breaker: {{name: payments, half_open_max_calls: 2}}
      bulkhead: {{max_concurrent: 2, max_wait: 1}}
      timeout: {{seconds: 5}}
      on_failure: continue
      rollback: {{scriptlet: "{M}:fallback_ok"}}
  - name: lin
    module: {M}
    function: flaky
    error_handling:
      retry: {{backoff_strategy: linear}}
      fallback: {{value: {{b: 1, a: 2}}}}
"""
    explained = run_cli("explain", project.recipe(text))
    assert explained.code == 0, explained
    line = next(x for x in explained.out.splitlines() if x.startswith("fetch:"))
    assert line == (
        f"fetch: fallback({M}:fallback_ok on category:NETWORK) → retry(3 attempts, "
        "exponential 1s×2 ≤30s, full jitter, on category:NETWORK, never on PermissionError, "
        "deadline 10s) → circuit_breaker(payments: 5 failures, 60s, 2 trial calls) → "
        "bulkhead(fetch: 2 at once, wait ≤1s) → timeout(5s) → step; worst case 16s; "
        f"on_failure continue; rollback {M}:fallback_ok"
    )
    assert "lin: fallback(value: a, b) → retry(3 attempts, linear 1s·n ≤60s" in explained.out
    assert "worst case unbounded (no timeout)" in explained.out


@pytest.mark.parametrize(
    ("outcome", "attempts", "error", "expected"),
    [
        ("succeeded", 1, None, None),
        ("recovered", 2, None, "recovered after 2 attempts"),
        (
            "failed",
            1,
            CircuitOpenError("p", retry_at=1.0, retry_in=1.0),
            "short-circuited (breaker p open)",
        ),
        (
            "failed",
            1,
            BulkheadFullError("db", max_concurrent=1, waited=0.0),
            "rejected (bulkhead db full)",
        ),
        ("failed", 3, StepTimeoutError(2.0), "failed after 3 attempts; last: timed out after 2s"),
        ("failed", 1, ValueError("x"), None),
        ("failed", 2, ValueError("x"), "failed after 2 attempts"),
        ("fallback", 1, StepTimeoutError(2.0), "fallback (value): timed out after 2s"),
    ],
)
def test_details(
    outcome: str, attempts: int, error: BaseException | None, expected: str | None
) -> None:
    """The step line's detail says how the chain ended."""
    fallback = FallbackConfig(value={"a": 1}) if outcome == "fallback" else None
    assert _detail(outcome, attempts, error, fallback) == expected


def test_bulkhead_full_without_wait(run_cli: Callable[..., CliResult], project: Project) -> None:
    """With max_wait 0, the second of two concurrent steps is rejected and falls back."""
    scriptlets.HOLD.clear()
    steps = "".join(
        f"""
  - name: w{i}
    module: {M}
    function: hold
    error_handling:
      bulkhead: {{name: one, max_concurrent: 1, max_wait: 0}}
      fallback: {{scriptlet: "{M}:release_holder", args: {{n: w{i}}}}}
"""
        for i in range(2)
    )
    path = project.recipe("steps:" + steps)
    result = run_cli("run", path, "--workers", "2", "--context-out", "ctx.json")
    assert result.code == 0, result
    assert len([k for k in _ctx(project) if k.startswith("rejected.")]) == 1
    assert "rejected (bulkhead one full)" in result.out
