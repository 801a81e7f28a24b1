"""framework0 validate: the exact, located messages recipe authors see."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import CliResult, Project

HEAD = """steps:
  - name: fetch
    module: framework0_errors.demo.services
    function: FlakyService
    error_handling:
"""


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "      retry:\n        max_attemps: 3\n",
            ":7:9: steps[0].error_handling.retry.max_attemps: unknown key 'max_attemps'; "
            "did you mean 'max_attempts'?",
        ),
        (
            "      retry:\n        backoff_strategy: quadratic\n",
            ":7:9: steps[0].error_handling.retry.backoff_strategy: 'quadratic' is not allowed; "
            "use one of: 'fixed', 'linear', 'exponential'",
        ),
        (
            "      retry:\n        max_attempts: -1\n",
            ":7:9: steps[0].error_handling.retry.max_attempts: -1 is less than the minimum of 1",
        ),
        (
            "      timeout: 5\n",
            ":6:7: steps[0].error_handling.timeout: expected a mapping, got integer 5",
        ),
        (
            "      retry: {retry_on: ['category:NETWRK']}\n",
            ":6:26: steps[0].error_handling.retry.retry_on[0]: 'category:NETWRK' is not valid "
            "here; write an error name (ConnectionError, requests.exceptions.Timeout) or "
            "category:NAME with NAME one of SYSTEM, NETWORK, VALIDATION, BUSINESS, SECURITY, "
            "FRAMEWORK, UNKNOWN",
        ),
        (
            "      fallback: {scriptlet: a.b, value: {x: 1}}\n",
            ":6:7: steps[0].error_handling.fallback: give exactly one of: scriptlet, value",
        ),
        (
            "",
            ":5:5: steps[0].error_handling: expected a mapping, got null",
        ),
    ],
)
def test_schema_messages(
    project: Project, run_cli: Callable[..., CliResult], block: str, expected: str
) -> None:
    """Typos, enums, minimums and types: exit 2, file:line:col, path and what to do."""
    path = project.recipe(HEAD + block)
    result = run_cli("validate", path)
    assert result.code == 2
    assert result.out.splitlines() == [path + expected]


def test_unknown_policy_lists_known_ones(
    project: Project, run_cli: Callable[..., CliResult]
) -> None:
    """use: no_such_policy names the policies that exist."""
    text = "error_handling:\n  policies:\n    network: {retry: {max_attempts: 2}}\n    db: {}\n"
    path = project.recipe(text + HEAD + "      use: no_such_policy\n")
    result = run_cli("validate", path)
    assert result.code == 2
    assert "no_such_policy" in result.out
    assert "db, network" in result.out
    assert result.out.startswith(path + ":10:")


def test_run_validates_first(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """run refuses an invalid recipe before any step runs."""
    path = project.recipe(HEAD + "      retry:\n        max_attemps: 3\n")
    result = run_cli("run", path)
    assert result.code == 2
    assert "running" not in result.out
    assert "did you mean 'max_attempts'" in result.err


def test_warnings_do_not_fail(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """A deadline too short for the retries is a warning: validate exits 0, run still runs."""
    block = (
        "      retry: {max_attempts: 5, initial_delay: 10, deadline: 1}\n"
        "      timeout: {seconds: 1}\n"
    )
    path = project.recipe(HEAD + block + "    args: {fail_times: 0}\n")
    result = run_cli("validate", path)
    assert result.code == 0, result
    assert "warning:" in result.out
    ran = run_cli("run", path)
    assert ran.code == 0
    assert "warning:" in ran.err


def test_a_regex_beyond_re_limits_is_a_located_problem(
    project: Project, run_cli: Callable[..., CliResult]
) -> None:
    """a{4294967296} makes re raise OverflowError, not re.error: still one located line."""
    text = (
        "error_handling:\n  classification:\n    - match: {message: 'a{4294967296}'}\n"
        "      category: NETWORK\n"
    )
    path = project.recipe(text + HEAD + "      retry: {max_attempts: 2}\n")
    result = run_cli("validate", path)
    assert result.code == 2
    assert result.out.splitlines() == [
        path + ":3:15: error_handling.classification[0].match.message: 'a{4294967296}' is not "
        "a valid regular expression"
    ]
