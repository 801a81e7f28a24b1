"""Compensations on their own: registration, order, parallelism, failures, retries, report."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from framework0_errors.classify import Classifier
from framework0_errors.config import RollbackConfig
from framework0_errors.orchestrator import Context, Step
from framework0_errors.rollback import (
    Compensations,
    RollbackReport,
    apply_rollback_outcome,
    rollback_order,
)
from framework0_errors.testing import FakeClock, Timing, fake_time, timing

from . import scriptlets

M = "tests.recovery.scriptlets"
CLASSIFY = Classifier().classify


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    scriptlets.CALLS.clear()
    yield
    scriptlets.CALLS.clear()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Retries of compensations wait on this clock, instantly."""
    with fake_time() as fake:
        yield fake


def _step(name: str, *, function: str = "ok", args: Mapping[str, Any] | None = None) -> Step:
    return Step(
        name=name,
        idx=0,
        position=0,
        module=M,
        function=function,
        args=dict(args or {"name": name}),
        depends_on=(),
        ctx_has_keys=(),
        raw={},
    )


def _undo(scriptlet: Any, **extra: Any) -> RollbackConfig:
    return RollbackConfig.model_validate({"scriptlet": scriptlet, **extra})


def _ticking() -> Timing:
    """A wall clock that moves one second per reading: every stamp is distinct and ordered."""
    ticks = itertools.count(1)
    lock = threading.Lock()

    def wall() -> float:
        with lock:
            return float(next(ticks))

    return Timing(wall, wall, timing().sleep)


def _run(
    comp: Compensations,
    dependents: Mapping[str, Sequence[str]],
    *,
    workers: int = 1,
    context: Context | None = None,
    clocks: Timing | None = None,
    **extra: Any,
) -> RollbackReport:
    return comp.run(
        context=context or Context(),
        workers=workers,
        timing=clocks or _ticking(),
        classify=CLASSIFY,
        dependents=dependents,
        **extra,
    )


def _by_step(report: RollbackReport) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in report.to_dict()["steps"]}


def test_nothing_registered_runs_nothing() -> None:
    """With no compensation, has_any is False and the report is empty and ok."""
    comp = Compensations()
    assert not comp.has_any()
    report = _run(comp, {})
    assert report.ok
    assert report.to_dict() == {
        "ok": True,
        "outcome": "rolled_back",
        "started": None,
        "ended": None,
        "steps": [],
    }


def test_chain_is_undone_newest_first(tmp_path: Any) -> None:
    """a → b → c are compensated c, b, a, each once; ones that ran are forgotten."""
    comp = Compensations()
    marker = tmp_path / "undo.jsonl"
    for name in ("a", "b", "c"):
        comp.register(_step(name), _undo(f"{M}:mark", args={"name": name, "file": str(marker)}))
    assert comp.has_any()
    dependents = {"a": ["b"], "b": ["c"], "c": []}
    report = _run(comp, dependents)
    assert [json.loads(x)["name"] for x in marker.read_text().splitlines()] == ["c", "b", "a"]
    assert [s.step for s in report.steps] == ["c", "b", "a"]
    assert report.ok
    assert report.outcome == "rolled_back"
    assert not comp.has_any()
    assert _run(comp, dependents).steps == ()


def test_compensation_writes_to_the_context_as_the_rollback() -> None:
    """Compensation code gets a view that attributes its writes to '<step> (rollback)'."""
    comp = Compensations()
    comp.register(_step("reserve"), _undo(f"{M}:ok", args={"name": "reserve"}))
    context = Context()
    _run(comp, {}, context=context)
    assert context.get("done.reserve") is True
    assert [c.who for c in context.history()] == ["reserve (rollback)"]


