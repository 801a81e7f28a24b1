"""Step code for the chain tests (imported by recipes through the test package)."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

RELEASE = threading.Event()
ACTIVE = {"now": 0, "max": 0}
_LOCK = threading.Lock()


def calls(context: Any, name: str) -> int:
    key = f"calls.{name}"
    n = int(context.get(key, 0)) + 1
    context.set(key, n)
    return n


def flaky(context: Any, args: Mapping[str, Any]) -> int:
    n = calls(context, args["name"])
    if n <= int(args.get("fail_times", 2)):
        kind = {"ConnectionError": ConnectionError, "ValueError": ValueError}[
            args.get("error", "ConnectionError")
        ]
        raise kind(f"attempt {n} failed with password {args.get('password', '-')}")
    context.set(args.get("key", "result"), n)
    return 0


def dead(context: Any, args: Mapping[str, Any]) -> int:
    calls(context, args["name"])
    raise ConnectionError("connection refused")


def stuck(context: Any, args: Mapping[str, Any]) -> int:
    calls(context, args["name"])
    RELEASE.wait(30)
    context.set("late", True)
    return 0


def exclusive(context: Any, args: Mapping[str, Any]) -> int:
    with _LOCK:
        ACTIVE["now"] += 1
        ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
    time.sleep(0.05)
    with _LOCK:
        ACTIVE["now"] -= 1
    return 0


def logs_error(context: Any, args: Mapping[str, Any]) -> int:
    logging.getLogger("acme.etl").error("partial data: %d rows skipped", 3)
    return 0


def quota(context: Any, args: Mapping[str, Any]) -> int:
    calls(context, args["name"])
    raise ConnectionError("quota exceeded for tenant 42")


def fallback_ok(context: Any, args: Mapping[str, Any]) -> int:
    context.set("result", {"from": "fallback", **dict(args)})
    return 0


def fallback_broken(context: Any, args: Mapping[str, Any]) -> int:
    raise RuntimeError("cache is empty too")


HOLD = threading.Event()


def hold(context: Any, args: Mapping[str, Any]) -> int:
    """Keep the bulkhead slot until a rejected step's fallback says so."""
    HOLD.wait(10)
    return 0


def release_holder(context: Any, args: Mapping[str, Any]) -> int:
    """Fallback of a rejected step: record it and let the holder finish."""
    context.set(f"rejected.{args['n']}", True)
    HOLD.set()
    return 0


def returns_one(context: Any, args: Mapping[str, Any]) -> int:
    """A fallback that fails by its return code."""
    return 1


def fails_first_time(context: Any, args: Mapping[str, Any]) -> int:
    """Fail while ``args.marker`` does not exist (creating it), then succeed: across runs."""
    import os

    if not os.path.exists(args["marker"]):
        with open(args["marker"], "w"):
            pass
        raise ConnectionError("first call refused")
    return 0


def plain_ok(context: Any, args: Mapping[str, Any]) -> int:
    """Succeed at once."""
    return 0


def fallback_leaks(context: Any, args: Mapping[str, Any]) -> int:
    """A fallback that fails with its own secret in the message."""
    raise RuntimeError(f"cache login failed for key {args['api_key']}")


def live_chains(context: Any, args: Mapping[str, Any]) -> int:
    """Write how many step chains are alive now, as ``chains.<args.step>``."""
    from framework0_errors.chain import StepChain

    alive = sum(1 for item in gc.get_objects() if type(item) is StepChain)
    context.set(f"chains.{args['step']}", alive)
    return 0
