"""Steps that share a block share one chain and one block object, and record each their own."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from framework0_errors.config import load_recipe_config
from framework0_errors.config.loading import load_config
from framework0_errors.journal import SUCCEEDED, succeeded_text
from framework0_errors.orchestrator import (
    Context,
    Locator,
    Run,
    claims,
    parse_recipe,
    plugin_manager,
)
from framework0_errors.plugin import framework0_step_middleware
from framework0_errors.runtime import RunState, start_run_state
from framework0_errors.stores.select import JsonText, MemoryStateStore, entry_texts

from ..conftest import CliResult, Project

M = "tests.chain.scriptlets"

SHARED = "      circuit_breaker: {name: svc}\n      bulkhead: {name: pool, max_concurrent: 2}\n"


def _step(name: str, block: str, function: str = "f") -> str:
    return (
        f"  - name: {name}\n    module: m\n    function: {function}\n    error_handling:\n{block}"
    )


@pytest.fixture
def prepared() -> Iterator[Callable[[str], tuple[Run, RunState]]]:
    """Prepare a run of recipe text as far as its steps' middleware; closed after."""
    states: list[RunState] = []

    def prepare(text: str) -> tuple[Run, RunState]:
        pm = plugin_manager()
        recipe = parse_recipe(text, "unit.yaml", claims=claims(pm), resolve=False)
        run = Run(recipe, hook=pm.hook, context=Context(), workers=1, options={"state": "memory:"})
        config, blocks = load_recipe_config(recipe.raw)
        states.append(start_run_state(run, config, blocks))
        return run, states[-1]

    yield prepare
    for state in states:
        state.close()


def test_steps_with_the_same_block_and_names_share_a_chain(
    prepared: Callable[[str], tuple[Run, RunState]],
) -> None:
    """Only what the chain keeps of a step tells chains apart: timeout, fallback code."""
    unnamed = "      circuit_breaker: {failure_threshold: 2}\n"
    own_name = "      circuit_breaker: {name: n, failure_threshold: 2}\n"
    timed = SHARED + "      timeout: {seconds: 5}\n"
    module_fallback = SHARED + f"      fallback: {{scriptlet: {M}}}\n"
    named_fallback = SHARED + f'      fallback: {{scriptlet: "{M}:fallback_ok"}}\n'
    mapping_fallback = SHARED + f"      fallback: {{scriptlet: {{module: {M}}}}}\n"
    text = "steps:\n" + "".join(
        [
            _step("a", SHARED),
            _step("b", SHARED),
            _step("c", unnamed),
            _step("d", unnamed),
            _step("e", timed),
            _step("f", timed),
            _step("g", module_fallback, function="fallback_ok"),
            _step("h", module_fallback, function="fallback_ok"),
            _step("i", module_fallback, function="fallback_broken"),
            _step("j", named_fallback, function="fallback_ok"),
            _step("k", named_fallback, function="fallback_broken"),
            _step("l", mapping_fallback, function="fallback_ok"),
            _step("m", mapping_fallback, function="fallback_broken"),
            _step("n", own_name),
        ]
    )
    run, state = prepared(text)
    chains = {s.name: framework0_step_middleware(run, s)[0].call for s in run.recipe.steps}
    assert chains["a"] is chains["b"]
    # Each has a breaker of its own, kept by the chain per step; naming one
    # after its step is the same.
    assert chains["c"] is chains["d"] is chains["n"]
    assert chains["e"] is not chains["f"]  # a timed-out attempt's message names its step
    assert chains["g"] is chains["h"]
    assert chains["g"] is not chains["i"]  # `pkg.mod` means each step's own function
    assert chains["j"] is chains["k"]  # a named function is the same for both
    assert chains["l"] is not chains["m"]  # so is a mapping without `function`
    assert state.breakers == {"svc", "c", "d", "n"}
    framework0_step_middleware(run, run.recipe.steps[0])
    assert state.chains  # kept while the runner builds ...
    run.hook.framework0_step_start(run=run, step=run.recipe.steps[0])
    assert not state.chains  # ... and dropped once a step starts
    framework0_step_middleware(run, run.recipe.steps[0])
    state.close()
    assert not state.chains  # or when the run ends, if none started


