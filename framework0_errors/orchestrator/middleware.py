"""The pieces plugins contribute: key claims, step middleware, invocations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .context import StepContext
    from .recipe import Step
    from .runner import Run

__all__ = ["Invocation", "KeyClaim", "Next", "StepMiddleware", "compose"]


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """A recipe or step key a plugin owns, with the JSON Schema of its value.

    ``defs`` are merged into the recipe schema's ``$defs``; ``schema`` may
    refer to them as ``#/$defs/<name>``. ``pattern_help`` maps each regex
    ``pattern`` used in them to words for error messages ("an error name or
    category:NAME"), so people are not shown regexes.

    ``accepts``, if given, is a quicker judge of a value than the JSON Schema
    (a compiled model, say), which must agree with it: when it accepts every
    value of the key in a recipe, the schema is not run on them. When it
    refuses one, the schema judges them all and explains what it finds.
    """

    key: str
    level: Literal["recipe", "step"]
    schema: Mapping[str, Any]
    defs: Mapping[str, Any] = field(default_factory=dict)
    pattern_help: Mapping[str, str] = field(default_factory=dict)
    accepts: Callable[[Any], bool] | None = field(default=None, compare=False)


@dataclass(slots=True)
class Invocation:
    """One execution of a step as it passes through the middleware chain.

    ``context`` is the view the step's code gets; a middleware may pass a
    different view inward with :meth:`with_context`. ``notes`` is shared by
    every copy and collects what middleware want reported: ``detail`` (shown
    on the step's line, e.g. "recovered after 3 attempts") and any extra
    JSON-ready fields for the run report.
    """

    step: Step
    run: Run
    context: StepContext
    notes: dict[str, Any] = field(default_factory=dict)

    def with_context(self, context: StepContext) -> Invocation:
        """Return a copy that hands ``context`` to the step's code."""
        return Invocation(self.step, self.run, context, self.notes)


Next = Callable[[Invocation], None]
"""Call the rest of the chain; returns on success, raises on failure."""


@dataclass(frozen=True, slots=True)
class StepMiddleware:
    """A wrapper around a step's execution: ``call(invocation, call_next)``.

    Lower ``order`` runs further out. The error-handling plugin uses 100.
    """

    name: str
    call: Callable[[Invocation, Next], None]
    order: int = 100


def compose(middleware: Sequence[StepMiddleware], innermost: Next) -> Next:
    """Compose ``middleware`` around ``innermost``, lowest ``order`` outermost."""
    chain = innermost
    for item in sorted(middleware, key=lambda m: m.order, reverse=True):
        chain = _bind(item.call, chain)
    return chain


def _bind(call: Callable[[Invocation, Next], None], nxt: Next) -> Next:
    def bound(invocation: Invocation) -> None:
        call(invocation, nxt)

    return bound
