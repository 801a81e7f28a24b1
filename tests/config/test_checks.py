"""Checks beyond the schema: located errors and warnings for what a schema cannot say."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framework0_errors.config import (
    InvalidReferenceError,
    RetryConfig,
    ScriptletRef,
    StepErrorHandling,
    check_recipe,
    load_recipe_config,
    resolve_reference,
    worst_case_seconds,
)
from framework0_errors.orchestrator.problems import Problem, RecipeInvalid
from framework0_errors.orchestrator.yamlsource import Locator, parse_yaml

MakeModule = Callable[[str, str], None]


def check(text: str, environ: dict[str, str] | None = None) -> list[Problem]:
    """Run check_recipe on YAML text."""
    data, locator = parse_yaml(textwrap.dedent(text), "r.yaml")
    return check_recipe(data, locator, environ=environ or {})


def only(problems: list[Problem]) -> Problem:
    """Return the one problem found."""
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write importable modules under a temporary folder on sys.path; forget them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    tops: set[str] = set()

    def make(name: str, source: str) -> None:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            package = tmp_path.joinpath(*parts[:depth])
            package.mkdir(exist_ok=True)
            (package / "__init__.py").touch()
        tmp_path.joinpath(*parts[:-1], parts[-1] + ".py").write_text(textwrap.dedent(source))
        tops.add(parts[0])
        importlib.invalidate_caches()

    yield make
    for loaded in [n for n in sys.modules if n.split(".")[0] in tops]:
        del sys.modules[loaded]


# ------------------------------------------------------------------ retry delays


def test_initial_delay_above_max_delay_is_an_error_at_initial_delay() -> None:
    """initial_delay > max_delay is reported where initial_delay is written."""
    problem = only(
        check(
            """
            steps:
              - name: a
                error_handling:
                  retry: {max_delay: 2, initial_delay: 5}
            """
        )
    )
    assert problem.severity == "error"
    assert problem.path == "steps[0].error_handling.retry.initial_delay"
    assert "retry.initial_delay (5s) is greater than retry.max_delay (2s)" in problem.message


def test_delay_problem_from_defaults_is_placed_in_defaults_and_names_the_steps() -> None:
    """A value from defaults is located there, once, naming every step it affects."""
    problem = only(
        check(
            """
            error_handling:
              defaults:
                retry: {max_delay: 0.5}
            steps:
              - {name: a, error_handling: {}}
              - {name: b}
            """
        )
    )
    assert problem.path == "error_handling.defaults.retry.max_delay"
    assert (problem.line, problem.column) == (4, 13)
    assert problem.message.endswith("(used by steps 'a', 'b')")


def test_rollback_retry_delays_are_checked_too() -> None:
    """rollback.retry gets the same delay check."""
    problem = only(
        check(
            """
            steps:
              - name: a
                function: f
                error_handling:
                  rollback: {scriptlet: builtins:print, retry: {initial_delay: 9, max_delay: 1}}
            """
        )
    )
    assert problem.path == "steps[0].error_handling.rollback.retry.initial_delay"


# ------------------------------------------------------------------ error names


@pytest.mark.parametrize(
    "selector",
    ["ConnectionError", "category:network", "json.JSONDecodeError", "json.decoder.JSONDecodeError"],
)
def test_resolvable_error_names_pass(selector: str) -> None:
    """Builtins, categories and importable dotted exception classes raise nothing."""
    text = f"steps: [{{name: a, error_handling: {{retry: {{retry_on: ['{selector}']}}}}}}]"
    assert check(text) == []


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ("DeadlockDetected", "not a builtin exception"),
        ("nosuchpkg_f0.errors.Boom", "module 'nosuchpkg_f0' not found here"),
        ("json.NoSuchError", "module 'json' has no attribute 'NoSuchError'"),
        ("json.dumps", "it is a function, not an exception class"),
    ],
)
def test_unresolvable_error_names_are_warnings(selector: str, reason: str) -> None:
    """Names that cannot be checked warn (matching is by name), saying why."""
    text = (
        f"steps: [{{name: a, error_handling: {{fallback: {{value: {{}}, on: ['{selector}']}}}}}}]"
    )
    problem = only(check(text))
    assert problem.severity == "warning"
    assert problem.path == "steps[0].error_handling.fallback.on[0]"
    assert f"cannot check '{selector}'" in problem.message
    assert reason in problem.message


def test_error_name_in_a_module_that_fails_to_import_says_what_it_raised(
    make_module: MakeModule,
) -> None:
    """A module raising on import makes a warning quoting the exception."""
    make_module("f0chk_broken", "raise RuntimeError('boom')\n")
    text = "steps: [{name: a, error_handling: {retry: {give_up_on: [f0chk_broken.Err]}}}]"
    problem = only(check(text))
    assert "importing 'f0chk_broken' raised RuntimeError: boom" in problem.message


# ------------------------------------------------------------------ scriptlets


def test_importable_scriptlets_pass(make_module: MakeModule) -> None:
    """Fallback and rollback scriptlets in every reference form import cleanly."""
    make_module(
        "f0chk_ok.steps",
        """
        def Process(context, args):
            return 0

        class Undo:
            def run(self, context, args):
                return 0
        """,
    )
    text = """
        steps:
          - name: a
            function: Process
            error_handling:
              fallback: {scriptlet: f0chk_ok.steps}
              rollback: {scriptlet: {module: f0chk_ok.steps, function: Undo}}
          - name: b
            function: Process
            error_handling:
              fallback: {scriptlet: "f0chk_ok.steps:Process"}
              rollback: {scriptlet: {module: f0chk_ok.steps}}
    """
    assert check(text) == []


@pytest.mark.parametrize(
    ("source", "ref", "reason"),
    [
        ("X = 1\n", "f0chk_mod_missing.nope:F", "module 'f0chk_mod_missing' not found"),
        ("X = 1\n", "f0chk_mod:F", "module 'f0chk_mod' has no attribute 'F'"),
        ("X = 1\n", "f0chk_mod:X", "'X' is a int, not a function or class"),
        ("raise ValueError('bad config')\n", "f0chk_mod:F", "raised ValueError: bad config"),
        ("import f0chk_absent_dep\n", "f0chk_mod:F", "raised ModuleNotFoundError"),
        ("import sys\nsys.exit(3)\n", "f0chk_mod:F", "raised SystemExit: 3"),
    ],
    ids=["no-module", "no-attribute", "not-callable", "raises", "missing-dependency", "exits"],
)
def test_unusable_scriptlets_are_errors_saying_why(
    make_module: MakeModule, source: str, ref: str, reason: str
) -> None:
    """A fallback scriptlet that cannot be imported is an error with the reason."""
    make_module("f0chk_mod", source)
    problem = only(
        check(f"steps: [{{name: a, error_handling: {{fallback: {{scriptlet: '{ref}'}}}}}}]")
    )
    assert problem.severity == "error"
    assert problem.path == "steps[0].error_handling.fallback.scriptlet"
    assert "fallback scriptlet" in problem.message
    assert reason in problem.message


def test_module_only_reference_needs_the_step_function() -> None:
    """`pkg.mod` without a step function cannot name anything."""
    problem = only(check("steps: [{name: a, error_handling: {rollback: {scriptlet: json}}}]"))
    assert "names no function and the step has none" in problem.message


def test_scriptlet_from_a_policy_is_reported_in_the_policy() -> None:
    """A bad scriptlet written in a policy is located in the policy, naming the step."""
    problem = only(
        check(
            """
            error_handling:
              policies:
                p: {fallback: {scriptlet: "json:nothing_here"}}
            steps: [{name: a, error_handling: {use: p}}]
            """
        )
    )
    assert problem.path == "error_handling.policies.p.fallback.scriptlet"
    assert problem.message.endswith("(used by step 'a')")


def test_imports_happen_once_per_check(make_module: MakeModule) -> None:
    """Every step naming the same module shares one import."""
    make_module(
        "f0chk_count",
        """
        import builtins
        builtins.f0chk_imports = getattr(builtins, "f0chk_imports", 0) + 1
        def F(context, args):
            return 0
        """,
    )
    steps = ", ".join(
        f"{{name: s{i}, error_handling: {{fallback: {{scriptlet: 'f0chk_count:F'}}}}}}"
        for i in range(3)
    )
    assert check(f"steps: [{steps}]") == []
    import builtins

    assert builtins.f0chk_imports == 1  # type: ignore[attr-defined]
    del builtins.f0chk_imports  # type: ignore[attr-defined]


# ------------------------------------------------------------------ deadline


def test_worst_case_beyond_the_deadline_warns_with_both_numbers() -> None:
    """3 x 10s attempts + 1s + 2s of backoff = 33s does not fit a 20s deadline."""
    problem = only(
        check(
            """
            steps:
              - name: a
                error_handling:
                  retry: {deadline: 20}
                  timeout: {seconds: 10}
            """
        )
    )
    assert problem.severity == "warning"
    assert problem.path == "steps[0].error_handling.retry.deadline"
    assert "worst case is 33s (3 attempts x 10s timeout + 3s of backoff)" in problem.message
    assert "retry.deadline 20s" in problem.message


def test_backoff_alone_beyond_the_deadline_warns_without_a_timeout() -> None:
    """Without a timeout, only the waits are known: 1+2+4+8 = 15s > 10s."""
    problem = only(
        check("steps: [{name: a, error_handling: {retry: {max_attempts: 5, deadline: 10}}}]")
    )
    assert "the backoff waits alone add up to 15s" in problem.message


def test_a_worst_case_past_a_floats_range_says_so() -> None:
    """3 attempts of 1e308s add up past what a float holds: no 'infs' in the warning."""
    problem = only(
        check(
            "steps: [{name: a, error_handling: "
            "{retry: {deadline: 10}, timeout: {seconds: 1.0e+308}}}]"
        )
    )
    assert "the worst case is over 1.79769e+308s (3 attempts x 1e+308s timeout" in (problem.message)


def test_worst_case_that_fits_is_silent() -> None:
    """3 x 1s + 3s = 6s fits a 10s deadline."""
    text = "steps: [{name: a, error_handling: {retry: {deadline: 10}, timeout: {seconds: 1}}}]"
    assert check(text) == []


@pytest.mark.parametrize(
    ("retry", "timeout", "expected"),
    [
        ({"max_attempts": 4, "backoff_strategy": "fixed", "initial_delay": 2}, None, 6.0),
        ({"max_attempts": 4, "backoff_strategy": "linear", "initial_delay": 2}, 1.0, 4 + 12.0),
        ({"max_attempts": 5, "backoff_strategy": "linear", "max_delay": 3}, None, 1 + 2 + 3 + 3.0),
        ({"max_attempts": 6, "max_delay": 5}, None, 1 + 2 + 4 + 5 + 5.0),
        ({"max_attempts": 3, "multiplier": 1}, 2.0, 6 + 2.0),
        ({"max_attempts": 1}, 3.0, 3.0),
        ({"max_attempts": 9, "initial_delay": 0}, None, 0.0),
        ({"max_attempts": 3, "initial_delay": 9, "max_delay": 4}, None, 8.0),
    ],
)
def test_worst_case_seconds(retry: dict[str, Any], timeout: float | None, expected: float) -> None:
    """The worst case follows the documented delay formulas, capped at max_delay."""
    worst, _ = worst_case_seconds(RetryConfig.model_validate(retry), timeout)
    assert worst == pytest.approx(expected)


def _naive(retry: RetryConfig) -> float:
    total = 0.0
    for n in range(1, retry.max_attempts):
        if retry.backoff_strategy == "fixed":
            delay = retry.initial_delay
        elif retry.backoff_strategy == "linear":
            delay = retry.initial_delay * n
        else:
            delay = retry.initial_delay * retry.multiplier ** (n - 1)
        total += min(delay, retry.max_delay)
    return total


@given(
    st.builds(
        dict,
        max_attempts=st.integers(1, 40),
        backoff_strategy=st.sampled_from(["fixed", "linear", "exponential"]),
        initial_delay=st.floats(0, 50),
        multiplier=st.floats(1, 4),
        max_delay=st.one_of(st.floats(0, 500), st.just(math.inf)),
    )
)
def test_closed_form_backoff_matches_the_step_by_step_sum(doc: dict[str, Any]) -> None:
    """The closed forms used for huge max_attempts equal the plain sum."""
    retry = RetryConfig.model_validate(doc)
    _, waits = worst_case_seconds(retry, None)
    assert waits == pytest.approx(_naive(retry), rel=1e-6, abs=1e-6)


def test_huge_attempt_counts_are_computed_at_once() -> None:
    """A billion attempts take no time to assess, and overflow gives infinity."""
    retry = RetryConfig.model_validate({"max_attempts": 10**9, "initial_delay": 1e-9})
    assert worst_case_seconds(retry, None)[1] == pytest.approx(60 * (10**9 - 1), rel=1e-3)
    unbounded = RetryConfig.model_validate({"max_attempts": 10**6, "max_delay": math.inf})
    assert worst_case_seconds(unbounded, None)[1] == math.inf


# ------------------------------------------------------------------ shared names


def test_breaker_shared_with_different_settings_is_an_error_naming_the_other_step() -> None:
    """Two steps sharing breaker 'api' with different thresholds: error at the second."""
    problem = only(
        check(
            """
            steps:
              - {name: a, error_handling: {circuit_breaker: {name: api, failure_threshold: 3}}}
              - {name: b, error_handling: {circuit_breaker: {name: api}}}
            """
        )
    )
    assert problem.path == "steps[1].error_handling.circuit_breaker"
    assert "circuit breaker 'api' is shared with step 'a'" in problem.message
    assert "failure_threshold 5 here, 3 there" in problem.message


def test_a_breaker_left_to_its_step_is_shared_by_a_step_naming_it() -> None:
    """Step b names step a's unnamed breaker: one breaker, so the settings must agree."""
    problem = only(
        check(
            """
            steps:
              - {name: a, error_handling: {circuit_breaker: {failure_threshold: 2}}}
              - {name: b, error_handling: {circuit_breaker: {name: a, failure_threshold: 3}}}
              - {name: c, error_handling: {circuit_breaker: {failure_threshold: 3}}}
            """
        )
    )
    assert problem.path == "steps[1].error_handling.circuit_breaker.failure_threshold"
    assert "circuit breaker 'a' is shared with step 'a'" in problem.message
    assert "(failure_threshold 3 here, 2 there)" in problem.message


