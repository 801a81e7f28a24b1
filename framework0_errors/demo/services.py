"""Simulated services: healthy, flaky, dead and slow."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DeadService",
    "FlakyService",
    "SlowService",
    "count_call",
    "load_orders",
    "summarise",
]


def count_call(context: Any, args: Mapping[str, Any]) -> int:
    """Count one call of the calling step in ``demo.calls.<name>``; return the count."""
    key = f"demo.calls.{args.get('name', 'service')}"
    calls = int(context.get(key, 0)) + 1
    context.set(key, calls)
    return calls


def load_orders(context: Any, args: Mapping[str, Any]) -> int:
    """Put ``args.count`` orders into ``orders`` (a healthy service)."""
    count = int(args.get("count", 3))
    context.set("orders", [{"id": i, "amount": 10 * i} for i in range(1, count + 1)])
    return 0


def summarise(context: Any, args: Mapping[str, Any]) -> int:
    """Write ``summary`` from whatever order data the recipe has so far."""
    orders = context.get("orders", [])
    source = context.get(str(args.get("source_key", "prices")), {})
    context.set(
        "summary",
        {"orders": len(orders), "total": sum(o["amount"] for o in orders), "source": source},
    )
    return 0


class FlakyService:
    """Framework0-style scriptlet that fails ``fail_times`` times, then answers.

    Args (from the recipe): ``name``, ``fail_times`` (default 2), ``error``
    (``ConnectionError`` or ``TimeoutError``), ``result_key``.
    """

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Fail with a network error until called ``fail_times`` + 1 times."""
        calls = count_call(context, args)
        if calls <= int(args.get("fail_times", 2)):
            error = TimeoutError if args.get("error") == "TimeoutError" else ConnectionError
            raise error(f"{args.get('name', 'service')}: connection reset (call {calls})")
        context.set(str(args.get("result_key", "prices")), {"EUR": 1.0, "USD": 1.08})
        return 0


class DeadService:
    """Framework0-style scriptlet for a service that never answers."""

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Always raise ConnectionError."""
        count_call(context, args)
        host = args.get("host", "127.0.0.1:9")
        raise ConnectionError(f"connection refused by {host}")


class SlowService:
    """Framework0-style scriptlet that takes ``seconds`` to answer."""

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Sleep ``seconds`` (default 20), then write ``result_key``."""
        count_call(context, args)
        time.sleep(float(args.get("seconds", 20)))
        context.set(str(args.get("result_key", "report")), {"late": True})
        return 0
