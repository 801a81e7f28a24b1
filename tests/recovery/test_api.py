"""The Python API means what the YAML means: same validation, same calls, same waits."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from framework0_errors.api import (
    ErrorHandler,
    ResilienceConfigError,
    UnknownStrategyError,
    get_error_handler,
    reset_error_handlers,
    resilient,
    validate_block,
)
from framework0_errors.config import RetryConfig
from framework0_errors.pipeline import FallbackFailedError
from framework0_errors.policies import BulkheadFullError, CircuitOpenError, StepTimeoutError
from framework0_errors.stores.memory import MemoryStore
from framework0_errors.testing import FakeClock, fake_time

from ..conftest import CliResult, Project
from . import scriptlets

M = "tests.recovery.scriptlets"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    scriptlets.CALLS.clear()
    reset_error_handlers()
    yield
    reset_error_handlers()
    scriptlets.CALLS.clear()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Every wait goes to this clock, instantly."""
    with fake_time() as fake:
        yield fake


# ------------------------------------------------------------------ YAML and code agree

CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("exponential-exhausted", {"retry": {"max_attempts": 3}}, 5, "ConnectionError"),
    (
        "linear-recovers",
        {"retry": {"max_attempts": 4, "backoff_strategy": "linear", "initial_delay": 0.5}},
        2,
        "ConnectionError",
    ),
    (
        "fixed-retry-on",
        {
            "retry": {
                "max_attempts": 5,
                "backoff_strategy": "fixed",
                "initial_delay": 2,
                "retry_on": ["ValueError"],
            }
        },
        9,
        "ValueError",
    ),
    (
        "not-retried",
        {"retry": {"max_attempts": 3, "retry_on": ["ConnectionError"]}},
        9,
        "ValueError",
    ),
    ("not-transient", {"retry": {"max_attempts": 3}}, 9, "ValueError"),
    (
        "capped",
        {"retry": {"max_attempts": 5, "initial_delay": 1, "multiplier": 3, "max_delay": 5}},
        99,
        "ConnectionError",
    ),
    (
        "deadline",
        {"retry": {"max_attempts": 10, "initial_delay": 1, "deadline": 5}},
        99,
        "ConnectionError",
    ),
    (
        "breaker-ends-retrying",
        {
            "retry": {"max_attempts": 5, "initial_delay": 1},
            "circuit_breaker": {"failure_threshold": 2},
        },
        99,
        "ConnectionError",
    ),
    (
        "fallback",
        {"retry": {"max_attempts": 2, "initial_delay": 1}, "fallback": {"value": {"result": "fb"}}},
        99,
        "ConnectionError",
    ),
    (
        "fallback-not-on-this-error",
        {
            "retry": {"max_attempts": 2, "initial_delay": 1},
            "fallback": {"value": {"result": "fb"}, "on": ["ValueError"]},
        },
        99,
        "ConnectionError",
    ),
    ("no-policy", {"bulkhead": {"max_concurrent": 2}}, 0, "ConnectionError"),
]


def _yaml_run(
    run_cli: Callable[..., CliResult], project: Project, block: dict[str, Any], args: dict[str, Any]
) -> str:
    path = project.recipe(
        f"""
        steps:
          - name: step
            module: {M}
            function: flaky_connection
            args: {json.dumps(args)}
            error_handling: {json.dumps(block)}
        """
    )
    result = run_cli("run", path, "--context-out", str(project.root / "ctx.json"))
    assert result.code in (0, 1), result
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    outcome: str = ctx["recovery.step"]["outcome"]
    return outcome


def _code_run(block: dict[str, Any], args: dict[str, Any]) -> str:
    settings = dict(block)
    fallback = settings.pop("fallback", None)
    if fallback is not None:
        settings["fallback"] = "fb"
        settings["fallback_on"] = fallback.get("on")

    @resilient(**settings, store=MemoryStore())
    def call() -> object:
        return scriptlets.flaky_connection(None, args)

    try:
        value = call()
    except Exception:
        return "failed"
    if value == "fb":
        return "fallback"
    return "recovered" if scriptlets.CALLS[args["name"]] > 1 else "succeeded"


