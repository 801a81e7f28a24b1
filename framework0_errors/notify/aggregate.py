"""Group repeats of an event within a window, so a storm becomes one message.

The first event of a key opens a group; later events with the same key join
it until the window closes ``window`` seconds after it opened. A closed group
is handed out once, with its count and the times of its first and last event,
either by :meth:`Aggregator.pop_due` once its window has closed or by
:meth:`Aggregator.pop_all` when the run flushes. An event arriving after its
key's window has closed opens a new group. The aggregator sets no limit on
open groups; its owner decides when to refuse new keys (see ``in``). Time
comes from the caller, so the aggregator itself neither reads a clock nor
waits.

Not thread-safe: the caller holds a lock around it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from .message import NotificationEvent

__all__ = ["Aggregator", "Group"]


@dataclass(slots=True)
class Group:
    """Events sharing a key within one window; ``event`` is the latest."""

    key: Hashable
    event: NotificationEvent
    count: int
    first: float
    last: float
    closes_at: float


class Aggregator:
    """Open groups by key, in the order they opened.

    Args:
        window: Seconds a group stays open after its first event.
    """

    __slots__ = ("_groups", "_window")

    def __init__(self, *, window: float) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, not {window!r}")
        self._window = window
        # Insertion order is opening order, and every window has the same
        # length, so groups close in this order (for a clock that moves forward).
        self._groups: dict[Hashable, Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, key: object) -> bool:
        """Whether a group with this key is open."""
        return key in self._groups

    def add(self, event: NotificationEvent, now: float) -> list[Group]:
        """Count ``event`` at time ``now``; return the groups closed by ``now``, to send.

        The closed groups are taken out first, so an event whose key's window
        has closed opens a fresh group.
        """
        closed = self.pop_due(now)
        key = event.group_key
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = Group(key, event, 1, now, now, now + self._window)
        else:
            group.count += 1
            group.event = event
            group.last = max(group.last, now)
        return closed

    def pop_due(self, now: float) -> list[Group]:
        """Remove and return the groups whose window has closed by ``now``."""
        due: list[Group] = []
        for group in self._groups.values():
            if group.closes_at > now:
                break
            due.append(group)
        for group in due:
            del self._groups[group.key]
        return due

    def pop_all(self) -> list[Group]:
        """Remove and return every open group, oldest first."""
        groups = list(self._groups.values())
        self._groups.clear()
        return groups

    def next_due(self) -> float | None:
        """When the oldest open group closes, or ``None`` when none is open."""
        for group in self._groups.values():
            return group.closes_at
        return None