def test_bulkhead_shared_with_different_settings_is_located_at_the_differing_key() -> None:
    """A differing key written by the step is where the problem is shown."""
    problem = only(
        check(
            """
            error_handling:
              defaults: {bulkhead: {name: db}}
            steps:
              - {name: a}
              - {name: b, error_handling: {bulkhead: {max_wait: 3}}}
            """
        )
    )
    assert problem.path == "steps[1].error_handling.bulkhead.max_wait"
    assert "bulkhead 'db' is shared with step 'a'" in problem.message


def test_shared_names_configured_alike_are_fine() -> None:
    """Steps sharing a breaker through one policy raise nothing; distinct names neither."""
    text = """
        error_handling:
          policies: {api: {circuit_breaker: {name: api, failure_threshold: 2}}}
        steps:
          - {name: a, error_handling: {use: api}}
          - {name: b, error_handling: {use: api}}
          - {name: c, error_handling: {circuit_breaker: {}}}
          - {name: d, error_handling: {circuit_breaker: {failure_threshold: 9}}}
    """
    assert check(text) == []


# ------------------------------------------------------------------ notifications


def test_notify_naming_an_unknown_channel_lists_the_defined_ones() -> None:
    """`notify: [opz]` is an error suggesting 'ops' and listing the channels."""
    problem = only(
        check(
            """
            error_handling:
              notifications:
                channels: {ops: {type: log}, mail: {type: log}}
            steps: [{name: a, error_handling: {notify: [ops, opz]}}]
            """
        )
    )
    assert problem.path == "steps[0].error_handling.notify[1]"
    assert "unknown notification channel 'opz'; did you mean 'ops'?" in problem.message
    assert "defined channels: mail, ops" in problem.message


