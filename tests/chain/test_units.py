"""Small pieces of the chain: abandon signals, leases, explain, state choice, clocks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from framework0_errors import state as state_module
from framework0_errors.attempt import NEVER, Abandon
from framework0_errors.config import StateConfig, StepErrorHandling
from framework0_errors.explain import describe_chain, worst_case
from framework0_errors.pipeline import slot_lease
from framework0_errors.state import ResumeError, find_checkpoint, open_state, state_url
from framework0_errors.stores.select import StoreUnavailableError, open_store
from framework0_errors.testing import FakeClock, fake_time

from ..conftest import CliResult, Project

M = "tests.chain.scriptlets"


def _block(data: dict[str, Any]) -> StepErrorHandling:
    return StepErrorHandling.model_validate(data)


def test_abandon_runs_callbacks_once_whenever_added() -> None:
    """Callbacks added before or after set() run exactly once with the reason."""
    seen: list[str] = []
    signal = Abandon()
    signal.add(seen.append)
    signal.set("late")
    signal.set("again")
    signal.add(seen.append)
    assert seen == ["late", "late"]
    NEVER.add(seen.append)
    assert seen == ["late", "late"]


@pytest.mark.parametrize(
    ("data", "lease"),
    [({}, 3600.0), ({"timeout": {"seconds": 10}}, 90.0), ({"timeout": {"seconds": 1e308}}, 1e9)],
)
def test_slot_lease(data: dict[str, Any], lease: float) -> None:
    """Leases outlast any live attempt: 3x the timeout plus a minute, else an hour; finite."""
    assert slot_lease(_block(data)) == lease


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"timeout": {"seconds": 2}, "bulkhead": {"max_wait": 1}}, "3s"),
        ({"retry": {"max_attempts": 3, "initial_delay": 1}, "timeout": {"seconds": 2}}, "9s"),
        (
            {
                "retry": {"max_attempts": 9, "initial_delay": 1, "deadline": 5},
                "timeout": {"seconds": 1},
            },
            "6s",
        ),
        ({"retry": {}}, "unbounded (no timeout)"),
        ({"timeout": {"seconds": 1e308}, "bulkhead": {"max_wait": 1e308}}, "over 1.79769e+308s"),
        ({"retry": {}, "timeout": {"seconds": 1e308}}, "over 1.79769e+308s"),
    ],
)
def test_worst_case(data: dict[str, Any], expected: str) -> None:
    """The worst case adds attempts, waits and slot waits, capped by the deadline."""
    assert worst_case(_block(data)) == expected


def test_describe_notify_and_module_only_rollback() -> None:
    """explain lists notify channels and module-only references."""
    text = describe_chain(
        _block({"notify": ["ops"], "rollback": {"scriptlet": {"module": "acme.undo"}}}),
        step_name="s",
    )
    assert text == "step; worst case unbounded (no timeout); rollback acme.undo; notify ops"


def test_state_url_precedence() -> None:
    """--state, then FRAMEWORK0_STATE, then the recipe, then the SQLite default."""
    config = StateConfig(url="memory:")
    env = {"FRAMEWORK0_STATE": "sqlite:env.db"}
    assert state_url("redis://h:1/0", config, env) == "redis://h:1/0"
    assert state_url(None, config, env) == "sqlite:env.db"
    assert state_url(" ", config, {}) == "memory:"
    assert state_url(None, None, {}) == "sqlite:.framework0/state.db"


def test_missing_redis_client_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A redis:// URL without the redis package says which extra to install."""

    def no_client(url: str, **kwargs: Any) -> None:
        raise ModuleNotFoundError("No module named 'redis'", name="redis")

    monkeypatch.setattr(state_module, "open_store", no_client)
    with pytest.raises(StoreUnavailableError, match=r"framework0-errors\[redis\]"):
        open_state("redis://user:pw@127.0.0.1:1/0", None, {})


