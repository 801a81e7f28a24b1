"""Host overhead per step: a 10,000-step recipe against a plain loop, in one run.

Usage: python benchmarks/host_overhead.py [--steps N] [--repeat R]

Prints the time per step of calling the step functions in a plain loop
(the baseline), of ``execute()`` sequentially and with 4 workers, with and
without the error-handling plugin loaded, and the overhead per step over
the baseline. Target: under 50 us per step sequentially.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework0_errors.orchestrator import Context, execute, load_checked_recipe, plugin_manager


def trivial(context: object, args: object) -> int:
    """The step every benchmark recipe runs: returns at once."""
    return 0


def _write_recipe(folder: Path, steps: int) -> Path:
    (folder / "bench_steps.py").write_text("def trivial(context, args):\n    return 0\n")
    lines = ["steps:"]
    for i in range(steps):
        lines += [f"  - name: s{i}", "    module: bench_steps", "    function: trivial"]
    path = folder / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def _runner(recipe: object, pm: object, workers: int) -> object:
    return lambda: execute(recipe, hook=pm.hook, workers=workers)  # type: ignore[arg-type, attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    n = opts.steps
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_recipe(Path(tmp), n)
        os.chdir(tmp)

        def loop() -> None:
            ctx = Context()
            for _ in range(n):
                trivial(ctx, {})

        baseline = _best(loop, opts.repeat) / n
        print(f"steps: {n}; baseline plain loop: {baseline * 1e6:.3f} us/step")
        for label, disabled in (("host only", ["error_handling"]), ("with plugins", [])):
            pm = plugin_manager(disabled=disabled)
            start = time.perf_counter()
            recipe = load_checked_recipe(str(path), pm)
            load = time.perf_counter() - start
            print(f"[{label}] load+validate: {load / n * 1e6:.1f} us/step")
            for workers in (1, 4):
                per = _best(_runner(recipe, pm, workers), opts.repeat) / n
                print(
                    f"[{label}] execute, workers={workers}: {per * 1e6:.1f} us/step; "
                    f"overhead {(per - baseline) * 1e6:.1f} us/step "
                    f"({per / baseline:.0f}x the plain loop)"
                )


if __name__ == "__main__":
    main()
