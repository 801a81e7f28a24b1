"""Find and register plugins: the built-in ones and third-party ones alike."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable
from typing import Any

import pluggy

from . import hookspecs
from .middleware import KeyClaim
from .problems import Framework0Error

__all__ = ["DISABLE_ENV", "PluginLoadError", "claims", "plugin_manager"]

DISABLE_ENV = "FRAMEWORK0_DISABLE_PLUGINS"
"""Comma-separated entry-point names of plugins not to load."""


class PluginLoadError(Framework0Error):
    """A plugin named in the ``framework0`` entry-point group could not be loaded."""

    __module__ = "framework0_errors"


def plugin_manager(
    *, entry_points: bool = True, plugins: Iterable[Any] = (), disabled: Iterable[str] = ()
) -> pluggy.PluginManager:
    """Return a plugin manager with the host's hookspecs and the installed plugins.

    Plugins come from the ``framework0`` entry-point group (the built-in
    error-handling plugin registers there too), minus those named in
    ``disabled`` or in the ``FRAMEWORK0_DISABLE_PLUGINS`` environment variable.

    Raises:
        PluginLoadError: naming the entry point and why it failed to import.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    skip = set(disabled) | {
        n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()
    }
    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            if ep.name in skip or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin '{ep.name}' ({ep.value}) failed to load: "
                    f"{type(exc).__name__}: {exc}; fix or uninstall it, or set "
                    f"{DISABLE_ENV}={ep.name}"
                ) from None
            pm.register(plugin, name=ep.name)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def claims(pm: pluggy.PluginManager) -> list[KeyClaim]:
    """Return every key claim of the registered plugins."""
    out: list[KeyClaim] = []
    for items in pm.hook.framework0_claim_keys():
        out.extend(items)
    return out


def load_checked_recipe(path: str, pm: pluggy.PluginManager, *, resolve: bool = True) -> Any:
    """Load ``path`` with the plugins' key claims and run their validation hooks.

    Returns the :class:`~framework0_errors.orchestrator.recipe.Recipe` with
    any warnings attached.

    Raises:
        RecipeInvalid: with every error (and warning) found, located.
    """
    from dataclasses import replace

    from .problems import Problem, RecipeInvalid
    from .recipe import load_recipe

    recipe = load_recipe(path, claims=claims(pm), resolve=resolve)
    found: list[Problem] = []
    for items in pm.hook.framework0_validate_recipe(recipe=recipe):
        found.extend(items or ())
    if any(p.severity == "error" for p in found):
        raise RecipeInvalid(found)
    return replace(recipe, warnings=tuple(sorted(found, key=Problem.sort_key)))
