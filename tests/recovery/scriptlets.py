"""Step and compensation code for the recovery tests (imported by recipes and tests)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CALLS: dict[str, int] = {}
_LOCK = threading.Lock()


def count(name: str) -> int:
    """Count one call of ``name`` and return how many there were."""
    with _LOCK:
        CALLS[name] = CALLS.get(name, 0) + 1
        return CALLS[name]


def ok(context: Any, args: Mapping[str, Any]) -> int:
    """Succeed, noting the step in the Context."""
    context.set(f"done.{args['name']}", True)
    return 0


def fail_value(context: Any, args: Mapping[str, Any]) -> int:
    """Fail with a ValueError."""
    raise ValueError(f"{args.get('name', 'step')} is invalid")


def mark(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation: append one JSON line (name, time) to the marker file ``args.file``."""
    with Path(args["file"]).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"name": args["name"], "time": time.time()}) + "\n")
    return 0


def undo_raises(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation that fails."""
    raise RuntimeError(f"cannot undo {args['name']} with key {args.get('api_key', '-')}")


def undo_returns(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation that reports failure by its return code."""
    return 3


def undo_flaky(context: Any, args: Mapping[str, Any]) -> int:
    """Compensation that fails with ConnectionError ``fail_times`` times, then works."""
    n = count(args["name"])
    if n <= int(args.get("fail_times", 1)):
        raise ConnectionError(f"undo attempt {n} failed")
    context.set(f"undone.{args['name']}", n)
    return 0


def flaky_connection(context: Any, args: Mapping[str, Any]) -> int:
    """Fail with ``error`` ``fail_times`` times (counted by ``name``), then succeed."""
    n = count(args["name"])
    if n <= int(args.get("fail_times", 0)):
        kinds = {"ConnectionError": ConnectionError, "ValueError": ValueError}
        raise kinds[args.get("error", "ConnectionError")](f"attempt {n} failed")
    return 0


class Undo:
    """A class-form compensation: run(self, context, args)."""

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Record that the class form ran."""
        context.set("undone.by_class", dict(args))
        return 0
