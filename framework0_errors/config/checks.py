"""Checks of ``error_handling`` that a JSON Schema cannot express, as located problems.

Run after the recipe passed its schema. Each step's block is merged with the
recipe's ``defaults`` and ``use`` policies first; a problem in a value that
comes from ``defaults`` or a policy is placed where that value is written
and names the steps it affects.

Importing is part of checking: scriptlets named by ``fallback``/``rollback``
and dotted error names are imported with :mod:`importlib`, so the host must
have put the recipe's folder on ``sys.path`` first, as it does for steps.
"""

from __future__ import annotations

import builtins
import difflib
import importlib
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ..orchestrator.problems import Framework0Error, Problem
from ..orchestrator.yamlsource import Locator
from .loading import LoadedConfig, LoadedStep, load_config
from .merge import Path
from .models import REFERENCE_PATTERN, RecipeErrorHandling, RetryConfig, ScriptletRef
from .models import StepErrorHandling as Block

__all__ = [
    "InvalidReferenceError",
    "check_recipe",
    "checked_recipe_config",
    "resolve_reference",
    "seconds_text",
    "worst_case_seconds",
]

Severity = Literal["error", "warning"]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class InvalidReferenceError(Framework0Error, ValueError):
    """A scriptlet reference is malformed or names no function."""

    __module__ = "framework0_errors"


def resolve_reference(
    ref: str | ScriptletRef | Mapping[str, Any], default_function: str | None
) -> tuple[str, str]:
    """Return ``(module, function)`` for ``pkg.mod``, ``pkg.mod:Name`` or ``{module, function}``.

    ``default_function`` (the step's own ``function``) is used when the
    reference names only a module.

    Raises:
        InvalidReferenceError: the reference is malformed, or names no function
            and there is no default.
    """
    module: Any
    function: Any
    if isinstance(ref, ScriptletRef):
        module, function = ref.module, ref.function
    elif isinstance(ref, Mapping):
        module, function = ref.get("module"), ref.get("function")
        if not isinstance(module, str) or not isinstance(function, str | None):
            raise InvalidReferenceError(f"malformed scriptlet reference {dict(ref)!r}")
    elif isinstance(ref, str) and re.search(REFERENCE_PATTERN, ref):
        module, _, name = ref.partition(":")
        function = name or None
    else:
        raise InvalidReferenceError(f"malformed scriptlet reference {ref!r}; write pkg.mod:Name")
    function = function or default_function
    if not function:
        raise InvalidReferenceError(
            f"scriptlet reference '{module}' names no function and the step has none; "
            f"write '{module}:Name'"
        )
    return module, function


def seconds_text(seconds: float) -> str:
    """Return ``seconds`` as messages write it (``2.5s``); sums past a float's range read
    ``over 1.79769e+308s``."""
    return f"{seconds:g}s" if seconds < math.inf else f"over {sys.float_info.max:g}s"


def worst_case_seconds(retry: RetryConfig, timeout: float | None) -> tuple[float, float]:
    """Return ``(worst case, backoff total)`` in seconds of a retry policy, without jitter.

    The worst case is ``max_attempts * timeout`` plus every backoff wait; with
    no timeout it is the waits alone (a lower bound).
    """
    waits = _total_delay(retry)
    return retry.max_attempts * (timeout or 0.0) + waits, waits


def _total_delay(retry: RetryConfig) -> float:
    # Closed forms: max_attempts may be huge, and a loop would hang validation.
    count = retry.max_attempts - 1
    first, cap, growth = retry.initial_delay, retry.max_delay, retry.multiplier
    if count == 0 or first == 0 or cap == 0:
        return 0.0
    if retry.backoff_strategy == "fixed" or first >= cap:
        return count * min(first, cap)
    # `under` waits grow below the cap; the remaining ones wait the cap.
    ratio = cap / first  # may overflow to infinity: then no wait reaches the cap
    if retry.backoff_strategy == "linear":
        under = count if math.isinf(ratio) else min(count, math.floor(ratio))
        grown = first * under * (under + 1) / 2
    elif growth == 1:
        under, grown = count, count * first
    else:
        steps = math.inf if math.isinf(ratio) else 1 + math.floor(math.log(ratio, growth))
        under = int(min(count, steps))
        try:
            grown = first * (growth**under - 1) / (growth - 1)
        except OverflowError:
            return math.inf
    return grown + (count - under) * cap if count > under else grown


