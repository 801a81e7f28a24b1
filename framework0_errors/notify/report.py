"""What happened to the notifications of a run, per channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChannelReport", "DeliveryReport"]


@dataclass(frozen=True, slots=True)
class ChannelReport:
    """Delivery counts of one channel, in messages.

    ``failed`` messages were given up after their attempts; ``errors`` holds
    the distinct (redacted) reasons, oldest first, at most ten.
    ``undelivered`` counts messages neither sent nor failed when the report
    was taken: still queued or in flight when the flush bound ran out,
    dropped at ``close``, or events refused because too many messages were
    waiting.
    """

    sent: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()
    undelivered: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "sent": self.sent,
            "failed": self.failed,
            "errors": list(self.errors),
            "undelivered": self.undelivered,
        }


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A snapshot of delivery across channels.

    ``errors`` holds problems that belong to no channel (an event that could
    not be routed); a step's ``notify:`` naming an unknown channel shows up
    as that channel with failures.
    """

    channels: Mapping[str, ChannelReport] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every message was sent: nothing failed, undelivered or in ``errors``."""
        return not self.errors and all(
            c.failed == 0 and c.undelivered == 0 for c in self.channels.values()
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: ``{"channels": {name: {...}}, "errors": [...]}``."""
        return {
            "channels": {name: report.to_dict() for name, report in self.channels.items()},
            "errors": list(self.errors),
        }
