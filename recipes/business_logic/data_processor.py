"""The product brief's example step: a data processor behind a flaky network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProcessDataScriptlet:
    """Fetch and process data; here the upstream service is down, always."""

    def run(self, context: Any, args: Mapping[str, Any]) -> int:
        """Raise ConnectionError, as a dead upstream does."""
        calls = int(context.get("demo.calls.data_processing", 0)) + 1
        context.set("demo.calls.data_processing", calls)
        raise ConnectionError(f"upstream data service refused the connection (call {calls})")