def check_recipe(
    raw_recipe: Mapping[str, Any], locator: Locator, *, environ: Mapping[str, str] = os.environ
) -> list[Problem]:
    """Return every located problem (errors and warnings) of the recipe's error handling."""
    return checked_recipe_config(raw_recipe, locator, environ=environ)[0]


def checked_recipe_config(
    raw_recipe: Mapping[str, Any], locator: Locator, *, environ: Mapping[str, str] = os.environ
) -> tuple[list[Problem], tuple[RecipeErrorHandling, dict[str, Block | None]] | None]:
    """Return the recipe's problems and, if none is an error, its configuration.

    What :func:`check_recipe` and :func:`load_recipe_config` return, in one
    pass over the recipe: a run needs both.
    """
    loaded = load_config(raw_recipe, locator)
    if loaded.recipe is None:
        return loaded.problems, None
    found = _Findings()
    imports = _Imports()
    notifications = loaded.recipe.notifications
    channels = sorted(notifications.channels) if notifications else []
    for step in loaded.steps:
        if step.block is not None:
            _check_step(step, step.block, found, imports, channels)
    for key, what in (("circuit_breaker", "circuit breaker"), ("bulkhead", "bulkhead")):
        _check_shared(loaded.steps, key, what, found)
    _check_notifications(raw_recipe, loaded, found, environ)
    problems = sorted(loaded.problems + found.problems(locator), key=Problem.sort_key)
    if any(p.severity == "error" for p in problems):
        return problems, None
    return problems, (loaded.recipe, {step.name: step.block for step in loaded.steps})


# ------------------------------------------------------------------ findings


@dataclass(slots=True)
class _Findings:
    """Collects problems; one written outside ``steps`` is reported once, naming its steps."""

    found: dict[tuple[Path, str, Severity], list[str]] = field(default_factory=dict)

    def add(self, path: Path, message: str, step: str, severity: Severity = "error") -> None:
        steps = self.found.setdefault((path, message, severity), [])
        if step and step not in steps:
            steps.append(step)

    def problems(self, locator: Locator) -> list[Problem]:
        out = []
        for (path, message, severity), steps in self.found.items():
            text = message
            if path[:1] != ("steps",) and steps:
                names = ", ".join(f"'{s}'" for s in steps)
                text = f"{message} (used by step{'s' if len(steps) > 1 else ''} {names})"
            out.append(locator.problem(path, text, severity=severity))
        return out


def _check_step(
    step: LoadedStep, block: Block, found: _Findings, imports: _Imports, channels: list[str]
) -> None:
    origin = step.merged.origin
    retries: list[tuple[tuple[str, ...], RetryConfig]] = []
    if block.retry is not None:
        retries.append((("retry",), block.retry))
    if block.rollback is not None and block.rollback.retry is not None:
        retries.append((("rollback", "retry"), block.rollback.retry))
    for keys, retry in retries:
        _check_delays(step, keys, retry, found)
        for key in ("retry_on", "give_up_on"):
            _check_selectors(step, (*keys, key), getattr(retry, key), found, imports)
    if block.fallback is not None:
        _check_selectors(step, ("fallback", "on"), block.fallback.on, found, imports)
        if block.fallback.scriptlet is not None:
            _check_scriptlet(step, "fallback", block.fallback.scriptlet, found, imports)
    if block.rollback is not None:
        _check_scriptlet(step, "rollback", block.rollback.scriptlet, found, imports)
    if block.retry is not None and block.retry.deadline is not None:
        seconds = block.timeout.seconds if block.timeout else None
        worst, waits = worst_case_seconds(block.retry, seconds)
        deadline, attempts = block.retry.deadline, block.retry.max_attempts
        if worst > deadline:
            if seconds is None:
                why = f"the backoff waits alone add up to {seconds_text(waits)}"
            else:
                why = (
                    f"the worst case is {seconds_text(worst)} ({attempts} attempts x "
                    f"{seconds:g}s timeout + {seconds_text(waits)} of backoff)"
                )
            message = f"{why}, more than retry.deadline {deadline:g}s; later attempts will not run"
            found.add(origin("retry", "deadline"), message, step.name, "warning")
    for index, channel in enumerate(block.notify):
        if channel not in channels:
            found.add(origin("notify", index), _unknown_channel(channel, channels), step.name)


