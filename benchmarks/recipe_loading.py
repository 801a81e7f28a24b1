"""Loading a large recipe: libyaml against ruamel's pure-Python parser, in one run.

Usage: python benchmarks/recipe_loading.py [--steps N] [--runs R]

Writes recipes of N steps (default 1,000) without ``error_handling`` blocks and
with a retry + circuit_breaker + bulkhead + fallback block per step (the
recipes of ``chain_overhead.py``), then prints, best of R runs each:

- the YAML step alone (``parse_yaml``) with libyaml and with the pure-Python
  parser, and their ratio;
- the whole load as ``framework0 run`` does it before the first step: YAML,
  the JSON Schema, the plugin's checks and its parsed configuration;
- what the blocks add to that load, per step.

libyaml comes with ruamel.yaml.clib; without it both YAML rows use the
pure-Python parser and the ratio is 1.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chain_overhead import _recipe

from framework0_errors.orchestrator import (
    load_checked_recipe,
    parse_yaml,
    plugin_manager,
    yamlsource,
)
from framework0_errors.plugin import recipe_state_config


def _best(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _parse_with(text: str, *, fast: bool) -> Callable[[], object]:
    def parse() -> object:
        saved = yamlsource._FAST_PARSER
        yamlsource._FAST_PARSER = fast and saved
        try:
            return parse_yaml(text, "bench.yaml")
        finally:
            yamlsource._FAST_PARSER = saved

    return parse


def _load(path: Path) -> Callable[[], object]:
    pm = plugin_manager()

    def load() -> object:
        recipe = load_checked_recipe(str(path), pm)
        recipe_state_config(recipe)  # the plugin's configuration, parsed as a run does
        return recipe

    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    print(f"libyaml installed: {'yes' if yamlsource._FAST_PARSER else 'no'}")
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        for kind in ("none", "own"):
            path = _recipe(Path(tmp), opts.steps, kind, module="bench_return")
            text = path.read_text()
            fast = _best(_parse_with(text, fast=True), opts.runs)
            pure = _best(_parse_with(text, fast=False), opts.runs)
            loads[kind] = _best(_load(path), opts.runs)
            label = "with a block per step" if kind == "own" else "without error_handling"
            print(f"{opts.steps} steps {label} ({len(text) // 1024} KiB):")
            print(f"   YAML, pure-Python parser: {pure * 1e3:8.1f} ms")
            print(
                f"   YAML, libyaml:            {fast * 1e3:8.1f} ms  "
                f"(pure / libyaml: {pure / fast:.1f}x)"
            )
            whole = loads[kind] * 1e3
            print(f"   whole load (YAML, schema, checks, configuration): {whole:.1f} ms")
    added = (loads["own"] - loads["none"]) / opts.steps
    print(f"the blocks add {added * 1e6:.0f} us a step to the load")


if __name__ == "__main__":
    main()