def test_notify_without_any_channels_says_where_to_define_them() -> None:
    """With no notifications section, notify names cannot resolve."""
    problem = only(check("steps: [{name: a, error_handling: {notify: [ops]}}]"))
    assert "no channels are defined" in problem.message


def test_routes_naming_unknown_channels_or_steps_are_reported() -> None:
    """A route's unknown channel is an error; an unknown step name is a warning."""
    problems = check(
        """
        error_handling:
          notifications:
            channels: {ops: {type: log}}
            routes:
              - {match: {steps: [a, ghost]}, channels: [ops, pager]}
        steps: [{name: a}]
        """
    )
    assert [(p.path, p.severity) for p in problems] == [
        ("error_handling.notifications.routes[0].match.steps[1]", "warning"),
        ("error_handling.notifications.routes[0].channels[1]", "error"),
    ]
    assert "'pager'" in problems[1].message
    assert "(used by" not in problems[1].message


def test_unset_environment_variables_in_channels_are_errors() -> None:
    """`${SLACK_URL}` unset is an error at the key; a set variable is fine."""
    text = """
        error_handling:
          notifications:
            channels:
              chat: {type: slack, webhook_url: "${SLACK_URL}"}
              hook: {type: webhook, url: "https://x/${HOOK}", headers: {A: "${TOKEN}"}}
              mail: {type: email, host: h, port: 25, from: a, to: ["${ONCALL}"]}
        steps: [{name: a}]
    """
    problems = check(text, environ={"HOOK": "1"})
    assert [(p.path, p.message) for p in problems] == [
        (
            "error_handling.notifications.channels.chat.webhook_url",
            "environment variable 'SLACK_URL' is not set",
        ),
        (
            "error_handling.notifications.channels.hook.headers.A",
            "environment variable 'TOKEN' is not set",
        ),
        (
            "error_handling.notifications.channels.mail.to[0]",
            "environment variable 'ONCALL' is not set",
        ),
    ]
    assert check(text, environ={"HOOK": "", "SLACK_URL": "u", "TOKEN": "t", "ONCALL": "o"}) == []