@pytest.mark.parametrize(
    ("block", "fail_times", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decorator_calls_and_waits_like_the_same_yaml_block(
    run_cli: Callable[..., CliResult],
    project: Project,
    block: dict[str, Any],
    fail_times: int,
    error: str,
) -> None:
    """The same settings give the same call count, waits and outcome in a recipe and in code."""
    args = {"name": "yaml", "fail_times": fail_times, "error": error}
    with fake_time() as clock:
        yaml_outcome = _yaml_run(run_cli, project, block, args)
    yaml_sleeps, yaml_calls = clock.sleeps, scriptlets.CALLS["yaml"]

    with fake_time() as clock:
        code_outcome = _code_run(block, {**args, "name": "code"})
    code_sleeps, code_calls = clock.sleeps, scriptlets.CALLS["code"]

    assert (code_calls, code_sleeps, code_outcome) == (yaml_calls, yaml_sleeps, yaml_outcome)


BAD_BLOCKS: list[dict[str, Any]] = [
    {"retry": {"max_attempts": -1}},
    {"retry": {"max_attemps": 3}},
    {"retry": {"backoff_strategy": "quadratic", "jitter": "yes"}},
    {"retry": {"retry_on": ["category:WEATHER"]}},
    {"circuit_breaker": {"failure_threshold": 0, "recovery_timeout": -1}},
    {"timeout": {"seconds": 0}},
    {"bulkhead": {"max_concurrent": "2"}},
]


@pytest.mark.parametrize("block", BAD_BLOCKS, ids=json.dumps)
def test_invalid_settings_get_the_messages_framework0_validate_prints(
    run_cli: Callable[..., CliResult], project: Project, block: dict[str, Any]
) -> None:
    """resilient() rejects bad settings with exactly the problems `validate` finds in YAML."""
    path = project.recipe(
        f"""
        steps:
          - name: step
            module: {M}
            function: ok
            error_handling: {json.dumps(block)}
        """
    )
    result = run_cli("validate", path)
    assert result.code == 2
    prefix = "steps[0].error_handling."
    from_yaml = sorted(line.split(prefix, 1)[1] for line in result.out.splitlines())
    with pytest.raises(ResilienceConfigError) as caught:
        resilient(**block)
    assert sorted(caught.value.problems) == from_yaml
    for problem in from_yaml:
        assert problem in str(caught.value)


def test_example_message_reads_as_path_and_problem() -> None:
    """A negative max_attempts reads 'retry.max_attempts: -1 is less than the minimum of 1'."""
    with pytest.raises(ResilienceConfigError, match=r"retry\.max_attempts: -1 is less than"):
        resilient(retry={"max_attempts": -1})


@pytest.mark.parametrize(
    ("retry", "problem"),
    [
        ({"deadline": float("inf")}, "retry.deadline: inf is not a finite number"),
        ({"multiplier": float("nan")}, "retry.multiplier: nan is not a finite number"),
    ],
)
def test_numbers_that_are_not_finite_are_rejected_when_decorating(
    retry: dict[str, Any], problem: str
) -> None:
    """inf and nan are refused up front, as `validate` refuses .inf in YAML."""
    with pytest.raises(ResilienceConfigError) as caught:
        resilient(retry=retry, fallback="cached")
    assert caught.value.problems == (problem,)


def test_settings_that_are_not_a_mapping_are_rejected() -> None:
    """A block that is not a mapping gets the schema's message, without a path."""
    with pytest.raises(ResilienceConfigError) as caught:
        validate_block([])  # type: ignore[arg-type]
    assert caught.value.problems == ("expected a mapping, got list []",)


def test_values_yaml_cannot_hold_are_rejected_by_the_models() -> None:
    """What the schema lets through but the models refuse is reported at its path."""
    with pytest.raises(ResilienceConfigError) as caught:
        validate_block(
            {"rollback": {"scriptlet": "a.b", "args": {"when": object(), "at": [1, object()]}}}
        )
    assert caught.value.problems == (
        "rollback.args.when: input was not a valid JSON value",
        "rollback.args.at[1]: input was not a valid JSON value",
    )


@pytest.mark.parametrize(
    "retry",
    [RetryConfig(max_attempts=2, initial_delay=0.5), {"max_attempts": 2, "initial_delay": 0.5}],
)
def test_models_and_tuples_are_accepted_like_mappings(clock: FakeClock, retry: Any) -> None:
    """A config model (or tuples where YAML has lists) means the same as the mapping."""

    @resilient(retry=retry, circuit_breaker={"name": "svc", "failure_threshold": 9})
    def call() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        call()
    assert clock.sleeps == [0.5]
    block = validate_block({"retry": {"retry_on": ("ConnectionError",)}})
    assert block.retry is not None
    assert block.retry.retry_on == ["ConnectionError"]


# ------------------------------------------------------------------ the decorator


def test_wrapper_keeps_name_doc_and_signature() -> None:
    """functools.wraps: the decorated function looks like the original."""

    def charge(amount: float, *, currency: str = "EUR") -> str:
        """Charge an amount."""
        return f"{amount} {currency}"

    wrapped = resilient(retry={"max_attempts": 2})(charge)
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge an amount."
    assert inspect.signature(wrapped) == inspect.signature(charge)
    assert wrapped(3, currency="CHF") == "3 CHF"


def test_fake_time_reaches_functions_decorated_before_it() -> None:
    """Decorated at import time, the function still waits on the fake clock inside fake_time()."""
    calls = []

    @resilient(retry={"max_attempts": 3, "initial_delay": 7})
    def call() -> None:
        calls.append(1)
        raise TimeoutError("slow")

    with fake_time() as clock, pytest.raises(TimeoutError):
        call()
    assert (len(calls), clock.sleeps) == (3, [7.0, 14.0])


def test_fallback_callable_gets_the_call_arguments(clock: FakeClock) -> None:
    """A callable fallback is called with the function's own arguments."""

    @resilient(retry={"max_attempts": 2}, fallback=lambda sku, qty=1: f"cached {sku} x{qty}")
    def price(sku: str, qty: int = 1) -> str:
        raise ConnectionError("down")

    assert price("W-1", qty=3) == "cached W-1 x3"


def test_fallback_none_is_a_value(clock: FakeClock) -> None:
    """fallback=None returns None (it is a value, not 'no fallback')."""

    @resilient(fallback=None)
    def call() -> str | None:
        raise ValueError("bad")

    assert call() is None


def test_failing_fallback_raises_fallback_failed(clock: FakeClock) -> None:
    """When the fallback fails too, FallbackFailedError carries both errors."""

    def broken() -> str:
        raise RuntimeError("cache empty")

    @resilient(fallback=broken)
    def call() -> str:
        raise ConnectionError("down")

    with pytest.raises(FallbackFailedError) as caught:
        call()
    assert isinstance(caught.value.original, ConnectionError)
    assert isinstance(caught.value.fallback, RuntimeError)


def test_breakers_are_shared_by_name_through_the_store(clock: FakeClock) -> None:
    """Two functions naming the same breaker share it: one opens it for both."""
    store = MemoryStore()
    settings: dict[str, Any] = {"circuit_breaker": {"name": "payments", "failure_threshold": 2}}

    @resilient(**settings, store=store)
    def charge() -> None:
        raise ConnectionError("down")

    @resilient(**settings, store=store)
    def refund() -> str:
        return "refunded"

    for _ in range(2):
        with pytest.raises(ConnectionError):
            charge()
    with pytest.raises(CircuitOpenError):
        refund()
    assert store.snapshot("payments", now=clock.now()).state == "open"


def test_default_store_is_the_default_handlers(clock: FakeClock) -> None:
    """Without store=, breaker state lands in get_error_handler()'s store."""

    @resilient(circuit_breaker={"failure_threshold": 1}, name="svc")
    def call() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        call()
    assert get_error_handler().store.snapshot("svc", now=clock.now()).state == "open"


def test_bulkhead_rejects_when_full() -> None:
    """A full bulkhead with no wait rejects the second concurrent call."""
    entered, release = threading.Event(), threading.Event()

    @resilient(bulkhead={"name": "db", "max_concurrent": 1}, store=MemoryStore())
    def query(hold: bool) -> str:
        if hold:
            entered.set()
            release.wait(5)
        return "rows"

    worker = threading.Thread(target=query, args=(True,))
    worker.start()
    try:
        assert entered.wait(5)
        with pytest.raises(BulkheadFullError):
            query(False)
    finally:
        release.set()
        worker.join(5)


def test_timeout_in_seconds_limits_one_call() -> None:
    """timeout=0.01 (a number, or {'seconds': 0.01}) ends a call that takes longer."""
    release = threading.Event()

    @resilient(timeout=0.01)
    def stuck() -> None:
        release.wait(5)

    try:
        with pytest.raises(StepTimeoutError):
            stuck()
    finally:
        release.set()


def test_fallback_on_needs_a_fallback() -> None:
    """fallback_on without fallback is a mistake, said at once."""
    with pytest.raises(TypeError, match="fallback_on needs a fallback"):
        resilient(fallback_on=["ValueError"])


def test_async_functions_are_refused() -> None:
    """Only sync functions can be wrapped."""

    async def fetch() -> None:
        await asyncio.sleep(0)

    with pytest.raises(TypeError, match="sync functions only"):
        resilient(retry={"max_attempts": 2})(fetch)
    with pytest.raises(TypeError, match="sync functions only"):
        ErrorHandler().wrap("x")(fetch)


# ------------------------------------------------------------------ ErrorHandler


def test_get_error_handler_keeps_one_per_name() -> None:
    """The same name gives the same handler until reset; other names, other handlers."""
    first = get_error_handler("payments")
    assert get_error_handler("payments") is first
    assert get_error_handler("shipping") is not first
    assert first.name == "payments"
    reset_error_handlers()
    assert get_error_handler("payments") is not first


def test_named_strategy_retries_then_falls_back(clock: FakeClock) -> None:
    """call() runs fn through the named strategy, then the fallback of the same name."""
    handler = get_error_handler("api")
    config = handler.register_retry_strategy(
        "network", max_attempts=3, backoff="linear", initial_delay=0.5
    )
    assert config == RetryConfig(max_attempts=3, backoff_strategy="linear", initial_delay=0.5)
    calls: list[str] = []

    def fetch(url: str) -> str:
        calls.append(url)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        handler.call("network", fetch, "https://a")
    assert (len(calls), clock.sleeps) == (3, [0.5, 1.0])

    handler.register_fallback("network", lambda url: f"cached {url}")
    assert handler.call("network", fetch, "https://b") == "cached https://b"
    assert handler.strategies == ("network",)


def test_wrap_uses_the_strategy(clock: FakeClock) -> None:
    """wrap(name) decorates a function with the named strategy, keeping its name."""
    handler = ErrorHandler("local")
    handler.register_retry_strategy("twice", max_attempts=2, backoff="fixed", initial_delay=3)
    attempts: list[int] = []

    @handler.wrap("twice")
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) < 2:
            raise TimeoutError("slow")
        return n * 2

    assert flaky(21) == 42
    assert flaky.__name__ == "flaky"
    assert clock.sleeps == [3.0]


def test_handler_resilient_uses_its_store(clock: FakeClock) -> None:
    """handler.resilient() keeps breaker state in that handler's store."""
    handler = ErrorHandler("own", store=MemoryStore())

    @handler.resilient(circuit_breaker={"name": "mine", "failure_threshold": 1})
    def call() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        call()
    assert handler.store.snapshot("mine", now=clock.now()).state == "open"
    assert get_error_handler().store.snapshot("mine", now=clock.now()).state == "closed"


def test_unknown_strategy_names_the_known_ones() -> None:
    """Calling an unregistered strategy says which ones exist."""
    handler = ErrorHandler("h")
    with pytest.raises(UnknownStrategyError, match=r"no retry strategy 'x'.*\(known: none\)"):
        handler.call("x", print)
    handler.register_retry_strategy("a", max_attempts=2)
    with pytest.raises(UnknownStrategyError, match=r"\(known: a\)"):
        handler.call("x", print)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"max_attempts": 0}, "retry.max_attempts: 0 is less than the minimum of 1"),
        ({"max_attempts": 2, "backoff": "cubic"}, "retry.backoff_strategy: 'cubic' is not allowed"),
        ({"max_attempts": 2, "initial_dalay": 1}, "retry.initial_dalay: unknown key"),
    ],
)
def test_strategy_settings_are_validated_like_yaml(keys: dict[str, Any], problem: str) -> None:
    """register_retry_strategy rejects what a recipe's retry: would."""
    with pytest.raises(ResilienceConfigError, match=problem.replace(".", r"\.")):
        ErrorHandler().register_retry_strategy("s", **keys)


def test_strategy_misuse_is_a_type_error() -> None:
    """backoff_strategy= instead of backoff=, and non-callable fallbacks, are refused."""
    handler = ErrorHandler()
    with pytest.raises(TypeError, match="backoff="):
        handler.register_retry_strategy("s", max_attempts=2, backoff_strategy="fixed")
    with pytest.raises(TypeError, match="must be callable"):
        handler.register_fallback("s", "not callable")  # type: ignore[arg-type]


def test_handler_accepts_a_path_store(tmp_path: Path) -> None:
    """Any store with breaker and bulkhead operations works (here the SQLite one)."""
    from framework0_errors.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "state.db")
    try:
        handler = ErrorHandler("durable", store=store)
        handler.register_retry_strategy("once", max_attempts=1)
        assert handler.call("once", lambda: "ok") == "ok"
    finally:
        store.close()
