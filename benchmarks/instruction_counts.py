"""What the blocks cost per step in CPU instructions: the machine-independent figure.

Usage: python benchmarks/instruction_counts.py [--steps N]   (needs valgrind)

``chain_overhead.py`` times things on the wall clock, which on a shared
machine varies by up to 2x from minute to minute. This counts the
instructions the CPU executes instead, with valgrind's callgrind, which
gives nearly the same count on every run and every machine. Each figure is the difference between
two sizes of the same work (N and 3N steps or calls) divided by 2N, so
start-up and loading cancel out:

- per call: the hand-written fallback + breaker + semaphore + retry chain
  of ``chain_overhead.py`` (the issue's ~1.2 us reference), the recipe
  step chain, and tenacity + pybreaker;
- per step of a recipe whose steps return at once (``execute()`` only,
  not loading), with state in memory: no blocks, one breaker and bulkhead
  shared by every step, each step's own, and the shared recipe with a
  chain that only writes ``recovery.<step>`` (the floor DESIGN section 4
  sets: ``chain_overhead._RecordOnly``).

What the blocks add per step, counted in hand-written chains, reads as
time on the issue's machine (1.2 us a chain), and as a share of a 1 ms
step. Instructions say nothing of caches: a step that sleeps leaves the
next one to start with cold caches, which ``chain_overhead.py`` part 3
times.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chain_overhead as timed

from framework0_errors import plugin

CALLS = {
    "hand-written chain": timed._hand_written_chain,
    "recipe step chain": timed._chain,
    "tenacity + pybreaker": timed._tenacity_pybreaker,
}
KINDS = ("none", "shared", "own", "floor")


def _counting(pid: int, on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)],
        check=True,
        capture_output=True,
    )


def _inner(what: str, n: int) -> None:
    """Under callgrind: do ``n`` of ``what`` with counting on, and nothing else."""
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    pid = os.getpid()
    if what in CALLS:
        call = CALLS[what]()
        call()  # the first call makes what later ones keep
        gc.collect()
        _counting(pid, True)
        for _ in range(n):
            call()
        _counting(pid, False)
        return
    if what == "floor":
        # The shared recipe, its chain doing only what DESIGN section 4 asks.
        plugin.StepChain = timed._RecordOnly  # type: ignore[misc,assignment]
        what = "shared"
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        pm = plugin_manager()
        recipe = load_checked_recipe(
            str(timed._recipe(Path(tmp), n, what, module="bench_return")), pm
        )
        gc.collect()
        _counting(pid, True)
        execute(recipe, hook=pm.hook, options={"state": "memory:"})
        _counting(pid, False)


def _count(what: str, n: int) -> int:
    """Instructions that ``n`` of ``what`` take, counted by callgrind in a child process."""
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--inner",
            what,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=False,
        # Set hashes place objects alike in every run: the counts repeat.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        sys.exit(f"callgrind failed on {what} x {n} (exit {proc.returncode}):\n{proc.stderr}")
    return int(found.group(1).replace(",", ""))


def _per_unit(jobs: dict[str, int], workers: int) -> dict[str, float]:
    """Instructions per unit of each job: (count of 3N - count of N) / 2N."""
    sizes = [(what, k * n) for what, n in jobs.items() for k in (1, 3)]
    with ThreadPoolExecutor(workers) as pool:
        counts: dict[tuple[str, int], int] = dict(
            zip(sizes, pool.map(lambda job: _count(*job), sizes), strict=True)
        )
    return {what: (counts[what, 3 * n] - counts[what, n]) / (2 * n) for what, n in jobs.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--inner", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.inner:
        _inner(opts.inner[0], int(opts.inner[1]))
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"{' and '.join(missing)} not found: install valgrind (apt-get install valgrind)")
    jobs = dict.fromkeys(CALLS, opts.calls) | dict.fromkeys(KINDS, opts.steps)
    per = _per_unit(jobs, workers=os.cpu_count() or 1)
    hand = per["hand-written chain"]
    seconds_per_instruction = timed.REFERENCE_HAND_CHAIN / hand
    print("instructions counted by callgrind (each count within 1% from run to run)")
    print("per call, on a function that returns at once:")
    for what in CALLS:
        print(
            f"   {what + ':':24s}{per[what]:9,.0f}  ({per[what] / hand:.2f} hand-written chains: "
            f"{per[what] * seconds_per_instruction * 1e6:.2f} us on the issue's machine)"
        )
    print(
        f"   tenacity + pybreaker / recipe step chain: "
        f"{per['tenacity + pybreaker'] / per['recipe step chain']:.2f}x"
    )
    print(f"per step of {opts.steps} and {3 * opts.steps} steps that return at once (execute()):")
    print(f"   without error_handling: {per['none']:9,.0f}")
    for kind, label in timed.RECIPE_LABELS.items():
        added = per[kind] - per["none"]
        on_theirs = added * seconds_per_instruction
        print(
            f"   blocks add {added:7,.0f} ({added / hand:.2f} hand-written chains): "
            f"{on_theirs * 1e6:.2f} us on the issue's machine, "
            f"{on_theirs / timed.STEP_SECONDS:.2%} of a 1 ms step"
        )
        print(f"      {label}")
    floor = per["floor"] - per["none"]
    print(
        f"   of which a chain that only watches the log and writes recovery.<step>, what "
        f"DESIGN section 4 asks of every step with a block: {floor:,.0f} "
        f"({floor * seconds_per_instruction / timed.STEP_SECONDS:.2%} of a 1 ms step)"
    )
    print(
        "   (the issue's machine runs the hand-written chain in "
        f"{timed.REFERENCE_HAND_CHAIN * 1e6:.1f} us: {hand:,.0f} instructions)"
    )


if __name__ == "__main__":
    main()
