"""A step's effective ``error_handling``: ``defaults``, then ``use:`` policies, then the step.

Layers are merged as written, before any model default applies, so a key a
layer leaves out never overrides one set below it. Merge rules:

* top-level keys of the block are merged one by one; a later layer wins;
* a policy (``retry``, ``fallback``, … and ``rollback.retry``) given as a
  mapping on both sides is merged key by key; ``null`` switches it off and a
  mapping over ``null`` starts afresh;
* every other value (lists, ``args``, ``value``, scriptlet references) is
  replaced whole;
* ``fallback.scriptlet`` and ``fallback.value`` are alternatives: a layer
  giving one drops the other from the layers below.

``use`` is expanded where it is written: a policy may ``use`` other policies
(applied before its own keys), and so may ``defaults``. The effective block
has ``use`` unset. ``circuit_breaker.name`` and ``bulkhead.name`` default to
the step name. ``on_failure`` stays ``None`` when no layer sets it: the
recipe-level ``on_failure`` then applies.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..orchestrator.problems import Framework0Error
from .models import RecipeErrorHandling, StepErrorHandling

__all__ = [
    "MergedBlock",
    "PolicyCycleError",
    "UnknownPolicyError",
    "effective_step_block",
    "merge_layers",
    "plain_copy",
]

PathPart = str | int
Path = tuple[PathPart, ...]

RECIPE_KEY = "error_handling"
NAMED_BY_STEP = ("circuit_breaker", "bulkhead")


class UnknownPolicyError(Framework0Error):
    """A ``use:`` names a policy the recipe does not define.

    ``name`` is the unknown name, ``known`` the defined ones (sorted) and
    ``path`` where the name is written in the recipe.
    """

    __module__ = "framework0_errors"

    def __init__(self, name: str, *, known: tuple[str, ...], path: Path = ()) -> None:
        self.name = name
        self.known = known
        self.path = path
        if not known:
            hint = "the recipe defines no policies (add them under error_handling.policies)"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"did you mean '{close[0]}'? " if close else ""
            hint = f"{guess}known policies: {', '.join(known)}"
        super().__init__(f"unknown policy '{name}' in use; {hint}")


class PolicyCycleError(Framework0Error):
    """Policies ``use`` each other in a cycle; ``cycle`` lists it, first name repeated."""

    __module__ = "framework0_errors"

    def __init__(self, cycle: tuple[str, ...], *, path: Path = ()) -> None:
        self.cycle = cycle
        self.path = path
        super().__init__("policies use each other in a cycle: " + " -> ".join(cycle))


@dataclass(frozen=True, slots=True)
class MergedBlock:
    """A step's merged block as plain data, and where in the recipe each key was written.

    ``origins`` maps a key path of ``data`` (``("retry", "max_delay")``) to the
    recipe path it came from; use :meth:`origin` to look a path up.
    """

    data: dict[str, Any]
    origins: dict[Path, Path] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """Whether nothing applies: every key null or an empty list (``retry: {}`` applies)."""
        return all(value is None or value == [] for value in self.data.values())

    def origin(self, *keys: PathPart) -> Path:
        """Return the recipe path of ``keys``, through its nearest recorded ancestor."""
        for cut in range(len(keys), 0, -1):
            found = self.origins.get(keys[:cut])
            if found is not None:
                return (*found, *keys[cut:])
        return ()


def effective_step_block(
    step_block: Mapping[str, Any] | StepErrorHandling | None,
    recipe: RecipeErrorHandling | Mapping[str, Any] | None,
    *,
    step_name: str,
) -> StepErrorHandling | None:
    """Return the step's effective block, or None when no error handling applies.

    Args:
        step_block: the step's ``error_handling`` as written (or a model of it).
        recipe: the recipe's top-level ``error_handling`` (model or mapping).
        step_name: the step's name, default name of its breaker and bulkhead.

    Raises:
        UnknownPolicyError: a ``use`` names no policy; lists the known ones.
        PolicyCycleError: policies ``use`` each other in a cycle.
        pydantic.ValidationError: a block is invalid (the schema would say so first).
    """
    if not step_block and not _has_defaults(recipe):
        return None
    if step_block is not None and not isinstance(step_block, StepErrorHandling):
        StepErrorHandling.model_validate(step_block)  # each layer must be valid on its own
    merged = merge_layers(step_block, recipe, step_name=step_name)
    if merged.is_empty:
        return None
    return StepErrorHandling.model_validate(merged.data)


def merge_layers(
    step_block: Mapping[str, Any] | StepErrorHandling | None,
    recipe: RecipeErrorHandling | Mapping[str, Any] | None,
    *,
    step_name: str,
    step_path: Path = ("error_handling",),
) -> MergedBlock:
    """Merge defaults, ``use`` policies and the step's block as raw data, with origins.

    ``step_path`` is where the step's block is written (e.g.
    ``("steps", 2, "error_handling")``); recipe-level layers are placed under
    ``("error_handling", "defaults")`` and ``("error_handling", "policies", name)``.
    Raises like :func:`effective_step_block`, except that the step block is
    expected to be valid already (only the recipe block is validated here).
    """
    raw_recipe = _recipe_raw(recipe)
    policies: Mapping[str, Any] = raw_recipe.get("policies") or {}
    data: dict[str, Any] = {}
    origins: dict[Path, Path] = {}
    defaults = raw_recipe.get("defaults")
    if defaults:
        for layer, where in _layers(defaults, (RECIPE_KEY, "defaults"), policies, ()):
            _apply(data, layer, origins=origins, model=StepErrorHandling, prefix=(), where=where)
    own = _block_raw(step_block)
    if own:
        for layer, where in _layers(own, step_path, policies, ()):
            _apply(data, layer, origins=origins, model=StepErrorHandling, prefix=(), where=where)
    for key in NAMED_BY_STEP:
        section = data.get(key)
        if isinstance(section, dict) and section.get("name") is None:
            section["name"] = step_name
    return MergedBlock(data, origins)


def _has_defaults(recipe: RecipeErrorHandling | Mapping[str, Any] | None) -> bool:
    if recipe is None:
        return False
    if isinstance(recipe, RecipeErrorHandling):
        return recipe.defaults is not None
    return bool(recipe.get("defaults"))


def _recipe_raw(recipe: RecipeErrorHandling | Mapping[str, Any] | None) -> dict[str, Any]:
    if recipe is None:
        return {}
    if not isinstance(recipe, RecipeErrorHandling):
        recipe = RecipeErrorHandling.model_validate(recipe)
    return recipe.model_dump(exclude_unset=True, by_alias=True)


def _block_raw(block: Mapping[str, Any] | StepErrorHandling | None) -> dict[str, Any]:
    if block is None:
        return {}
    if isinstance(block, StepErrorHandling):
        return block.model_dump(exclude_unset=True, by_alias=True)
    return dict(block)


def _layers(
    block: Mapping[str, Any], where: Path, policies: Mapping[str, Any], chain: tuple[str, ...]
) -> Iterator[tuple[Mapping[str, Any], Path]]:
    """Yield the layers of one block, its ``use`` policies (expanded) first."""
    use = block.get("use")
    names = [use] if isinstance(use, str) else list(use or ())
    for index, name in enumerate(names):
        at = (*where, "use") if isinstance(use, str) else (*where, "use", index)
        if name not in policies:
            raise UnknownPolicyError(name, known=tuple(sorted(policies)), path=at)
        if name in chain:
            raise PolicyCycleError((*chain[chain.index(name) :], name), path=at)
        yield from _layers(policies[name], (RECIPE_KEY, "policies", name), policies, (*chain, name))
    yield {k: v for k, v in block.items() if k != "use"}, where


def _apply(
    target: dict[str, Any],
    layer: Mapping[str, Any],
    *,
    origins: dict[Path, Path],
    model: type[BaseModel],
    prefix: Path,
    where: Path,
) -> None:
    """Merge one layer into ``target`` (in place), recording where keys came from."""
    for group in getattr(model, "merge_exclusive", ()):
        if group & layer.keys():
            for key in group - layer.keys():
                target.pop(key, None)
                _forget(origins, (*prefix, key))
    for key, value in layer.items():
        here = (*prefix, key)
        section = _section_model(model, key)
        below = target.get(key)
        if section is not None and isinstance(value, Mapping) and isinstance(below, dict):
            _apply(below, value, origins=origins, model=section, prefix=here, where=(*where, key))
            continue
        target[key] = plain_copy(value)
        _forget(origins, here)
        origins[here] = (*where, key)


def plain_copy(value: Any) -> Any:
    """Return a copy of YAML data (mappings, lists and atoms) that shares no container with it.

    Mappings come back as dicts. For data that must not change what it was
    copied from: merging layers, or the ``args`` handed to a fallback or a
    compensation (steps with equal blocks share one block object). Several
    times cheaper than ``copy.deepcopy``.
    """
    if isinstance(value, Mapping):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_copy(item) for item in value]
    return value


def _forget(origins: dict[Path, Path], prefix: Path) -> None:
    for key in [k for k in origins if k[: len(prefix)] == prefix]:
        del origins[key]


def _section_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """Return the model of ``key`` when it is a policy merged key by key, else None."""
    info = model.model_fields.get(key)
    if info is None:
        return None
    annotation = info.annotation
    members = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    others = [m for m in members if m is not type(None) and m not in models]
    return models[0] if len(models) == 1 and not others else None
