"""Load a Framework0 recipe: its steps, their graph, and every problem, located."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from .middleware import KeyClaim
from .problems import Problem, RecipeInvalid
from .schema_check import schema_problems
from .schema_quick import surely_valid
from .scriptlets import ScriptletImportError, StepCallable, add_search_paths, resolve_callable
from .yamlsource import Locator, load_yaml, parse_yaml

__all__ = [
    "Recipe",
    "Step",
    "build_recipe_schema",
    "load_recipe",
    "non_finite_problems",
    "parse_recipe",
]

SCHEMA_ID = "https://framework0-errors.dev/schemas/recipe.schema.json"

_STEP_PROPERTIES: dict[str, Any] = {
    "idx": {
        "type": "integer",
        "description": "Position of the step; steps run in idx order, then by depends_on.",
        "examples": [1],
    },
    "name": {
        "type": "string",
        "minLength": 1,
        "description": "Unique name of the step, used by depends_on and in reports.",
        "examples": ["fetch_orders"],
    },
    "type": {
        "enum": ["python"],
        "default": "python",
        "description": "Kind of step; only python steps exist.",
        "examples": ["python"],
    },
    "module": {
        "type": "string",
        "minLength": 1,
        "description": "Python module with the step's code, importable from the recipe's folder.",
        "examples": ["acme.steps"],
    },
    "function": {
        "type": "string",
        "minLength": 1,
        "description": "A class with run(self, context, args) or a function f(context, args).",
        "examples": ["FetchOrders"],
    },
    "args": {
        "type": "object",
        "default": {},
        "description": "Arguments handed to the step's code.",
        "examples": [{"url": "https://example.com/orders"}],
    },
    "depends_on": {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}},
        ],
        "default": [],
        "description": "Steps that must succeed before this one starts.",
        "examples": [["fetch_orders"]],
    },
    "success": {
        "type": "object",
        "additionalProperties": False,
        "description": "What must hold for the step to count as succeeded.",
        "properties": {
            "ctx_has_keys": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "default": [],
                "description": "Context keys the step must have set.",
                "examples": [["orders"]],
            }
        },
        "examples": [{"ctx_has_keys": ["orders"]}],
    },
}

_RECIPE_PROPERTIES: dict[str, Any] = {
    "test_meta": {
        "type": "object",
        "description": "Free-form metadata about the recipe (Framework0's test_meta).",
        "examples": [{"test_id": "ORD-001", "tester": "ops"}],
    },
    "steps": {
        "type": "array",
        "items": {"$ref": "#/$defs/step"},
        "description": "The steps of the recipe.",
    },
}


def build_recipe_schema(
    claims: Sequence[KeyClaim], *, accepted: Collection[KeyClaim] = ()
) -> dict[str, Any]:
    """Return the JSON Schema of a whole recipe: the host's keys plus plugin claims.

    The values of the ``accepted`` claims are allowed as they are (their
    claim's ``accepts`` judged them already).
    """
    step_props = dict(_STEP_PROPERTIES)
    recipe_props = dict(_RECIPE_PROPERTIES)
    defs: dict[str, Any] = {}
    for claim in claims:
        target = step_props if claim.level == "step" else recipe_props
        judged = any(claim is other for other in accepted)
        target[claim.key] = True if judged else dict(claim.schema)
        defs.update(claim.defs)
    defs["step"] = {
        "type": "object",
        "description": "One step of a recipe.",
        "properties": step_props,
        "required": ["name", "module", "function"],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Framework0 recipe",
        "description": "A Framework0 recipe: steps that share a Context.",
        "type": "object",
        "properties": recipe_props,
        "required": ["steps"],
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a recipe, as loaded.

    ``raw`` is the step's mapping as written (plugins read their keys from
    it); ``position`` is its index in ``steps``.
    """

    name: str
    idx: int
    position: int
    module: str
    function: str
    args: Mapping[str, Any]
    depends_on: tuple[str, ...]
    ctx_has_keys: tuple[str, ...]
    raw: Mapping[str, Any]
    call: StepCallable | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Recipe:
    """A loaded recipe: its steps, its raw data, and where everything was written.

    ``extras`` is a namespace for plugins, keyed by plugin name, e.g. for
    configuration parsed while validating so a run need not parse it again.
    """

    path: str
    name: str
    steps: tuple[Step, ...]
    raw: Mapping[str, Any]
    locator: Locator
    warnings: tuple[Problem, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def step(self, name: str) -> Step:
        """Return the step called ``name``.

        Raises:
            KeyError: when there is no such step.
        """
        return self._by_name[name]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.steps})

    def dependents(self) -> dict[str, list[str]]:
        """Map each step name to the names of the steps that depend on it."""
        out: dict[str, list[str]] = {s.name: [] for s in self.steps}
        for step in self.steps:
            for dep in step.depends_on:
                out[dep].append(step.name)
        return out


def load_recipe(
    path: str | Path,
    *,
    claims: Sequence[KeyClaim] = (),
    resolve: bool = True,
) -> Recipe:
    """Read, validate and resolve the recipe at ``path``.

    Raises:
        RecipeInvalid: with every problem found, each located in the file.
    """
    data, locator = load_yaml(path)
    if resolve:
        add_search_paths([Path(path).parent, Path.cwd()])
    return _build(str(path), data, locator, claims, resolve=resolve)


def parse_recipe(
    text: str, file: str = "<recipe>", *, claims: Sequence[KeyClaim] = (), resolve: bool = True
) -> Recipe:
    """Like :func:`load_recipe`, from text."""
    data, locator = parse_yaml(text, file)
    if resolve:
        add_search_paths([Path.cwd()])
    return _build(file, data, locator, claims, resolve=resolve)


