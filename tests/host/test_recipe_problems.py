"""Every problem in a recipe is reported located, with exit code 2 and no traceback."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from framework0_errors.orchestrator import KeyClaim, RecipeInvalid, parse_recipe

from ..conftest import CliResult, Project

pytestmark = pytest.mark.usefixtures("host_only")

GOOD_MODULE = """
def ok(context, args):
    return 0
"""


def _check(result: CliResult, place: str, words: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.err + result.out
    line = next(x for x in (result.err + result.out).splitlines() if words in x)
    assert place in line, line


@pytest.mark.parametrize(
    ("recipe", "place", "words"),
    [
        ("steps:\n  - name: a\n    module: m\n", ":2:5:", "missing required key 'function'"),
        ("steps:\n  - module: m\n    function: ok\n", ":2:5:", "missing required key 'name'"),
        ("steps:\n  - name: a\n    function: ok\n", ":2:5:", "missing required key 'module'"),
        (
            "steps:\n  - name: a\n    module: m\n    function: ok\n"
            "  - name: a\n    module: m\n    function: ok\n",
            ":5:5:",
            "duplicate step name 'a'",
        ),
        (
            "steps:\n  - name: a\n    module: m\n    function: ok\n    depends_on: [zz]\n",
            ":5:18:",
            "unknown step 'zz'",
        ),
        (
            "steps:\n  - name: a\n    module: m\n    function: ok\n    depends_on: a\n",
            ":5:5:",
            "depends on itself",
        ),
        (
            "steps:\n  - name: a\n    module: m\n    function: ok\n    depends_on: [b]\n"
            "  - name: b\n    module: m\n    function: ok\n    depends_on: [a]\n",
            ":5:5:",
            "dependency cycle: a -> b -> a",
        ),
        ("steps:\n  - name: a\n    module: nowhere\n    function: ok\n", ":3:5:", "not found"),
        ("steps:\n  - name: a\n    module: m\n    function: nope\n", ":4:5:", "no attribute"),
        (
            "steps:\n  - name: a\n    module: m\n    funtion: ok\n",
            ":4:5:",
            "did you mean 'function'",
        ),
        ("steps:\n  - name: a\n    module: m\n    function: ok\n    idx: x\n", ":5:5:", "integer"),
        ("steps: [\n", ":2:1:", "YAML syntax error"),
        ("", ":1:1:", "the file is empty"),
        ("- a\n", ":1:1:", "expected a mapping"),
        ("stepz: []\n", ":1:1:", "did you mean 'steps'"),
    ],
)
def test_each_problem_is_located(
    project: Project, run_cli: Callable[..., CliResult], recipe: str, place: str, words: str
) -> None:
    """Each kind of problem gives exit 2 and file:line:col with what is wrong."""
    project.module("m", GOOD_MODULE)
    path = project.recipe(recipe)
    _check(run_cli("run", path), path + place, words)


def test_missing_file(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """A missing recipe file is one located line and exit 2."""
    _check(run_cli("run", "nope.yaml"), "nope.yaml:1:1:", "file not found")


def test_import_error_says_why(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """A module whose import raises is reported with the exception."""
    project.module("broken", "raise RuntimeError('no database configured')\n")
    project.module("needs", "import not_installed_anywhere\n")
    path = project.recipe(
        """
        steps:
          - name: a
            module: broken
            function: f
          - name: b
            module: needs
            function: f
        """
    )
    result = run_cli("run", path)
    _check(result, path + ":3:5:", "RuntimeError: no database configured")
    _check(result, path + ":6:5:", "no module named 'not_installed_anywhere'")


def test_all_problems_at_once(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """Every schema problem of a file is printed, not just the first."""
    path = project.recipe(
        """
        steps:
          - name: a
            module: m
          - name: b
            function: f
            extra: 1
        """
    )
    result = run_cli("validate", path)
    assert result.code == 2
    lines = result.out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(path + ":2:5:")
    assert lines[2].startswith(path + ":6:5: steps[1].extra: unknown key 'extra'")


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("x = 3\n", "is a int, not a function or class"),
        ("class X:\n    pass\n", r"has no run\(\) method"),
        (
            "class X:\n    def __init__(self, needed):\n        pass\n"
            "    def run(self, c, a):\n        return 0\n",
            "cannot be created without arguments",
        ),
    ],
)
def test_function_shapes(project: Project, source: str, words: str) -> None:
    """A function that is not callable or a class without run() is located."""
    project.module("shapes", source)
    name = "x" if source.startswith("x") else "X"
    with pytest.raises(RecipeInvalid, match=words) as info:
        parse_recipe(f"steps:\n  - name: a\n    module: shapes\n    function: {name}\n", "r.yaml")
    assert str(info.value).startswith("r.yaml:4:5:")


def test_dotted_function_and_without_resolving(project: Project) -> None:
    """``function`` may reach a nested attribute; resolve=False skips imports."""
    project.module(
        "nested", "class Outer:\n    @staticmethod\n    def f(c, a):\n        return 0\n"
    )
    recipe = parse_recipe(
        "steps:\n  - name: a\n    module: nested\n    function: Outer.f\n", "r.yaml"
    )
    assert recipe.steps[0].call is not None
    lazy = parse_recipe("steps:\n  - name: a\n    module: gone\n    function: f\n", resolve=False)
    assert lazy.steps[0].call is None
    assert lazy.step("a").module == "gone"
    with pytest.raises(KeyError):
        lazy.step("b")


def test_non_finite_numbers_are_located(
    project: Project, run_cli: Callable[..., CliResult]
) -> None:
    """YAML's .inf and .nan are not JSON: each is a located problem."""
    project.module("m", GOOD_MODULE)
    path = project.recipe(
        "steps:\n  - name: a\n    module: m\n    function: ok\n    args: {x: .inf}\n"
    )
    _check(run_cli("validate", path), path + ":5:12:", "inf is not a finite number")


