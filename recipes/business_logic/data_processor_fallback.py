"""Fallback for the brief's example: processed data from the last good run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProcessDataScriptlet:
    """Write yesterday's processed data so the recipe can go on, degraded."""

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Write ``processed_data`` from a cached copy."""
        context.set("processed_data", {"rows": 42, "source": "cache", "stale": True})
        return 0
