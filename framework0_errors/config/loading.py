"""Parse the ``error_handling`` blocks of a recipe into models, merged per step.

The recipe-level block is parsed first; each step's own block is checked on
its own, then merged with ``defaults`` and ``use`` policies
(:mod:`.merge`) into the step's effective block. Pydantic's errors become
problems placed where the offending value is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..orchestrator.problems import Problem, RecipeInvalid
from ..orchestrator.yamlsource import Locator
from .merge import (
    NAMED_BY_STEP,
    MergedBlock,
    Path,
    PolicyCycleError,
    UnknownPolicyError,
    merge_layers,
)
from .models import RecipeErrorHandling
from .models import StepErrorHandling as Block

__all__ = ["LoadedConfig", "LoadedStep", "load_config", "load_recipe_config"]

_RECIPE: Path = ("error_handling",)


def load_recipe_config(
    raw_recipe: Mapping[str, Any], *, locator: Locator | None = None
) -> tuple[RecipeErrorHandling, dict[str, Block | None]]:
    """Return the recipe-level block and every step's effective block, by step name.

    A step without error handling (no block, no ``defaults``) maps to None.
    A breaker or bulkhead that is the step's own (unnamed, or named after the
    step) has no name in its block: read it as ``name or step_name``. Equal
    blocks are one object.

    Raises:
        RecipeInvalid: a block is invalid or ``use`` names an unknown policy;
            problems are placed with ``locator`` when given.
    """
    loaded = load_config(raw_recipe, locator or Locator("<recipe>"))
    if loaded.problems or loaded.recipe is None:
        raise RecipeInvalid(loaded.problems)
    return loaded.recipe, {step.name: step.block for step in loaded.steps}


@dataclass(frozen=True, slots=True)
class LoadedStep:
    """One step's effective block, merged from its layers, and where it came from."""

    index: int
    name: str
    function: str | None
    merged: MergedBlock
    block: Block | None


@dataclass(slots=True)
class LoadedConfig:
    """The recipe-level block, every step's effective block, and the problems found."""

    recipe: RecipeErrorHandling | None
    steps: list[LoadedStep] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def load_config(raw_recipe: Mapping[str, Any], locator: Locator) -> LoadedConfig:
    """Parse the recipe-level block and merge every step's; problems are collected, not raised."""
    raw_block = raw_recipe.get("error_handling") or {}
    try:
        recipe = RecipeErrorHandling.model_validate(raw_block)
    except ValidationError as exc:
        return LoadedConfig(None, problems=_validation_problems(exc, raw_block, locator, _RECIPE))
    loaded = LoadedConfig(recipe)
    # Steps often carry the same block (pasted, or all from `defaults`): each
    # distinct text is validated once, and equal effective blocks are one
    # object, which lets their steps share a chain.
    valid_raw: set[str] = set()
    blocks: dict[str, Block] = {}
    steps = raw_recipe.get("steps")
    for index, raw_step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(raw_step, Mapping):
            continue
        name = raw_step.get("name")
        name = name if isinstance(name, str) else f"steps[{index}]"
        where: Path = ("steps", index, "error_handling")
        raw_block = raw_step.get("error_handling")
        if raw_block is not None:
            raw_text = repr(raw_block)
            if raw_text not in valid_raw:
                try:
                    Block.model_validate(raw_block)
                except ValidationError as exc:
                    loaded.problems.extend(_validation_problems(exc, raw_block, locator, where))
                    continue
                valid_raw.add(raw_text)
        try:
            merged = merge_layers(raw_block, recipe, step_name=name, step_path=where)
        except (UnknownPolicyError, PolicyCycleError) as exc:
            loaded.problems.append(locator.problem(exc.path, str(exc)))
            continue
        # Layers valid on their own merge into a valid block (a tested property).
        # repr tells apart what pydantic does (1, 1.0, True and "1"; key order).
        data = _unnamed(merged.data, name)
        text = repr(data)
        block = blocks.get(text)
        if block is None:
            block = blocks[text] = Block.model_validate(data)
        function = raw_step.get("function")
        loaded.steps.append(
            LoadedStep(
                index,
                name,
                function if isinstance(function, str) else None,
                merged,
                None if merged.is_empty else block,
            )
        )
    return loaded


def _unnamed(data: dict[str, Any], step_name: str) -> dict[str, Any]:
    # A breaker or bulkhead named after its step (as one without a name is) loads
    # with no name: "the step's own". Steps whose blocks differ only in that
    # then share one block object, and one chain (see chain.chain_key).
    own = [
        key
        for key in NAMED_BY_STEP
        if isinstance(data.get(key), dict) and data[key].get("name") == step_name
    ]
    if not own:
        return data
    # The name goes last, where merging puts a default one: where it was written
    # says nothing.
    return {
        **data,
        **{
            key: {**{k: v for k, v in data[key].items() if k != "name"}, "name": None}
            for key in own
        },
    }


def _validation_problems(
    exc: ValidationError, data: Any, locator: Locator, prefix: Path
) -> list[Problem]:
    return [locator.problem((*prefix, *path), msg) for path, msg in _error_paths(exc, data)]


def _error_paths(exc: ValidationError, data: Any) -> Iterator[tuple[Path, str]]:
    """Yield (data path, message) per pydantic error, dropping union-branch tags from ``loc``.

    Of the errors a union produces, those above a deeper one are dropped: for a
    mapping given as a reference, "unknown key" beats "should be a string".
    """
    found: list[tuple[Path, str]] = []
    errors = exc.errors(include_url=False)
    # "Input should be None" is the other branch of a key that may be left out.
    errors = [e for e in errors if e["type"] != "none_required"] or errors
    for error in errors:
        steps: list[str | int] = []
        node = data
        for part in error["loc"]:
            in_map = isinstance(node, Mapping) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if not (in_map or in_list):
                continue
            node = node[part]
            steps.append(part)
        item = (tuple(steps), error["msg"].removeprefix("Value error, "))
        if item not in found:
            found.append(item)
    paths = {where for where, _ in found}
    for where, message in found:
        if not any(other[: len(where)] == where and other != where for other in paths):
            yield where, message