def test_module_calling_sys_exit_on_import(
    project: Project, run_cli: Callable[..., CliResult]
) -> None:
    """A module that calls sys.exit() while imported is a located import problem."""
    project.module("quits", "import sys\nsys.exit(3)\n")
    path = project.recipe("steps:\n  - name: a\n    module: quits\n    function: f\n")
    _check(run_cli("run", path), path + ":3:5:", "importing it raised SystemExit: 3")


_LIMIT_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}}


def _limit_claim(seen: list[object], verdict: Callable[[object], bool]) -> KeyClaim:
    def accepts(value: object) -> bool:
        seen.append(value)
        return verdict(value)

    return KeyClaim("limit", "step", _LIMIT_SCHEMA, accepts=accepts)


def _limit_recipe(*values: int) -> str:
    lines = ["steps:"]
    for i, n in enumerate(values):
        lines += [f"  - name: s{i}", "    module: m", "    function: f", f"    limit: {{n: {n}}}"]
    lines.append("  - {name: plain, module: m, function: f}")
    return "\n".join(lines) + "\n"


def test_a_claims_quick_judge_stands_in_for_its_schema() -> None:
    """Values that ``accepts`` passes are not run through the claim's schema."""
    seen: list[object] = []
    # A judge that (wrongly) accepts n: 9 shows that the schema was not asked.
    recipe = parse_recipe(
        _limit_recipe(1, 9), claims=[_limit_claim(seen, lambda v: True)], resolve=False
    )
    assert seen == [{"n": 1}, {"n": 9}]
    assert recipe.steps[1].raw["limit"] == {"n": 9}


def test_a_refused_value_is_explained_by_the_schema() -> None:
    """When ``accepts`` refuses one value, the schema judges every value and locates the fault."""
    seen: list[object] = []
    claim = _limit_claim(seen, lambda v: v == {"n": 1})
    with pytest.raises(RecipeInvalid) as info:
        parse_recipe(_limit_recipe(1, 7, 8), claims=[claim], resolve=False)
    assert [str(p) for p in info.value.problems] == [
        "<recipe>:9:13: steps[1].limit.n: 7 is greater than the maximum of 5",
        "<recipe>:13:13: steps[2].limit.n: 8 is greater than the maximum of 5",
    ]
    assert seen == [{"n": 1}, {"n": 7}]  # the first refusal settles it


def test_a_recipe_of_unexpected_shape_goes_to_the_schema() -> None:
    """If ``steps`` is not a list of mappings, no judge is asked and the schema explains."""
    seen: list[object] = []
    with pytest.raises(RecipeInvalid, match="steps"):
        parse_recipe("steps: [1]\n", claims=[_limit_claim(seen, lambda v: True)], resolve=False)
    assert seen == []
