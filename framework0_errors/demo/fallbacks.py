"""Fallback and compensation scriptlets for the example recipes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CachedPrices", "use_cached_prices"]

_CACHED = {"EUR": 1.0, "USD": 1.1, "stale": True}


def use_cached_prices(context: Any, args: Mapping[str, Any]) -> int:
    """Write yesterday's prices to ``args.result_key`` (default ``prices``)."""
    context.set(str(args.get("result_key", "prices")), dict(_CACHED))
    return 0


class CachedPrices:
    """Framework0-style fallback class writing cached prices."""

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Write yesterday's prices to ``args.result_key``."""
        return use_cached_prices(context, args)