def test_unavailable_default_store_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the default itself fails, on_unavailable: local has nothing to fall back to."""

    def broken(url: str, **kwargs: Any) -> None:
        raise StoreUnavailableError("disk full")

    monkeypatch.setattr(state_module, "open_store", broken)
    with pytest.raises(StoreUnavailableError, match="disk full"):
        open_state(None, StateConfig(on_unavailable="local"), {})


def test_checkpoint_of_another_recipe_is_refused(tmp_path: Path) -> None:
    """--resume RUN_ID refuses a run of a different recipe."""
    store = open_store("memory:")
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("steps: []\n")
    two.write_text("steps: []\n")
    path, digest = state_module.recipe_identity(str(one))
    store.save_checkpoint("r1", recipe_path=path, recipe_hash=digest, context={}, step_outcomes={})
    assert find_checkpoint(store, str(one), "r1", force=False).run_id == "r1"
    with pytest.raises(ResumeError, match="is of"):
        find_checkpoint(store, str(two), "r1", force=False)


def test_fake_clock_advance() -> None:
    """advance() moves time without recording a sleep."""
    clock = FakeClock(start=10.0)
    clock.advance(5)
    assert clock.now() == 15.0
    assert clock.sleeps == []


def test_breaker_closes_after_recovery_and_notifies(
    project: Project, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Across two runs on one store: open, then after recovery_timeout a trial closes it."""
    url = f"sqlite:{tmp_path / 'state.db'}"
    text = f"""
error_handling:
  notifications:
    channels: {{ops: {{type: log}}}}
    routes: [{{channels: [ops]}}]
steps:
  - name: s
    module: {M}
    function: fails_first_time
    args: {{marker: "{tmp_path / "marker"}"}}
    error_handling:
      circuit_breaker: {{name: svc, failure_threshold: 1, recovery_timeout: 60}}
"""
    path = project.recipe(text)
    with fake_time() as clock:
        assert run_cli("run", path, "--state", url).code == 1
        clock.advance(61)
        second = run_cli("run", path, "--state", url, "--report", "r.json")
    assert second.code == 0, second
    report = (project.root / "r.json").read_text()
    assert '"state": "closed"' in report
    assert '"sent": 1' in report