# ------------------------------------------------------------------ loading


def test_unknown_use_is_located_at_the_name() -> None:
    """An unknown `use` is a problem placed on the misspelt name."""
    problem = only(
        check(
            """
            error_handling: {policies: {network: {}}}
            steps: [{name: a, error_handling: {use: [network, netwrk]}}]
            """
        )
    )
    assert problem.path == "steps[0].error_handling.use[1]"
    assert "did you mean 'network'?" in problem.message


def test_policy_cycle_is_located() -> None:
    """A cycle of policies is a problem placed where it closes."""
    problem = only(
        check(
            """
            error_handling: {policies: {a: {use: b}, b: {use: a}}}
            steps: [{name: s, error_handling: {use: a}}]
            """
        )
    )
    assert problem.path == "error_handling.policies.b.use"


def test_values_the_models_reject_are_located_even_after_the_schema() -> None:
    """NaN passes JSON Schema minimums but not the models: still a located problem."""
    problem = only(check("steps: [{name: a, error_handling: {retry: {initial_delay: .nan}}}]"))
    assert problem.path == "steps[0].error_handling.retry.initial_delay"
    recipe_problem = only(check("error_handling: {errors: {keep: 0}}\nsteps: []"))
    assert recipe_problem.path == "error_handling.errors.keep"


