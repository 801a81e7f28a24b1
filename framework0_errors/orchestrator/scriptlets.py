"""Find the Python code a step names, and call it the way Framework0 does."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .problems import Framework0Error

__all__ = [
    "ScriptletImportError",
    "StepCallable",
    "add_search_paths",
    "resolve_callable",
]

StepCallable = Callable[[Any, Mapping[str, Any]], Any]
"""``f(context, args)`` returning an int (0 = success) or None."""


class ScriptletImportError(Framework0Error):
    """A step's ``module`` or ``function`` cannot be imported or called."""

    __module__ = "framework0_errors"

    def __init__(self, module: str, function: str, reason: str, *, part: str = "module") -> None:
        self.module = module
        self.function = function
        self.reason = reason
        self.part = part
        """Which of the step's keys is at fault: ``"module"`` or ``"function"``."""
        super().__init__(f"cannot use {module}:{function}: {reason}")


def add_search_paths(paths: Iterable[str | Path]) -> None:
    """Let recipes import scriptlets that live beside them (front of ``sys.path``)."""
    for path in paths:
        text = str(Path(path).resolve())
        if text not in sys.path:
            sys.path.insert(0, text)


def resolve_callable(module: str, function: str) -> StepCallable:
    """Import ``module`` and return a callable ``f(context, args)`` for ``function``.

    ``function`` may name a class whose ``run(self, context, args)`` does the
    work (instantiated with no arguments for every call, as Framework0 does),
    or a plain function ``f(context, args)``. ``function`` may be dotted
    (``Outer.method``) to reach nested attributes.

    Raises:
        ScriptletImportError: with the reason (module not found, the import
            raised, no such attribute, not callable, wrong shape).
    """
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if missing == module or module.startswith(missing + "."):
            reason = f"module '{missing}' not found (is it on the path beside the recipe?)"
        else:
            reason = f"importing it failed: no module named '{missing}'"
        raise ScriptletImportError(module, function, reason) from None
    except (Exception, SystemExit) as exc:  # a module may even call sys.exit()
        raise ScriptletImportError(
            module, function, f"importing it raised {type(exc).__name__}: {exc}"
        ) from None
    target: Any = mod
    for part in function.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ScriptletImportError(
                module,
                function,
                f"module '{module}' has no attribute '{function}'",
                part="function",
            ) from None
    if inspect.isclass(target):
        return _class_runner(module, function, target)
    if not callable(target):
        raise ScriptletImportError(
            module,
            function,
            f"'{function}' is a {type(target).__name__}, not a function or class",
            part="function",
        )
    return target  # type: ignore[no-any-return]


def _class_runner(module: str, function: str, cls: type) -> StepCallable:
    run = getattr(cls, "run", None)
    if not callable(run):
        raise ScriptletImportError(
            module, function, f"class '{function}' has no run() method", part="function"
        )
    try:
        inspect.signature(cls).bind()
    except TypeError:
        raise ScriptletImportError(
            module,
            function,
            f"class '{function}' cannot be created without arguments",
            part="function",
        ) from None
    except ValueError:  # pragma: no cover - builtins without a signature
        pass

    def call(context: Any, args: Mapping[str, Any]) -> Any:
        return cls().run(context, args)

    call.__name__ = cls.__name__
    call.__qualname__ = f"{cls.__qualname__}.run"
    return call