@pytest.mark.parametrize("named", [False, True])
def test_steps_sharing_a_chain_keep_breakers_of_their_own_unless_named_alike(
    run_cli: Callable[..., CliResult], project: Project, named: bool
) -> None:
    """One chain for four steps: unnamed, each step's breaker opens or stays closed alone."""
    breaker = "{name: svc, failure_threshold: 1}" if named else "{failure_threshold: 1}"
    block = (
        "    error_handling:\n"
        f"      circuit_breaker: {breaker}\n"
        "      bulkhead: {max_concurrent: 1}\n"
        "      fallback: {value: {fell: true}}\n"
    )
    names = ("one", "two", "three", "four")
    text = "steps:\n" + "".join(
        f"  - name: {name}\n    module: {M}\n    function: {'dead' if i % 2 == 0 else 'flaky'}\n"
        f"    args: {{name: {name}, fail_times: 0}}\n{block}"
        for i, name in enumerate(names)
    )
    result = run_cli("run", project.recipe(text), "--context-out", "ctx.json")
    assert result.code == 0, result.err
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    outcomes = [ctx[f"recovery.{name}"]["outcome"] for name in names]
    breakers = {k.split(".", 1)[1]: v["state"] for k, v in ctx.items() if "breakers." in k}
    if named:
        assert outcomes == ["fallback"] * 4  # the first failure opened svc for all
        assert [f"calls.{name}" in ctx for name in names] == [True, False, False, False]
        assert breakers == {"svc": "open"}
    else:
        assert outcomes == ["fallback", "succeeded", "fallback", "succeeded"]
        assert [ctx[f"calls.{name}"] for name in names] == [1, 1, 1, 1]
        assert breakers == {"one": "open", "two": "closed", "three": "open", "four": "closed"}


def test_equal_blocks_load_as_one_object_and_distinct_ones_do_not() -> None:
    """Blocks equal as written are one object; key order and 1 vs "1" keep them apart."""
    value_ab = "      fallback: {value: {a: 1, b: 2}}\n"
    value_ba = "      fallback: {value: {b: 2, a: 1}}\n"
    text = "steps:\n" + "".join(
        [
            _step("p", value_ab),
            _step("q", value_ab),
            _step("r", value_ba),
            _step("s", "      fallback: {value: {a: '1', b: 2}}\n"),
        ]
    )
    recipe = parse_recipe(text, "unit.yaml", claims=claims(plugin_manager()), resolve=False)
    _, blocks = load_recipe_config(recipe.raw)
    assert blocks["p"] is blocks["q"]
    assert blocks["r"] is not blocks["p"]
    assert blocks["r"] is not None
    assert blocks["r"].fallback is not None
    assert list(blocks["r"].fallback.value or {}) == ["b", "a"]  # the order of its writes
    assert blocks["s"] is not blocks["p"]


def test_each_copy_of_an_invalid_block_is_reported_where_it_is() -> None:
    """Validating a block's text once does not hide a second copy's problem."""
    # As the plugin's own checks see a recipe (the host's schema check comes first).
    steps = [
        {
            "name": name,
            "module": "m",
            "function": "f",
            "error_handling": {"retry": {"max_attempts": 0}},
        }
        for name in "ab"
    ]
    problems = load_config({"steps": steps}, Locator("unit.yaml")).problems
    assert [p.path for p in problems] == [
        "steps[0].error_handling.retry.max_attempts",
        "steps[1].error_handling.retry.max_attempts",
    ]