def _check_delays(
    step: LoadedStep, keys: tuple[str, ...], retry: RetryConfig, found: _Findings
) -> None:
    if retry.initial_delay <= retry.max_delay:
        return
    written = step.merged.data
    for key in keys:
        written = written[key]
    blame = "initial_delay" if "initial_delay" in written else "max_delay"
    dotted = ".".join(keys)
    message = (
        f"{dotted}.initial_delay ({retry.initial_delay:g}s) is greater than "
        f"{dotted}.max_delay ({retry.max_delay:g}s)"
    )
    found.add(step.merged.origin(*keys, blame), message, step.name)


def _check_selectors(
    step: LoadedStep,
    keys: tuple[str, ...],
    names: list[str] | None,
    found: _Findings,
    imports: _Imports,
) -> None:
    for index, name in enumerate(names or ()):
        reason = imports.selector_problem(name)
        if reason is not None:
            found.add(step.merged.origin(*keys, index), reason, step.name, "warning")


def _check_scriptlet(
    step: LoadedStep, key: str, ref: str | ScriptletRef, found: _Findings, imports: _Imports
) -> None:
    where = step.merged.origin(key, "scriptlet")
    try:
        module, function = resolve_reference(ref, step.function)
    except InvalidReferenceError as exc:
        found.add(where, str(exc), step.name)
        return
    reason = imports.target_problem(module, function)
    if reason is not None:
        found.add(where, f"{key} scriptlet {module}:{function} cannot be used: {reason}", step.name)


def _check_shared(steps: list[LoadedStep], key: str, what: str, found: _Findings) -> None:
    first: dict[str, tuple[LoadedStep, BaseModel]] = {}
    for step in steps:
        config = getattr(step.block, key, None)
        if config is None:
            continue
        name = config.name or step.name  # none: the step's own (see load_config)
        if name not in first:
            first[name] = (step, config)
            continue
        other, other_config = first[name]
        mine, theirs = config.model_dump(), other_config.model_dump()
        # Equal names by now, though one may be left to its step.
        diffs = [k for k in mine if k != "name" and mine[k] != theirs[k]]
        if diffs:
            detail = ", ".join(f"{k} {mine[k]!r} here, {theirs[k]!r} there" for k in diffs)
            message = (
                f"{what} '{name}' is shared with step '{other.name}' but configured "
                f"differently ({detail}); steps sharing a {what} must configure it alike"
            )
            written = step.merged.data[key]
            at = (key, diffs[0]) if diffs[0] in written else (key,)
            found.add(step.merged.origin(*at), message, step.name)