def test_diamond_compensates_both_branches_in_parallel_before_the_root() -> None:
    """a → (b, c) → d: b and c are undone at the same time (a barrier proves it), a after both."""
    barrier = threading.Barrier(2, timeout=5)
    seen: list[str] = []

    def meet(context: Any, args: Mapping[str, Any]) -> int:
        barrier.wait()  # only returns when the other branch is running too
        seen.append(args["name"])
        return 0

    scriptlets.meet = meet  # type: ignore[attr-defined]
    try:
        comp = Compensations()
        comp.register(_step("a"), _undo(f"{M}:ok", args={"name": "a"}))
        comp.register(_step("b"), _undo(f"{M}:meet", args={"name": "b"}))
        comp.register(_step("c"), _undo(f"{M}:meet", args={"name": "c"}))
        report = _run(comp, {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, workers=2)
    finally:
        del scriptlets.meet  # type: ignore[attr-defined]
    steps = _by_step(report)
    assert sorted(seen) == ["b", "c"]
    assert all(s["status"] == "compensated" for s in steps.values())
    assert steps["a"]["start"] > max(steps["b"]["end"], steps["c"]["end"])
    assert report.steps[-1].step == "a"


def test_on_start_and_on_result_hear_of_each_compensation_as_it_starts_and_ends() -> None:
    """a → b: b starts and ends, then a starts and ends; each is told as it happens."""
    comp = Compensations()
    comp.register(_step("a"), _undo(f"{M}:ok", args={"name": "a"}))
    comp.register(_step("b"), _undo(f"{M}:undo_raises", args={"name": "b"}))
    heard: list[tuple[str, str]] = []
    report = _run(
        comp,
        {"a": ["b"], "b": []},
        on_start=lambda name: heard.append((name, "starting")),
        on_result=lambda r: heard.append((r.step, r.status)),
    )
    assert heard == [("b", "starting"), ("b", "failed"), ("a", "starting"), ("a", "compensated")]
    heard = [h for h in heard if h[1] != "starting"]
    assert [(r.step, r.status) for r in report.steps] == heard


def test_an_interrupt_while_a_result_is_told_tells_it_once() -> None:
    """Ctrl-C inside on_result: the result is not told again on the way out."""
    comp = Compensations()
    comp.register(_step("a"), _undo(f"{M}:ok", args={"name": "a"}))
    comp.register(_step("b"), _undo(f"{M}:ok", args={"name": "b"}))
    heard: list[str] = []

    def interrupted(result: Any) -> None:
        heard.append(result.step)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(comp, {"a": ["b"], "b": []}, on_result=interrupted)
    assert heard == ["b"]


def test_an_interrupt_still_reports_the_compensations_that_ended_while_it_waited() -> None:
    """b is interrupted while c, in parallel, is still undoing: c's result is told, then Ctrl-C."""
    c_running = threading.Event()

    def interrupted(context: Any, args: Mapping[str, Any]) -> int:
        assert c_running.wait(5)
        raise KeyboardInterrupt  # as if Ctrl-C came while b was undone

    def slow(context: Any, args: Mapping[str, Any]) -> int:
        c_running.set()
        time.sleep(0.05)  # likely still running when the interrupt reaches the main thread
        return 0

    scriptlets.interrupted = interrupted  # type: ignore[attr-defined]
    scriptlets.slow = slow  # type: ignore[attr-defined]
    heard: list[tuple[str, str]] = []
    try:
        comp = Compensations()
        comp.register(_step("a"), _undo(f"{M}:ok", args={"name": "a"}))
        comp.register(_step("b"), _undo(f"{M}:interrupted", args={"name": "b"}))
        comp.register(_step("c"), _undo(f"{M}:slow", args={"name": "c"}))
        with pytest.raises(KeyboardInterrupt):
            _run(
                comp,
                {"a": ["b", "c"], "b": [], "c": []},
                workers=2,
                on_result=lambda r: heard.append((r.step, r.status)),
            )
    finally:
        del scriptlets.interrupted, scriptlets.slow  # type: ignore[attr-defined]
    assert heard == [("c", "compensated")]  # a never started; b was cut short


@pytest.mark.parametrize(
    ("registered", "dependents", "expected"),
    [
        (["a", "b"], {"a": ["b"], "b": []}, {"a": {"b"}, "b": set()}),
        # x has no compensation, but c depends on a through it
        (["a", "c"], {"a": ["x"], "x": ["c"], "c": []}, {"a": {"c"}, "c": set()}),
        (["a", "b", "c"], {"a": ["b", "c"]}, {"a": {"b", "c"}, "b": set(), "c": set()}),
        (["solo"], {}, {"solo": set()}),
    ],
)
def test_rollback_order_follows_dependents_transitively(
    registered: list[str], dependents: dict[str, list[str]], expected: dict[str, set[str]]
) -> None:
    """A step waits for every registered step that depends on it, directly or not."""
    assert rollback_order(registered, dependents) == expected


def test_a_cycle_in_dependents_does_not_drop_compensations() -> None:
    """Dependents that loop (impossible in a valid recipe) still undo everything, newest first."""
    comp = Compensations()
    for name in ("a", "b", "c"):
        comp.register(_step(name), _undo(f"{M}:ok", args={"name": name}))
    report = _run(comp, {"a": ["b"], "b": ["a"], "c": []})
    assert [s.step for s in report.steps] == ["c", "b", "a"]


def test_failed_compensation_is_recorded_and_the_rest_still_run(tmp_path: Any) -> None:
    """b's undo raises: it is reported failed with its error; a (which b depended on) still runs."""
    comp = Compensations()
    marker = tmp_path / "undo.jsonl"
    comp.register(_step("a"), _undo(f"{M}:mark", args={"name": "a", "file": str(marker)}))
    comp.register(
        _step("b"), _undo(f"{M}:undo_raises", args={"name": "b", "api_key": "sk-live-123456"})
    )
    comp.register(_step("c"), _undo(f"{M}:undo_returns"))
    report = _run(comp, {"a": ["b", "c"], "b": [], "c": []})
    steps = _by_step(report)
    assert steps["b"]["status"] == "failed"
    assert steps["b"]["error"] == "RuntimeError: cannot undo b with key ***"
    assert steps["b"]["error_type"] == "RuntimeError"
    assert steps["c"]["error"] == "step 'c (rollback)' returned 3"
    assert steps["a"]["status"] == "compensated"
    assert marker.read_text().count('"a"') == 1
    assert not report.ok
    assert report.outcome == "rollback_failed"


def test_compensation_that_exits_is_a_failure() -> None:
    """sys.exit() inside a compensation is recorded as a failure, not the end of the run."""

    def leave(context: Any, args: Mapping[str, Any]) -> int:
        raise SystemExit(4)

    scriptlets.leave = leave  # type: ignore[attr-defined]
    try:
        comp = Compensations()
        comp.register(_step("a"), _undo(f"{M}:leave"))
        (result,) = _run(comp, {}).steps
    finally:
        del scriptlets.leave  # type: ignore[attr-defined]
    assert (result.status, result.error) == ("failed", "called sys.exit(4)")


def test_unimportable_compensation_fails_with_the_reason() -> None:
    """A scriptlet that cannot be imported fails its compensation, naming why."""
    comp = Compensations()
    comp.register(_step("a"), _undo("tests.recovery.no_such_module:undo"))
    (result,) = _run(comp, {}).steps
    assert result.status == "failed"
    assert result.attempts == 0
    assert result.error_type == "framework0_errors.ScriptletImportError"
    assert "no_such_module" in (result.error or "")


@pytest.mark.parametrize(
    ("scriptlet", "function"),
    [
        (M, "undo_flaky"),  # the step's own function, in that module
        (f"{M}:undo_flaky", "ok"),
        ({"module": M, "function": "undo_flaky"}, "ok"),
        ({"module": M}, "undo_flaky"),
    ],
)
def test_retry_of_a_compensation_waits_like_a_step_retry(
    clock: FakeClock, scriptlet: Any, function: str
) -> None:
    """rollback.retry retries the compensation with the step retry's backoff, in every form."""
    comp = Compensations()
    errors: list[tuple[str, str, int]] = []
    comp.register(
        _step("a", function=function, args={"name": "undo"}),
        _undo(
            scriptlet,
            args={"name": "undo", "fail_times": 2},
            retry={"max_attempts": 3, "initial_delay": 0.5, "retry_on": ["ConnectionError"]},
        ),
    )
    context = Context()
    report = _run(
        comp,
        {},
        context=context,
        clocks=timing(),
        on_error=lambda step, exc, n: errors.append((step, type(exc).__name__, n)),
    )
    assert clock.sleeps == [0.5, 1.0]
    assert report.steps[0].attempts == 3
    assert report.steps[0].status == "compensated"
    assert context.get("undone.undo") == 3
    assert errors == [("a", "ConnectionError", 1), ("a", "ConnectionError", 2)]


def test_without_retry_a_compensation_runs_once(clock: FakeClock) -> None:
    """No rollback.retry: one attempt, no waiting."""
    comp = Compensations()
    comp.register(_step("a"), _undo(f"{M}:undo_flaky", args={"name": "undo"}))
    (result,) = _run(comp, {}, clocks=timing()).steps
    assert (result.status, result.attempts, clock.sleeps) == ("failed", 1, [])


def test_class_form_compensation_runs() -> None:
    """A class with run(self, context, args) works as compensation code."""
    comp = Compensations()
    comp.register(_step("a"), _undo(f"{M}:Undo", args={"why": "test"}))
    context = Context()
    _run(comp, {}, context=context)
    assert context.get("undone.by_class") == {"why": "test"}


def test_registering_again_replaces_and_moves_to_newest(tmp_path: Any) -> None:
    """A step registered twice is compensated once, as the newest registration."""
    comp = Compensations()
    marker = tmp_path / "undo.jsonl"
    comp.register(_step("a"), _undo(f"{M}:mark", args={"name": "old", "file": str(marker)}))
    comp.register(_step("b"), _undo(f"{M}:mark", args={"name": "b", "file": str(marker)}))
    comp.register(_step("a"), _undo(f"{M}:mark", args={"name": "a", "file": str(marker)}))
    _run(comp, {})
    assert [json.loads(x)["name"] for x in marker.read_text().splitlines()] == ["a", "b"]


def test_workers_must_be_positive() -> None:
    """workers=0 is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        _run(Compensations(), {}, workers=0)


def test_report_is_json_ready() -> None:
    """The report round-trips through JSON with start, end and duration per step."""
    comp = Compensations()
    comp.register(_step("a"), _undo(f"{M}:ok", args={"name": "a"}))
    data = _run(comp, {}).to_dict()
    assert json.loads(json.dumps(data)) == data
    (entry,) = data["steps"]
    assert entry["end"] >= entry["start"]
    assert entry["duration"] == entry["end"] - entry["start"]
    assert data["ended"] >= entry["end"] >= entry["start"] >= data["started"]


@pytest.mark.parametrize(
    ("before", "ok", "expected"),
    [
        (
            {"attempts": 2, "outcome": "failed", "strategy": None, "duration": 0.1},
            True,
            {"attempts": 2, "outcome": "rolled_back", "strategy": "rollback", "duration": 0.1},
        ),
        (
            None,
            True,
            {"attempts": None, "duration": None, "outcome": "rolled_back", "strategy": "rollback"},
        ),
        (
            None,
            False,
            {
                "attempts": None,
                "duration": None,
                "outcome": "rollback_failed",
                "strategy": "rollback",
            },
        ),
    ],
)
def test_apply_rollback_outcome_updates_context_and_report(
    before: dict[str, Any] | None, ok: bool, expected: dict[str, Any]
) -> None:
    """The failed step's recovery state and report line get the outcome; the report a section."""
    context = Context()
    if before is not None:
        context.set("recovery.charge", before)
    status = "compensated" if ok else "failed"
    rollback = RollbackReport((_result("reserve", status),), started=1.0, ended=2.0)
    report: dict[str, Any] = {"steps": [{"name": "reserve"}, {"name": "charge"}, "odd"]}
    outcome = apply_rollback_outcome(
        context, failed_steps=["charge"], rollback=rollback, report=report, who="tester"
    )
    assert outcome == expected["outcome"]
    assert context.get("recovery.charge") == expected
    assert context.history()[-1].who == "tester"
    assert report["steps"][1]["outcome"] == outcome
    assert "outcome" not in report["steps"][0]
    assert report["rollback"]["trigger"] == ["charge"]
    assert report["rollback"]["steps"][0]["step"] == "reserve"
    assert report["rollback"]["ok"] is ok


def _result(step: str, status: Any) -> Any:
    from framework0_errors.rollback import CompensationResult

    return CompensationResult(step, status, 1.0, 1.5, attempts=1)