def test_steps_sharing_a_chain_record_and_mask_each_their_own(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """Errors, secrets, fallback errors and recovery records stay with the step that had them."""
    block = (
        "    error_handling:\n"
        "      circuit_breaker: {name: svc, failure_threshold: 9}\n"
        "      retry: {max_attempts: 2, initial_delay: 0.001}\n"
        f'      fallback: {{scriptlet: "{M}:fallback_broken"}}\n'
        "      on_failure: continue\n"
    )
    text = "steps:\n" + "".join(
        f"  - name: {name}\n    module: {M}\n    function: flaky\n"
        f"    args: {{name: {name}, fail_times: {fails}, password: {name}-secret}}\n{block}"
        for name, fails in (("one", 9), ("two", 1), ("three", 9))
    )
    result = run_cli(
        "run", project.recipe(text), "--context-out", "ctx.json", "--report", "report.json"
    )
    assert result.code == 1
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    outputs = result.out + json.dumps(ctx) + (project.root / "report.json").read_text()
    assert not any(f"{name}-secret" in outputs for name in ("one", "two", "three"))
    for name in ("one", "three"):
        assert {r["step"] for r in ctx[f"errors.{name}"]} == {name}
        assert [r["attempt"] for r in ctx[f"errors.{name}"]] == [1, 2, 2]
        assert ctx[f"recovery.{name}"]["outcome"] == "failed"
    assert ctx["recovery.two"]["outcome"] == "recovered"
    report = json.loads((project.root / "report.json").read_text())
    failed = {s["name"]: s for s in report["steps"] if s["status"] == "failed"}
    assert set(failed) == {"one", "three"}
    for name, step in failed.items():
        assert f"'{name}' failed" in step["error"]


def test_steps_sharing_a_block_get_each_their_own_copy_of_its_args(
    run_cli: Callable[..., CliResult], project: Project
) -> None:
    """A fallback or compensation that changes its args changes no other step's."""
    project.module(
        "own_args",
        "def fails(context, args):\n    raise ConnectionError('down')\n"
        "def ok(context, args):\n    return 0\n"
        "def keep(context, args):\n"
        "    args['seen'].append(1)\n"
        "    context.set('seen.' + args['kind'] + '.' + str(len(args['seen'])), True)\n"
        "    count = 'count.' + args['kind']\n"
        "    context.set(count, context.get(count, 0) + 1)\n",
    )
    fallback = '{fallback: {scriptlet: "own_args:keep", args: {seen: [], kind: fallback}}}'
    rollback = '{rollback: {scriptlet: "own_args:keep", args: {seen: [], kind: rollback}}}'
    text = "error_handling: {on_failure: rollback}\nsteps:\n"
    for i in range(2):
        text += f"  - {{name: ok{i}, module: own_args, function: ok, error_handling: {rollback}}}\n"
        text += (
            f"  - {{name: fails{i}, module: own_args, function: fails, depends_on: [ok0, ok1],"
            f" error_handling: {fallback}}}\n"
        )
    text += "  - {name: boom, module: own_args, function: fails, depends_on: [fails0, fails1]}\n"
    result = run_cli("run", project.recipe(text), "--context-out", "ctx.json")
    assert result.code == 1, result.out
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    assert ctx["recovery.fails0"]["outcome"] == ctx["recovery.fails1"]["outcome"] == "fallback"
    assert ctx["count.fallback"] == ctx["count.rollback"] == 2
    assert sorted(k for k in ctx if k.startswith("seen.")) == [
        "seen.fallback.1",
        "seen.rollback.1",
    ]


def test_a_plain_success_is_checkpointed_from_its_own_text(
    prepared: Callable[[str], tuple[Run, RunState]],
) -> None:
    """The record's text is what json.dumps writes, and stands for it only while it is the value."""
    from framework0_errors.chain import StepChain
    from framework0_errors.orchestrator import Invocation

    run, state = prepared("steps:\n" + _step("a", SHARED) + _step("b", SHARED))
    chain = StepChain(run.recipe.steps[0], state.blocks["a"], state)  # type: ignore[arg-type]
    steps = run.recipe.steps
    for step in steps:
        chain(Invocation(step, run, run.context.writer(step.name)), lambda invocation: None)
    assert set(state.successes) == {"recovery.a", "recovery.b"}
    for key, record in state.successes.items():
        assert run.context.get(key) == record
    # recovery.b replaced after its text was made: the new value is encoded instead.
    run.context.set_owned("recovery.b", {"outcome": "replaced"}, "test")
    state.checkpoint()
    assert not state.successes
    store = state.store
    assert isinstance(store, MemoryStateStore)
    saved = store.load_checkpoint(run.run_id)
    assert saved is not None
    assert saved.context["recovery.a"] == run.context.get("recovery.a")
    assert saved.context["recovery.b"] == {"outcome": "replaced"}
    # A store that stopped answering saves nothing: the records are not kept for it.
    state.store_failed = True
    chain(Invocation(steps[0], run, run.context.writer("a")), lambda invocation: None)
    assert state.successes
    state.checkpoint()
    assert not state.successes


@pytest.mark.parametrize("duration", [0.0, 1e-06, 0.001054, 3e-05, 12.5, 123456.000001, 1e22])
def test_the_success_template_writes_what_json_does(duration: float) -> None:
    """succeeded_text gives json.dumps's text of the record, whatever the float."""
    assert succeeded_text(duration) == json.dumps({**SUCCEEDED, "duration": duration})


def test_json_text_is_stored_as_it_is() -> None:
    """A store saves a JsonText value's text, not the text of the string."""
    entries = entry_texts(context={"k": JsonText('{"a": 1}'), "s": '{"a": 1}'}, step_outcomes={})
    assert entries == [("context", "k", '{"a": 1}'), ("context", "s", '"{\\"a\\": 1}"')]
