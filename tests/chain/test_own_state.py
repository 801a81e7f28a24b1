"""A step's own breaker and bulkhead in a ``memory:`` store: state made only when needed.

While the store has no state for them, a first attempt runs without making
any; what the run records is the same as when the state is made up front.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from framework0_errors.orchestrator import (
    Invocation,
    Next,
    RunResult,
    StepMiddleware,
    execute,
    hookimpl,
    load_checked_recipe,
    plugin_manager,
)
from framework0_errors.runtime import PLUGIN, RunState
from framework0_errors.stores.select import MemoryStateStore

M = "tests.chain.scriptlets"

OWN = (
    "    error_handling:\n"
    "      retry: {max_attempts: 3, initial_delay: 0}\n"
    "      circuit_breaker: {failure_threshold: 2}\n"
    "      bulkhead: {max_concurrent: 1}\n"
    "      fallback: {value: {fell: true}}\n"
)


def _step(name: str, function: str, args: str = "", block: str = OWN) -> str:
    return (
        f"  - name: {name}\n    module: {M}\n    function: {function}\n"
        f"    args: {{name: {name}{args}}}\n{block}"
    )


def _run(tmp_path: Path, text: str, *, workers: int = 1, plugin: object = None) -> RunResult:
    path = tmp_path / "recipe.yaml"
    path.write_text("steps:\n" + text)
    pm = plugin_manager()
    if plugin is not None:
        pm.register(plugin)
    return execute(
        load_checked_recipe(str(path), pm),
        hook=pm.hook,
        workers=workers,
        options={"state": "memory:"},
    )


def _store(result: RunResult) -> MemoryStateStore:
    state = result.run.extras[PLUGIN]
    assert isinstance(state, RunState)
    assert isinstance(state.store, MemoryStateStore)
    return state.store


def _what_was_recorded(result: RunResult) -> dict[str, Any]:
    # Everything but the clock readings.
    return {key: _timeless(key, value) for key, value in result.run.context.to_dict().items()}


def _timeless(key: str, value: Any) -> Any:
    if key.startswith("recovery."):
        return {k: v for k, v in value.items() if k != "duration"}
    if key.startswith("circuit_breakers."):
        return {k: (v is None if k.endswith("_at") else v) for k, v in value.items()}
    if key.startswith("errors."):
        return [(e["attempt"], e["exception_type"], e["message"]) for e in value]
    return value


MIXED = "".join(
    [
        _step("ok", "flaky", ", fail_times: 0"),
        _step("once", "flaky", ", fail_times: 1"),
        _step("twice", "flaky", ", fail_times: 2"),
        _step("down", "dead"),
        _step("noisy", "logs_error"),
    ]
)


def test_steps_that_succeed_at_once_make_no_breaker_or_bulkhead_state(tmp_path: Path) -> None:
    """Two plain successes: nothing in the store, yet each breaker's record reads closed."""
    result = _run(tmp_path, _step("a", "flaky", ", fail_times: 0") + _step("b", "logs_error"))
    assert result.succeeded
    store = _store(result)
    assert (store.breaker_names(), store.bulkhead_names()) == ([], [])
    context = result.run.context
    for name in ("a", "b"):
        assert context.get(f"recovery.{name}")["outcome"] == "succeeded"
        breaker = context.get(f"circuit_breakers.{name}")
        assert (breaker["state"], breaker["consecutive_failures"]) == ("closed", 0)
    # What the log said is still an error record of the first attempt.
    [detected] = context.get("errors.b")
    assert (detected["attempt"], detected["message"]) == (1, "partial data: 3 rows skipped")


def test_a_first_failure_makes_the_state_and_counts(tmp_path: Path) -> None:
    """The failure of a first attempt made without state counts on the step's breaker."""
    result = _run(tmp_path, _step("down", "dead"))
    store = _store(result)
    assert store.breaker_names() == ["down"]
    context = result.run.context
    # Two failures open the breaker: the third attempt is short-circuited.
    assert context.get("calls.down") == 2
    assert context.get("recovery.down")["outcome"] == "fallback"
    assert context.get("circuit_breakers.down")["state"] == "open"