def test_detected_error_in_a_chained_attempt_and_bad_fallback(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A logged error inside a chained attempt is recorded; a failing fallback code fails."""
    text = f"""
steps:
  - name: logs
    module: {M}
    function: logs_error
    error_handling: {{retry: {{max_attempts: 2}}}}
  - name: bad_fallback
    module: {M}
    function: dead
    args: {{name: b}}
    error_handling:
      fallback: {{scriptlet: "{M}:returns_one"}}
      on_failure: continue
"""
    result = run_cli("run", project.recipe(text), "--context-out", "ctx.json")
    assert result.code == 1
    assert "bad_fallback (fallback)' returned 1" in result.out
    ctx = (project.root / "ctx.json").read_text()
    assert "partial data: 3 rows skipped" in ctx


def _pipeline(data: dict[str, Any]) -> Any:
    from framework0_errors.classify import Classifier
    from framework0_errors.pipeline import Pipeline
    from framework0_errors.stores.memory import MemoryStore
    from framework0_errors.testing import timing

    store = MemoryStore()
    return Pipeline(
        _block(data),
        name="p",
        breaker_store=store,
        bulkhead_store=store,
        timing=timing(),
        classify=Classifier([]).classify,
    )


def test_an_open_breaker_ends_retrying_at_once() -> None:
    """Once the breaker opens between attempts, the refused attempt is the last one."""
    from framework0_errors.policies import CircuitOpenError

    with fake_time():
        pipeline = _pipeline(
            {
                "retry": {"max_attempts": 5, "retry_on": ["ConnectionError", "CircuitOpenError"]},
                "circuit_breaker": {"failure_threshold": 2},
            }
        )
        calls: list[int] = []

        def attempt(number: int, abandon: Abandon) -> None:
            calls.append(number)
            raise ConnectionError("down")

        with pytest.raises(CircuitOpenError):
            pipeline.run(attempt)
    assert calls == [1, 2]


def test_timed_attempt_abandoned_before_it_starts_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A timed attempt that times out before its thread starts frees its slot and never runs."""
    from framework0_errors.policies import StepTimeoutError

    pipeline = _pipeline({"timeout": {"seconds": 0.1}, "bulkhead": {"max_concurrent": 1}})
    late: list[Callable[[], Any]] = []

    def not_started(fn: Callable[[], Any], *, on_abandon: Callable[[], None]) -> Any:
        late.append(fn)  # the worker would start it after the caller gave up
        on_abandon()
        raise StepTimeoutError(0.1)

    monkeypatch.setattr(pipeline._timeout, "call", not_started)
    ran: list[int] = []
    with pytest.raises(StepTimeoutError):
        pipeline.run(lambda number, abandon: ran.append(number))
    assert pipeline.bulkhead.in_use() == 0
    with pytest.raises(StepTimeoutError):
        late[0]()
    assert ran == []
    assert pipeline.bulkhead.in_use() == 0


def test_give_up_on_wins_over_retry_on() -> None:
    """An error matched by give_up_on is not retried even when retry_on matches it too."""
    with fake_time():
        pipeline = _pipeline(
            {"retry": {"retry_on": ["OSError"], "give_up_on": ["PermissionError"]}}
        )
        calls: list[int] = []

        def attempt(number: int, abandon: Abandon) -> None:
            calls.append(number)
            raise PermissionError("denied")

        with pytest.raises(PermissionError):
            pipeline.run(attempt)
    assert calls == [1]


@pytest.mark.parametrize("error", [ConnectionError("down"), KeyboardInterrupt()])
def test_timed_attempt_with_a_bulkhead_raises_its_own_error(error: BaseException) -> None:
    """A started timed attempt's own error reaches the caller unchanged; its slot is freed."""
    pipeline = _pipeline(
        {
            "timeout": {"seconds": 5},
            "bulkhead": {"max_concurrent": 1},
            "circuit_breaker": {"failure_threshold": 1},
        }
    )

    def attempt(number: int, abandon: Abandon) -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        pipeline.run(attempt)
    assert raised.value is error
    assert pipeline.bulkhead.in_use() == 0
    # Only an Exception counts against the breaker; an interrupt frees its admission.
    expected = "open" if isinstance(error, Exception) else "closed"
    assert pipeline.breaker.snapshot().state == expected


def test_timed_attempt_with_a_bulkhead_that_times_out_keeps_its_slot_until_it_ends() -> None:
    """A started attempt that times out raises StepTimeoutError and holds its slot until it ends."""
    import threading

    from framework0_errors.policies import StepTimeoutError

    pipeline = _pipeline({"timeout": {"seconds": 0.05}, "bulkhead": {"max_concurrent": 1}})
    started, release = threading.Event(), threading.Event()
    ended = threading.Event()

    def attempt(number: int, abandon: Abandon) -> None:
        started.set()
        release.wait(10)
        ended.set()

    with pytest.raises(StepTimeoutError):
        pipeline.run(attempt)
    assert started.is_set()
    assert pipeline.bulkhead.in_use() == 1  # still running: still counted
    release.set()
    assert ended.wait(10)
    for _ in range(1000):  # the worker gives the slot back just after the attempt ends
        if pipeline.bulkhead.in_use() == 0:
            break
        threading.Event().wait(0.01)
    assert pipeline.bulkhead.in_use() == 0


def test_an_error_from_on_error_counts_as_the_attempts_own() -> None:
    """If on_error raises for attempt 1, that error is judged (and retried) like attempt 2's."""
    with fake_time():
        pipeline = _pipeline(
            {"retry": {"max_attempts": 3, "retry_on": ["ConnectionError", "RuntimeError"]}}
        )
        calls: list[int] = []

        def attempt(number: int, abandon: Abandon) -> None:
            calls.append(number)
            raise ConnectionError(f"down {number}")

        def on_error(exc: BaseException, number: int) -> None:
            if number == 1:
                raise RuntimeError("observer broke")

        with pytest.raises(ConnectionError, match="down 3"):
            pipeline.run(attempt, on_error=on_error)
    assert calls == [1, 2, 3]


@pytest.fixture
def step_chain() -> Iterator[Callable[[str], tuple[Any, Any]]]:
    """Build a step's chain from an error_handling block; the run's state is closed after."""
    states: list[Any] = []
    yield lambda block: _step_chain(block, states)
    for state in states:
        state.close()


def _step_chain(block: str, states: list[Any]) -> tuple[Any, Any]:
    from framework0_errors.chain import StepChain
    from framework0_errors.config import load_recipe_config
    from framework0_errors.orchestrator import Context, Invocation, Run, claims, parse_recipe
    from framework0_errors.orchestrator import plugin_manager as manager
    from framework0_errors.runtime import start_run_state

    text = f"steps:\n  - name: s\n    module: m\n    function: f\n    error_handling:\n{block}"
    pm = manager()
    recipe = parse_recipe(text, "unit.yaml", claims=claims(pm), resolve=False)
    run = Run(recipe, hook=pm.hook, context=Context(), workers=1, options={"state": "memory:"})
    config, blocks = load_recipe_config(recipe.raw)
    state = start_run_state(run, config, blocks)
    states.append(state)
    step = recipe.steps[0]
    chain = StepChain(step, blocks["s"], state)  # type: ignore[arg-type]
    return chain, Invocation(step, run, run.context.writer("s"))


def test_an_interrupt_in_the_first_attempt_ends_the_step_at_once(
    step_chain: Callable[[str], tuple[Any, Any]],
) -> None:
    """Ctrl-C in a step's code is neither retried nor caught; the record says failed."""
    chain, invocation = step_chain(
        "      retry: {max_attempts: 3}\n      fallback: {value: {x: 1}}\n"
        "      circuit_breaker: {failure_threshold: 1}\n      bulkhead: {max_concurrent: 1}\n"
    )
    calls: list[int] = []

    def interrupted(_: Any) -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        chain(invocation, interrupted)
    context = invocation.context
    assert calls == [1]
    assert context.get("x") is None
    record = context.get("recovery.s")
    assert (record["attempts"], record["outcome"], record["error_type"]) == (
        1,
        "failed",
        "KeyboardInterrupt",
    )
    assert invocation.notes["outcome"] == "failed"
    assert chain.pipeline.breaker.snapshot().state == "closed"  # an interrupt is no verdict
    assert chain.pipeline.bulkhead.in_use() == 0


def test_a_first_attempt_that_succeeds_writes_the_success_record(
    step_chain: Callable[[str], tuple[Any, Any]],
) -> None:
    """The success path writes recovery.<step> and the notes the step line reads."""
    chain, invocation = step_chain("      retry: {max_attempts: 3}\n")
    chain(invocation, lambda _: None)
    record = invocation.context.get("recovery.s")
    assert record["attempts"] == 1
    assert record["outcome"] == "succeeded"
    assert record["strategy"] == "none"
    assert 0 <= record["duration"] < 60
    assert record["duration"] == round(record["duration"], 6)
    assert invocation.notes == {"outcome": "succeeded", "attempts": 1}


def test_the_first_attempt_made_in_the_chain_judges_as_the_pipeline_does(
    step_chain: Callable[[str], tuple[Any, Any]],
) -> None:
    """A closed in-process breaker and a bulkhead: the chain makes the first attempt itself.

    A failure counts against the breaker, a full bulkhead does not, the slot is
    given back either way, a logged error is recorded against attempt 1, and a
    success after a failure clears the count.
    """
    import logging

    chain, invocation = step_chain(
        "      circuit_breaker: {failure_threshold: 3}\n"
        "      bulkhead: {max_concurrent: 1}\n"
        "      fallback: {value: {x: 1}}\n"
    )
    breaker, bulkhead = chain.pipeline.breaker, chain.pipeline.bulkhead
    assert chain._inline  # the chain makes the first attempt itself

    def down(_: Any) -> None:
        raise ConnectionError("down")

    chain(invocation, down)
    assert breaker.cell.failures == 1
    assert bulkhead.in_use() == 0
    assert invocation.notes["outcome"] == "fallback"

    holder = bulkhead.acquire()  # someone else holds the only slot
    chain(invocation, lambda _: pytest.fail("called with the bulkhead full"))
    assert breaker.cell.failures == 1  # a call never made says nothing of the service
    assert "rejected (bulkhead s full)" in invocation.notes["detail"]
    bulkhead.release(holder)

    def logs(_: Any) -> None:
        logging.getLogger("tests.inline").error("half done")

    chain(invocation, logs)
    assert breaker.cell.failures == 0
    assert invocation.context.get("recovery.s")["outcome"] == "succeeded"
    [detected] = invocation.context.get("errors.s")[-1:]
    assert (detected["attempt"], detected["message"]) == (1, "half done")
    assert bulkhead.in_use() == 0


def test_on_error_hears_of_the_first_attempt_while_its_error_is_handled() -> None:
    """on_error for attempt 1 sees the error as being handled; what it raises chains to it."""
    import sys

    pipeline = _pipeline({})
    seen: list[BaseException | None] = []
    first = ValueError("first")

    def attempt(number: int, abandon: Abandon) -> None:
        raise first

    def on_error(exc: BaseException, number: int) -> None:
        seen.append(sys.exc_info()[1])
        raise RuntimeError("recording failed")

    with pytest.raises(RuntimeError) as raised:
        pipeline.run(attempt, on_error=on_error)
    assert seen == [first]
    assert raised.value.__context__ is first


def test_an_interrupt_while_recording_the_first_failure_still_writes_the_record(
    step_chain: Callable[[str], tuple[Any, Any]],
) -> None:
    """Ctrl-C in the first failure's error record ends the step with attempts 1 recorded."""
    chain, invocation = step_chain("      retry: {max_attempts: 3}\n")

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    chain.state.journal.record = interrupted

    def failing(_: Any) -> None:
        raise ConnectionError("down")

    with pytest.raises(KeyboardInterrupt) as raised:
        chain(invocation, failing)
    assert isinstance(raised.value.__context__, ConnectionError)
    record = invocation.context.get("recovery.s")
    assert (record["attempts"], record["outcome"], record["error_type"]) == (
        1,
        "failed",
        "KeyboardInterrupt",
    )


def test_a_bulkhead_never_used_leaves_no_name_in_the_store() -> None:
    """Building a bulkhead policy asks the store for nothing until a slot is wanted."""
    from framework0_errors.policies import Bulkhead
    from framework0_errors.stores import MemoryStore

    store = MemoryStore()
    bulkhead = Bulkhead("idle", max_concurrent=1, store=store)
    assert store.bulkhead_names() == []
    bulkhead.release(bulkhead.acquire())
    assert store.bulkhead_names() == ["idle"]


def _counting_store(calls: list[str]) -> Any:
    from framework0_errors.stores import MemoryStore

    class Counting(MemoryStore):
        breaker_cell = None  # type: ignore[assignment]
        local_bulkhead = None  # type: ignore[assignment]

        def before_call(self, name: str, **kwargs: Any) -> Any:
            calls.append("before_call")
            return super().before_call(name, **kwargs)

        def record_success(self, name: str, **kwargs: Any) -> Any:
            calls.append("record_success")
            return super().record_success(name, **kwargs)

        def try_acquire(self, name: str, **kwargs: Any) -> bool:
            calls.append("try_acquire")
            return super().try_acquire(name, **kwargs)

        def release(self, name: str, **kwargs: Any) -> None:
            calls.append("release")
            super().release(name, **kwargs)

    return Counting()


def test_a_store_subclass_can_turn_the_in_place_fast_paths_off() -> None:
    """breaker_cell = None and local_bulkhead = None send every call through the methods."""
    from framework0_errors.policies import Bulkhead, CircuitBreaker

    calls: list[str] = []
    store = _counting_store(calls)
    breaker = CircuitBreaker("b", store=store)
    bulkhead = Bulkhead("b", max_concurrent=1, store=store)
    assert breaker.call(lambda: bulkhead.call(lambda: 7)) == 7
    assert calls == ["before_call", "try_acquire", "release", "record_success"]


def test_breaker_and_bulkhead_without_in_place_state_go_through_the_store() -> None:
    """A block with a breaker and a bulkhead over a store that keeps no live state."""
    from framework0_errors.classify import Classifier
    from framework0_errors.pipeline import Pipeline
    from framework0_errors.testing import timing

    calls: list[str] = []
    store = _counting_store(calls)
    pipeline = Pipeline(
        _block({"circuit_breaker": {"name": "b"}, "bulkhead": {"name": "b", "max_concurrent": 1}}),
        name="p",
        breaker_store=store,
        bulkhead_store=store,
        timing=timing(),
        classify=Classifier([]).classify,
    )
    assert pipeline.breaker.cell is None
    assert pipeline.run(lambda number, abandon: 7) == 7
    assert pipeline.bulkhead.slots is None
    assert calls == ["before_call", "try_acquire", "release", "record_success"]
    assert store.in_use("b", now=0.0) == 0


def test_a_half_open_breaker_with_a_bulkhead_closes_on_a_successful_trial() -> None:
    """While not closed, the breaker's own methods admit the trial and judge it."""
    with fake_time() as clock:
        pipeline = _pipeline(
            {
                "circuit_breaker": {"failure_threshold": 1, "recovery_timeout": 10},
                "bulkhead": {"max_concurrent": 1},
            }
        )
        breaker = pipeline.breaker

        def down(number: int, abandon: Abandon) -> None:
            raise ConnectionError("down")

        with pytest.raises(ConnectionError):
            pipeline.run(down)
        assert breaker.snapshot().state == "open"
        clock.advance(10)
        assert breaker.cell.state == "open"  # half-open is decided at the next call
        assert pipeline.run(lambda number, abandon: "up") == "up"
        assert breaker.snapshot().state == "closed"
        assert breaker.cell.state == "closed"
        assert pipeline.bulkhead.slots is not None
        assert pipeline.bulkhead.in_use() == 0


def test_a_closed_breaker_with_failures_records_the_success_that_clears_them() -> None:
    """The in-place shortcut skips on_success only when there is nothing to clear."""
    pipeline = _pipeline(
        {"circuit_breaker": {"failure_threshold": 3}, "bulkhead": {"max_concurrent": 2}}
    )

    def down(number: int, abandon: Abandon) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        pipeline.run(down)
    assert pipeline.breaker.cell.failures == 1
    pipeline.run(lambda number, abandon: None)
    assert pipeline.breaker.snapshot().consecutive_failures == 0


def test_pipelines_share_the_breakers_and_bulkheads_they_name_alike() -> None:
    """One object per name; other settings, another store or callback get their own."""
    from framework0_errors.classify import Classifier
    from framework0_errors.pipeline import Pipeline
    from framework0_errors.shared_policies import SharedPolicies
    from framework0_errors.stores.memory import MemoryStore
    from framework0_errors.testing import timing

    store, shared, clocks = MemoryStore(), SharedPolicies(), timing()

    def build(name: str, block: dict[str, Any], **kwargs: Any) -> Any:
        return Pipeline(
            _block(block),
            name=name,
            breaker_store=kwargs.get("store", store),
            bulkhead_store=kwargs.get("store", store),
            timing=clocks,
            classify=Classifier([]).classify,
            on_breaker_change=kwargs.get("on_change"),
            shared=shared,
        )

    both = {"circuit_breaker": {"name": "api"}, "bulkhead": {"name": "api", "max_concurrent": 2}}
    first, second = build("a", both), build("b", both)
    assert first.breaker is second.breaker
    assert first.bulkhead is second.bulkhead
    own = build("c", {"circuit_breaker": {}, "bulkhead": {"max_concurrent": 2}})
    assert own.breaker.name == own.bulkhead.name == "c"
    assert build("c", {"circuit_breaker": {}}).breaker is own.breaker
    timed = build("d", {**both, "timeout": {"seconds": 5}})
    assert timed.breaker is first.breaker
    assert timed.bulkhead is not first.bulkhead  # its slot lease differs: not shared
    assert timed.bulkhead.lease_seconds == 75.0
    assert build("e", {**both, "timeout": {"seconds": 5}}).bulkhead is not timed.bulkhead
    other = build("f", {"circuit_breaker": {"name": "api", "failure_threshold": 9}})
    assert other.breaker is not first.breaker
    assert other.breaker.failure_threshold == 9
    elsewhere = build("g", both, store=MemoryStore())
    assert elsewhere.breaker is not first.breaker
    assert elsewhere.bulkhead is not first.bulkhead
    heard: list[tuple[str, str, str]] = []
    told = build("h", both, on_change=lambda *change: heard.append(change))
    assert told.breaker is not first.breaker
    assert build("i", both).breaker is first.breaker  # what was kept is still the first


def test_a_steps_chain_is_freed_once_its_step_has_run(tmp_path: Path) -> None:
    """No reference cycle keeps a chain, and the host drops each one after its step."""
    import gc

    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    lines = ["steps:"]
    for name in ("a", "b", "c"):
        lines += [
            f"  - name: {name}",
            f"    module: {M}",
            "    function: live_chains",
            f"    args: {{step: {name}}}",
            "    error_handling:",
            f"      circuit_breaker: {{name: svc-{name}}}",  # a block, so a chain, each
            "      retry: {max_attempts: 2}",
        ]
    path = tmp_path / "chains.yaml"
    path.write_text("\n".join(lines) + "\n")
    pm = plugin_manager()
    recipe = load_checked_recipe(str(path), pm)
    gc.collect()
    gc.disable()  # what is freed is freed by reference counting alone
    try:
        result = execute(recipe, hook=pm.hook, options={"state": "memory:"})
    finally:
        gc.enable()
    assert result.succeeded
    context = result.run.context
    assert [context.get(f"chains.{name}") for name in "abc"] == [3, 2, 1]


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_a_trial_the_bulkhead_refuses_gives_no_verdict(timeout: float | None) -> None:
    """A half-open trial refused by a full bulkhead neither closes nor opens the breaker."""
    from framework0_errors.policies import BulkheadFullError

    block: dict[str, Any] = {
        "circuit_breaker": {"failure_threshold": 1, "recovery_timeout": 10},
        "bulkhead": {"max_concurrent": 1},
    }
    if timeout is not None:
        block["timeout"] = {"seconds": timeout}
    with fake_time() as clock:
        pipeline = _pipeline(block)
        breaker, bulkhead = pipeline.breaker, pipeline.bulkhead

        def down(number: int, abandon: Abandon) -> None:
            raise ConnectionError("down")

        with pytest.raises(ConnectionError):
            pipeline.run(down)
        clock.advance(10)
        holder = bulkhead.acquire()  # someone else holds the only slot
        with pytest.raises(BulkheadFullError):
            pipeline.run(lambda number, abandon: "never called")
        assert breaker.snapshot().state == "half_open"
        assert breaker.snapshot().trial_calls == 0  # the refused trial's slot is free again
        bulkhead.release(holder)
        assert pipeline.run(lambda number, abandon: "up") == "up"
        assert breaker.snapshot().state == "closed"


def test_breaker_records_hold_plain_values_that_are_the_contexts_own(
    step_chain: Callable[[str], tuple[Any, Any]],
) -> None:
    """set_breakers stores plain JSON values, whatever types a store's snapshot holds."""
    from framework0_errors.stores import BreakerSnapshot

    class State(str):
        pass

    class Count(int):
        pass

    chain, _ = step_chain("      circuit_breaker: {name: b}\n")
    journal, context = chain.state.journal, chain.state.journal.context
    odd = BreakerSnapshot("b", State("open"), Count(3), 5, 65, 0)  # type: ignore[arg-type]
    held = BreakerSnapshot("c", "open", 1, 7.0, math.inf)  # held open by hand, forever
    written = journal.set_breakers([odd, held])
    stored = context.get("circuit_breakers.b")
    assert stored == {
        "state": "open",
        "consecutive_failures": 3,
        "opened_at": 5.0,
        "half_open_at": 65.0,
    }
    assert [type(v) for v in stored.values()] == [str, int, float, float]
    # JSON holds no infinity: held open until reset reads as no half-open time.
    assert context.get("circuit_breakers.c") == written["c"]
    assert written["c"] == {
        "state": "open",
        "consecutive_failures": 1,
        "opened_at": 7.0,
        "half_open_at": None,
    }
    written["b"]["state"] = "changed"  # the caller's copy
    assert context.get("circuit_breakers.b")["state"] == "open"
    assert journal.set_breaker(odd) == stored


def test_untouched_breakers_share_one_record_and_callers_get_copies(
    step_chain: Callable[[str], tuple[Any, Any]],
) -> None:
    """Closed breakers with no failure share one Context record; the caller's are its own."""
    from framework0_errors.stores import BreakerSnapshot

    chain, _ = step_chain("      circuit_breaker: {name: b}\n")
    journal, context = chain.state.journal, chain.state.journal.context
    closed = {"state": "closed", "consecutive_failures": 0, "opened_at": None, "half_open_at": None}
    failing = BreakerSnapshot("f", "closed", 2, None, None)
    written = journal.set_breakers(
        [
            BreakerSnapshot("x", "closed", 0, None, None),
            BreakerSnapshot("y", "closed", 0, None, None),
            failing,
        ]
    )
    assert written == {"x": closed, "y": closed, "f": {**closed, "consecutive_failures": 2}}
    assert context._data["circuit_breakers.x"] is context._data["circuit_breakers.y"]
    written["x"]["state"] = "changed"
    assert written["y"]["state"] == "closed"
    assert context.get("circuit_breakers.y") == closed


def test_outcomes_a_checkpoint_was_interrupted_saving_go_in_the_next(
    step_chain: Callable[[str], tuple[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a checkpoint saves keeps its step outcomes for the next one."""
    chain, _ = step_chain("      retry: {max_attempts: 2}\n")
    state = chain.state
    store = state.store
    saved = store.save_checkpoint

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    state.record_outcome("a", "succeeded")
    monkeypatch.setattr(store, "save_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        state.checkpoint()
    state.record_outcome("b", "failed")
    assert state.unsaved == {"a": "succeeded", "b": "failed"}
    monkeypatch.setattr(store, "save_checkpoint", saved)
    state.checkpoint()
    checkpoint = store.load_checkpoint(state.journal.run.run_id)
    assert checkpoint is not None
    assert checkpoint.step_outcomes == {"a": "succeeded", "b": "failed"}