def _check_notifications(
    raw_recipe: Mapping[str, Any],
    loaded: LoadedConfig,
    found: _Findings,
    environ: Mapping[str, str],
) -> None:
    notifications = loaded.recipe.notifications if loaded.recipe else None
    if notifications is None:
        return
    channels = sorted(notifications.channels)
    base: Path = ("error_handling", "notifications")
    step_names = {step.name for step in loaded.steps}
    for r, route in enumerate(notifications.routes):
        for c, channel in enumerate(route.channels):
            if channel not in channels:
                found.add(
                    (*base, "routes", r, "channels", c), _unknown_channel(channel, channels), ""
                )
        for s, name in enumerate(route.match.steps or ()):
            if name not in step_names:
                path = (*base, "routes", r, "match", "steps", s)
                found.add(path, f"no step is named '{name}'", "", "warning")
    raw_channels = raw_recipe["error_handling"]["notifications"].get("channels") or {}
    for path, text in _strings(raw_channels, (*base, "channels")):
        for variable in _ENV_REF.findall(text):
            if variable not in environ:
                found.add(path, f"environment variable '{variable}' is not set", "")


def _unknown_channel(name: str, channels: list[str]) -> str:
    if not channels:
        return (
            f"unknown notification channel '{name}': no channels are defined "
            "(add them under error_handling.notifications.channels)"
        )
    close = difflib.get_close_matches(name, channels, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown notification channel '{name}'; {guess}defined channels: {', '.join(channels)}"


def _strings(node: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, index))


# ------------------------------------------------------------------ imports


@dataclass(frozen=True, slots=True)
class _Imported:
    module: Any = None
    why: str | None = None
    """Why it cannot be imported; None when it was."""
    absent: bool = False
    """The module itself does not exist (as opposed to failing while importing)."""


@dataclass(slots=True)
class _Imports:
    """Imports modules once per check and explains why a name cannot be used."""

    modules: dict[str, _Imported] = field(default_factory=dict)

    def module(self, name: str) -> _Imported:
        """Import ``name`` (once) and say how that went."""
        if name not in self.modules:
            self.modules[name] = _import(name)
        return self.modules[name]

    def target_problem(self, module: str, function: str) -> str | None:
        """Why ``module:function`` is not a callable, or None when it is."""
        imported = self.module(module)
        if imported.why is not None:
            return imported.why
        target, missing = _walk(imported.module, function.split("."))
        if missing is not None:
            return f"module '{module}' has no attribute '{missing}'"
        if not callable(target):
            return f"'{function}' is a {type(target).__name__}, not a function or class"
        return None

    def selector_problem(self, text: str) -> str | None:
        """Why the error selector ``text`` cannot be checked, or None when it names one."""
        if text.lower().startswith("category:"):
            return None
        if "." not in text:
            if _is_exception(getattr(builtins, text, None)):
                return None
            return (
                f"cannot check '{text}': it is not a builtin exception, so it selects any "
                "exception class of that name; write its dotted path to have it checked"
            )
        parts = text.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            imported = self.module(".".join(parts[:cut]))
            if imported.absent:
                continue  # not a module: the class may sit one level up
            if imported.why is not None:
                return f"cannot check '{text}': {imported.why}"
            target, missing = _walk(imported.module, parts[cut:])
            if missing is not None:
                where = ".".join(parts[:cut])
                return f"cannot check '{text}': module '{where}' has no attribute '{missing}'"
            if not _is_exception(target):
                kind = type(target).__name__
                return f"cannot check '{text}': it is a {kind}, not an exception class"
            return None
        return (
            f"cannot check '{text}': module '{parts[0]}' not found here "
            "(it is matched by name, so this is fine where that module is missing)"
        )


def _import(name: str) -> _Imported:
    try:
        return _Imported(importlib.import_module(name))
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if missing == name or name.startswith(missing + "."):
            why = f"module '{missing}' not found (is it on the path beside the recipe?)"
            return _Imported(why=why, absent=True)
        return _Imported(why=f"importing '{name}' raised ModuleNotFoundError: {exc}")
    except (Exception, SystemExit) as exc:  # user code may raise anything on import
        return _Imported(why=f"importing '{name}' raised {type(exc).__name__}: {exc}")


def _walk(target: Any, parts: list[str]) -> tuple[Any, str | None]:
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            return None, part
    return target, None


def _is_exception(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)