def _build(
    file: str,
    data: Any,
    locator: Locator,
    claims: Sequence[KeyClaim],
    *,
    resolve: bool,
) -> Recipe:
    if data is None:
        raise RecipeInvalid([Problem(file, 1, 1, "the file is empty; a recipe needs 'steps'")])
    schema = build_recipe_schema(claims, accepted=_accepted(claims, data))
    problems = []
    if not surely_valid(schema, data):  # judged quickly, or by jsonschema, which explains
        validator = Draft202012Validator(schema, format_checker=_FORMATS)
        helps = {k: v for claim in claims for k, v in claim.pattern_help.items()}
        problems = schema_problems(validator, data, locator, pattern_help=helps)
    problems += non_finite_problems(data, (), locator)
    if problems:
        raise RecipeInvalid(problems)
    steps = [_step(raw, i) for i, raw in enumerate(data["steps"])]
    problems = _graph_problems(steps, locator)
    if resolve and not problems:
        steps, problems = _resolve(steps, locator)
    if problems:
        raise RecipeInvalid(problems)
    return Recipe(
        path=file,
        name=Path(file).stem,
        steps=tuple(sorted(steps, key=lambda s: (s.idx, s.position))),
        raw=data,
        locator=locator,
    )


def _format_checker() -> FormatChecker:
    # jsonschema's formats, with a regex check that also refuses what overflows
    # re's limits (a{4294967296}) instead of raising OverflowError.
    checker = FormatChecker(formats=Draft202012Validator.FORMAT_CHECKER.checkers)

    @checker.checks("regex", raises=(re.error, OverflowError))
    def is_regex(value: object) -> bool:
        if isinstance(value, str):
            re.compile(value)
        return True

    return checker


_FORMATS = _format_checker()


def _accepted(claims: Sequence[KeyClaim], data: Any) -> list[KeyClaim]:
    # The claims whose quick judge accepts every value they have in ``data``.
    # Anything unexpected (steps not a list, say) is left to the schema.
    if not isinstance(data, dict):
        return []
    steps = data.get("steps")
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        return []
    accepted = []
    for claim in claims:
        accepts = claim.accepts
        if accepts is None:
            continue
        holders = steps if claim.level == "step" else [data]
        if all(claim.key not in holder or accepts(holder[claim.key]) for holder in holders):
            accepted.append(claim)
    return accepted


def non_finite_problems(data: Any, path: tuple[Any, ...], locator: Locator) -> list[Problem]:
    """Return a located problem for every infinite or NaN number in ``data``.

    YAML has ``.inf`` and ``.nan`` and Python has ``float("inf")``; JSON (and so the
    schema, which cannot see them, and the Context) does not.
    """
    if isinstance(data, float) and not math.isfinite(data):
        return [locator.problem(path, f"{data} is not a finite number")]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in non_finite_problems(v, (*path, k), locator)]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in non_finite_problems(v, (*path, i), locator)]
    return []


def _step(raw: Mapping[str, Any], position: int) -> Step:
    deps = raw.get("depends_on", ())
    return Step(
        name=raw["name"],
        idx=raw.get("idx", position),
        position=position,
        module=raw["module"],
        function=raw["function"],
        args=raw.get("args", {}),
        depends_on=(deps,) if isinstance(deps, str) else tuple(deps),
        ctx_has_keys=tuple(raw.get("success", {}).get("ctx_has_keys", ())),
        raw=raw,
    )


def _graph_problems(steps: list[Step], locator: Locator) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for step in steps:
        if step.name in seen:
            problems.append(
                locator.problem(
                    ("steps", step.position, "name"),
                    f"duplicate step name '{step.name}' (first used by steps[{seen[step.name]}])",
                )
            )
        else:
            seen[step.name] = step.position
    for step in steps:
        for i, dep in enumerate(step.depends_on):
            where: tuple[Any, ...] = ("steps", step.position, "depends_on")
            if isinstance(step.raw.get("depends_on"), list):
                where = (*where, i)
            if dep not in seen:
                problems.append(locator.problem(where, f"depends on unknown step '{dep}'"))
            elif dep == step.name:
                problems.append(locator.problem(where, f"step '{dep}' depends on itself"))
    if not problems:
        cycle = _find_cycle(steps)
        if cycle:
            first = next(s for s in steps if s.name == cycle[0])
            problems.append(
                locator.problem(
                    ("steps", first.position, "depends_on"),
                    "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                )
            )
    return problems


def _find_cycle(steps: list[Step]) -> list[str] | None:
    deps = {s.name: s.depends_on for s in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in deps:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            if i < len(deps[node]):
                stack.append((node, i + 1))
                nxt = deps[node][i]
                if state.get(nxt) == 1:
                    return path[path.index(nxt) :]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _resolve(steps: list[Step], locator: Locator) -> tuple[list[Step], list[Problem]]:
    problems: list[Problem] = []
    resolved: list[Step] = []
    cache: dict[tuple[str, str], StepCallable] = {}
    for step in steps:
        key = (step.module, step.function)
        try:
            call = cache.get(key) or resolve_callable(step.module, step.function)
        except ScriptletImportError as exc:
            problems.append(locator.problem(("steps", step.position, exc.part), str(exc)))
            continue
        cache[key] = call
        resolved.append(_with_call(step, call))
    return resolved, problems


def _with_call(step: Step, call: StepCallable) -> Step:
    from dataclasses import replace

    return replace(step, call=call)