def test_bad_regular_expressions_are_located_at_the_pattern() -> None:
    """A regex the schema's format check may miss is reported at its own key, plainly."""
    text = "error_handling: {classification: [{match: {message: '('}, hint: h}]}\nsteps: []"
    problem = only(check(text))
    assert problem.path == "error_handling.classification[0].match.message"
    assert problem.message.startswith("not a valid regular expression")


def test_union_errors_are_located_at_the_real_key() -> None:
    """pydantic's union tags in error locations are dropped from the path."""
    problems = check("steps: [{name: a, error_handling: {fallback: {scriptlet: {module: 1}}}}]")
    assert {p.path for p in problems} == {"steps[0].error_handling.fallback.scriptlet.module"}


@pytest.mark.parametrize(
    ("block", "path"),
    [("[retry]", "steps[0].error_handling"), ("{use: [1]}", "steps[0].error_handling.use[0]")],
)
def test_step_blocks_the_models_reject_are_located(block: str, path: str) -> None:
    """A step block that is not valid on its own is reported at the step, not merged."""
    problems = check(f"steps: [{{name: a, error_handling: {block}}}]")
    assert problems
    assert {p.path for p in problems} == {path}


def test_odd_recipe_shapes_do_not_crash() -> None:
    """Steps that are not mappings, or have no name, are skipped or named by position."""
    data = {"steps": ["x", {"error_handling": {"notify": ["ops"]}}]}
    problem = only(check_recipe(data, Locator("r.yaml"), environ={}))
    assert problem.message.endswith(
        "no channels are defined (add them under error_handling.notifications.channels)"
    )
    assert check_recipe({"steps": "nope"}, Locator("r.yaml")) == []