@pytest.mark.parametrize("workers", [1, 3])
def test_what_a_run_records_does_not_depend_on_when_the_state_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Successes, retries, an opening breaker and a log error: the same records either way."""
    lazily = _what_was_recorded(_run(tmp_path, MIXED, workers=workers))
    # A store that never says a name is unused: every step makes its state first.
    monkeypatch.setattr(MemoryStateStore, "never_used", None)
    up_front = _run(tmp_path, MIXED, workers=workers)
    assert set(_store(up_front).bulkhead_names()) == {"ok", "once", "twice", "down", "noisy"}
    assert lazily == _what_was_recorded(up_front)
    assert lazily["recovery.once"] == {
        "attempts": 2,
        "outcome": "recovered",
        "strategy": "retry",
        "error_type": None,
    }
    # Two failures in a row open a step's breaker: its third attempt is not made.
    assert lazily["recovery.twice"]["outcome"] == lazily["recovery.down"]["outcome"] == "fallback"
    assert lazily["circuit_breakers.twice"]["state"] == "open"


def test_a_name_another_step_gives_is_not_a_steps_own(tmp_path: Path) -> None:
    """Step b names step a's bulkhead: a takes a slot, and b waits for it, as ever."""
    from . import scriptlets

    scriptlets.ACTIVE.update(now=0, max=0)
    b_block = OWN.replace("bulkhead: {max_concurrent: 1}", "bulkhead: {name: a, max_concurrent: 1}")
    text = _step("a", "exclusive") + _step("b", "exclusive", block=b_block)
    result = _run(tmp_path, text, workers=2)
    assert result.succeeded
    assert scriptlets.ACTIVE["max"] == 1
    assert _store(result).bulkhead_names() == ["a"]


def test_state_made_before_the_step_runs_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A breaker forced open before the step's first attempt short-circuits it."""
    opened = threading.Event()
    original = MemoryStateStore.never_used

    def forced_first(self: MemoryStateStore, breaker: str, bulkhead: str) -> bool:
        if not opened.is_set():
            opened.set()
            self.force_open(breaker, now=0.0)
        return original(self, breaker, bulkhead)

    monkeypatch.setattr(MemoryStateStore, "never_used", forced_first)
    result = _run(tmp_path, _step("down", "dead"))
    context = result.run.context
    assert context.get("calls.down") is None  # never called
    assert context.get("recovery.down")["outcome"] == "fallback"
    [step] = result.report["steps"]
    assert "short-circuited (breaker down open)" in str(step)


class _Twice:
    """Calls the rest of each step's middleware twice: in a thread, and once it runs, here.

    The host lets a middleware call the rest as often as it likes; the step's
    chain is then entered again while its first attempt is still running.
    """

    def __init__(self) -> None:
        self.first_started = threading.Event()
        self.second_done = threading.Event()

    @hookimpl
    def framework0_step_middleware(self) -> list[StepMiddleware]:
        def twice(invocation: Invocation, call_next: Next) -> None:
            failed: list[BaseException] = []

            def first() -> None:
                try:
                    call_next(invocation)
                except BaseException as exc:
                    failed.append(exc)

            thread = threading.Thread(target=first)
            thread.start()
            assert self.first_started.wait(10)
            try:
                call_next(invocation)
            finally:
                self.second_done.set()
                thread.join(10)
            if failed:
                raise failed[0]

        return [StepMiddleware("twice", twice, order=10)]


# The _Twice of the test running now, for the step below.
TWICE: dict[str, _Twice] = {}


def waits_for_the_second(context: Any, args: Any) -> int:
    """The first call waits until the second ended; the second fails at once if asked to."""
    twice = TWICE["now"]
    if not twice.first_started.is_set():
        twice.first_started.set()
        assert twice.second_done.wait(10)
        context.set("first", "done")
        return 0
    if args.get("second_fails"):
        raise ConnectionError("second call refused")
    return 0


def _run_twice(tmp_path: Path, *, limit: int, args: str = "") -> RunResult:
    TWICE["now"] = _Twice()
    step = (
        f"  - name: a\n    module: {__name__}\n    function: waits_for_the_second\n"
        f"    args: {{{args}}}\n"
        "    error_handling:\n"
        "      circuit_breaker: {failure_threshold: 2}\n"
        f"      bulkhead: {{max_concurrent: {limit}}}\n"
        "      fallback: {value: {fell: true}}\n"
    )
    return _run(tmp_path, step, plugin=TWICE["now"])


@pytest.fixture(params=["lazily", "up front"])
def either_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state made as the chain makes it, or up front, before every first attempt."""
    if request.param == "up front":
        monkeypatch.setattr(MemoryStateStore, "never_used", None)


@pytest.mark.usefixtures("either_way")
def test_a_second_call_while_the_first_runs_alone_finds_its_slot_taken(tmp_path: Path) -> None:
    """max_concurrent 1: the second call of the step is refused, and falls back."""
    result = _run_twice(tmp_path, limit=1)
    context = result.run.context
    assert context.get("first") == "done"
    assert context.get("fell") is True  # the second call was refused: the bulkhead was full
    assert "rejected (bulkhead a full)" in str(result.report)
    store = _store(result)
    assert store.bulkhead_names() == ["a"]
    assert store.in_use("a", now=0.0) == 0  # every slot given back


@pytest.mark.usefixtures("either_way")
def test_a_first_call_that_ran_alone_clears_a_failure_made_meanwhile(tmp_path: Path) -> None:
    """The second call fails while the first runs: the first's success clears the count."""
    result = _run_twice(tmp_path, limit=2, args="second_fails: true")
    context = result.run.context
    assert (context.get("first"), context.get("fell")) == ("done", True)
    breaker = context.get("circuit_breakers.a")
    assert (breaker["state"], breaker["consecutive_failures"]) == ("closed", 0)
