"""Pick the channels that hear about an event.

Every route whose conditions all hold sends the event to its channels; a
route with an empty ``match`` takes every event. A ``failed`` event also goes
to the channels of its step's ``notify:`` list. Channels come out in the order
they are first named, each once.
"""

from __future__ import annotations

from collections.abc import Sequence

from framework0_errors.categories import ErrorSeverity
from framework0_errors.config.models import Route, RouteMatch

from .message import NotificationEvent

__all__ = ["Router", "route_matches"]


def route_matches(match: RouteMatch, event: NotificationEvent) -> bool:
    """Whether every condition of ``match`` holds for ``event``.

    Severity and category conditions need the event's error record: an event
    without one does not match them. A ``steps`` condition does not match an
    event without a step.
    """
    record = event.record
    if match.outcomes is not None and event.outcome not in match.outcomes:
        return False
    if match.steps is not None and event.step not in match.steps:
        return False
    if match.min_severity is not None and (
        record is None or record.severity < ErrorSeverity.parse(match.min_severity)
    ):
        return False
    if match.severity is not None and (
        record is None or record.severity.name not in match.severity
    ):
        return False
    return match.categories is None or (
        record is not None and record.category.value in match.categories
    )


class Router:
    """Maps events to channel names through an ordered list of routes.

    Args:
        routes: The recipe's routes, tried in order.
    """

    __slots__ = ("_routes",)

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = tuple(routes)

    def channels_for(self, event: NotificationEvent) -> tuple[str, ...]:
        """Return the channel names ``event`` goes to, without repeats."""
        names: dict[str, None] = {}
        for route in self._routes:
            if route_matches(route.match, event):
                names.update(dict.fromkeys(route.channels))
        if event.outcome == "failed":
            names.update(dict.fromkeys(event.extra_channels))
        return tuple(names)