def test_load_recipe_config_gives_models_by_step_name() -> None:
    """The runtime gets the recipe block and each step's effective block (None if nothing)."""
    data, _ = parse_yaml(
        textwrap.dedent(
            """
            error_handling: {policies: {p: {timeout: {seconds: 3}}}}
            steps:
              - {name: a, error_handling: {use: p}}
              - {name: b}
            """
        ),
        "r.yaml",
    )
    recipe, steps = load_recipe_config(data)
    assert set(recipe.policies) == {"p"}
    block = steps["a"]
    assert isinstance(block, StepErrorHandling)
    assert block.timeout is not None
    assert block.timeout.seconds == 3.0
    assert steps["b"] is None


def test_load_recipe_config_raises_located_problems() -> None:
    """Invalid configuration raises RecipeInvalid with located problems."""
    data, locator = parse_yaml("steps: [{name: a, error_handling: {use: ghost}}]\n", "r.yaml")
    with pytest.raises(RecipeInvalid) as caught:
        load_recipe_config(data, locator=locator)
    assert str(caught.value).startswith("r.yaml:1:")
    with pytest.raises(RecipeInvalid):
        load_recipe_config({"error_handling": {"on_failure": "explode"}, "steps": []})


# ------------------------------------------------------------------ references


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("pkg.mod", ("pkg.mod", "StepFn")),
        ("pkg.mod:Other", ("pkg.mod", "Other")),
        ({"module": "pkg.mod"}, ("pkg.mod", "StepFn")),
        ({"module": "pkg.mod", "function": "F"}, ("pkg.mod", "F")),
        (ScriptletRef(module="pkg.mod", function="G"), ("pkg.mod", "G")),
    ],
)
def test_resolve_reference_forms(ref: Any, expected: tuple[str, str]) -> None:
    """Every reference form gives (module, function), the step's function by default."""
    assert resolve_reference(ref, "StepFn") == expected


@pytest.mark.parametrize(
    ("ref", "default", "message"),
    [
        ("pkg:a:b", "F", "malformed"),
        (3, "F", "malformed"),
        ({"module": 3}, "F", "malformed"),
        ("pkg.mod", None, "names no function"),
    ],
)
def test_resolve_reference_rejects_what_names_nothing(ref: Any, default: Any, message: str) -> None:
    """Malformed references and module-only references without a default raise."""
    with pytest.raises(InvalidReferenceError, match=message):
        resolve_reference(ref, default)
