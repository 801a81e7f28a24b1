"""The ``framework0`` command: run, validate, explain and schema."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ._version import __version__
from .orchestrator import (
    STEP_THREAD_PREFIX,
    Context,
    Framework0Error,
    RecipeInvalid,
    StepResult,
    StepsAbandoned,
    build_recipe_schema,
    claims,
    execute,
    load_checked_recipe,
    plugin_manager,
)
from .signals import EXIT_TERMINATED, TerminationSignal
from .state import find_checkpoint, open_state
from .stores.base import BreakerSnapshot
from .stores.select import Checkpoint

__all__ = ["EXIT_FAILED", "EXIT_INTERNAL", "EXIT_INVALID", "EXIT_OK", "main", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
DEBUG_ENV = "FRAMEWORK0_DEBUG"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framework0",
        description="Run Framework0 recipes with declarative error handling and recovery.",
    )
    parser.add_argument("--version", action="version", version=f"framework0 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_run = sub.add_parser("run", help="run a recipe")
    p_run.add_argument("recipe", help="path of the recipe YAML file")
    p_run.add_argument(
        "--workers", type=_positive_int, default=1, help="steps run at once (default 1)"
    )
    p_run.add_argument("--context-out", metavar="FILE", help="write the final Context as JSON")
    p_run.add_argument("--report", metavar="FILE", help="write a JSON run report")
    _state_option(p_run)
    p_run.add_argument(
        "--resume",
        nargs="?",
        const=_LATEST,
        metavar="RUN_ID",
        help="resume a run (default: the latest run of this recipe): steps it completed "
        "are not run again and its Context is restored",
    )
    p_run.add_argument(
        "--force", action="store_true", help="resume even if the recipe changed since"
    )

    p_val = sub.add_parser("validate", help="check recipes without running them")
    p_val.add_argument("recipes", nargs="+", metavar="RECIPE")

    p_exp = sub.add_parser("explain", help="show the effective error handling of every step")
    p_exp.add_argument("recipe")

    sub.add_parser("schema", help="print the recipe JSON Schema")

    p_brk = sub.add_parser("breakers", help="list circuit breakers, or reset or open one")
    p_brk.add_argument("action", nargs="?", choices=["list", "reset", "open"], default="list")
    p_brk.add_argument("name", nargs="?", help="the breaker, for reset and open")
    _state_option(p_brk)

    p_runs = sub.add_parser("runs", help="list recent runs and their outcome")
    p_runs.add_argument("--limit", type=_positive_int, default=20, help="how many (default 20)")
    _state_option(p_runs)
    return parser


_LATEST = "latest"


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="URL",
        help="state store: sqlite:PATH, redis://HOST:PORT/DB or memory: (default: "
        "$FRAMEWORK0_STATE, the recipe's error_handling.state.url, or "
        "sqlite:.framework0/state.db)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    code = run(argv, stdout=sys.stdout, stderr=sys.stderr)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED) and _step_threads_alive():
        # Steps abandoned by a second Ctrl-C: an ordinary exit would wait for
        # their threads, which Python cannot stop.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _step_threads_alive() -> bool:
    return any(t.name.startswith(STEP_THREAD_PREFIX) for t in threading.enumerate())


def run(argv: Sequence[str] | None, *, stdout: TextIO, stderr: TextIO) -> int:
    """Run the command line ``argv`` and return its exit code.

    0: the recipe succeeded (also after recovery) or nothing was wrong;
    1: the recipe failed; 2: invalid input (file, YAML, schema, imports);
    70: an internal error; 130: interrupted (Ctrl-C); 143: stopped by SIGTERM.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message
        return EXIT_INVALID if exc.code else EXIT_OK
    try:
        command = {
            "run": _cmd_run,
            "validate": _cmd_validate,
            "explain": _cmd_explain,
            "schema": _cmd_schema,
            "breakers": _cmd_breakers,
            "runs": _cmd_runs,
        }[args.command]
        return command(args, stdout, stderr)
    except RecipeInvalid as exc:
        for problem in exc.problems:
            print(problem, file=stderr)
        return EXIT_INVALID
    except Framework0Error as exc:
        print(f"framework0: error: {exc}", file=stderr)
        return EXIT_INVALID
    except _Stopped as exc:
        how = "terminated" if exc.terminated else "interrupted"
        if exc.abandoned:
            print(
                f"framework0: {how} again: abandoned {', '.join(exc.abandoned)}; their work is "
                "not recorded, and --resume runs them again",
                file=stderr,
            )
        else:
            print(f"framework0: {how}", file=stderr)
        return EXIT_TERMINATED if exc.terminated else EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("framework0: interrupted", file=stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"framework0: internal error: {type(exc).__name__}: {exc}\n"
            f"This is a bug; rerun with {DEBUG_ENV}=1 to see the traceback and report it.",
            file=stderr,
        )
        return EXIT_INTERNAL


def _cmd_schema(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    pm = plugin_manager()
    stdout.write(render_schema(build_recipe_schema(claims(pm))))
    return EXIT_OK


def render_schema(schema: dict[str, Any]) -> str:
    """Render a schema as the stable JSON text committed under ``schemas/``."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _cmd_validate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    pm = plugin_manager()
    status = EXIT_OK
    for path in args.recipes:
        try:
            recipe = load_checked_recipe(path, pm)
        except RecipeInvalid as exc:
            for problem in exc.problems:
                print(problem, file=stdout)
            status = EXIT_INVALID
            continue
        for warning in recipe.warnings:
            print(warning, file=stdout)
        print(f"{path}: ok", file=stdout)
    return status


def _cmd_explain(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    pm = plugin_manager()
    recipe = load_checked_recipe(args.recipe, pm)
    print(f"{recipe.path}: {len(recipe.steps)} step(s)", file=stdout)
    for step in recipe.steps:
        lines = [d for d in pm.hook.framework0_describe_step(recipe=recipe, step=step) if d]
        target = f"{step.module}:{step.function}"
        print(f"{step.name}: {' | '.join(lines) if lines else 'no error handling'}", file=stdout)
        print(f"    runs {target}", file=stdout)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    for option in ("context_out", "report"):
        _check_writable(getattr(args, option), "--" + option.replace("_", "-"))
    pm = plugin_manager()
    recipe = load_checked_recipe(args.recipe, pm)
    for warning in recipe.warnings:
        print(warning, file=stderr)
    width = max((len(s.name) for s in recipe.steps), default=4)
    print(
        f"framework0: running {recipe.path} ({len(recipe.steps)} step(s), "
        f"{args.workers} worker(s))",
        file=stdout,
    )

    def show(result: StepResult) -> None:
        _say(stdout, _step_line(result, width))

    termination = TerminationSignal()

    def interrupted(running: list[str]) -> None:
        if running:
            how, again = (
                ("terminated", "send SIGTERM again (or press Ctrl-C)")
                if termination.received
                else ("interrupted", "press Ctrl-C again")
            )
            _say(
                stderr,
                f"framework0: {how}: waiting for {', '.join(running)} to finish; "
                f"{again} to abandon them",
            )

    context = Context()
    run_id: str | None = None
    resumed: set[str] = set()
    if args.resume is not None:
        checkpoint = _checkpoint(recipe, args)
        context = Context(checkpoint.context)
        run_id = checkpoint.run_id
        resumed = {n for n, status in checkpoint.step_outcomes.items() if status == "succeeded"}
        print(
            f"framework0: resuming run {run_id}: {len(resumed)} step(s) done before",
            file=stdout,
        )
    aborted: list[dict[str, Any]] = []  # the report of a run an interrupt stopped
    try:
        with termination:
            result = execute(
                recipe,
                hook=pm.hook,
                workers=args.workers,
                context=context,
                on_step_end=show,
                run_id=run_id,
                options={"state": args.state},
                resumed=resumed,
                on_interrupt=interrupted,
                on_abort=aborted.append,
            )
    except KeyboardInterrupt as exc:
        # What ran so far is reported and written, as after a whole run.
        for report in aborted:
            if termination.received:
                report["status"] = "terminated"
            _summarise(recipe.name, report, stdout, stderr)
            _write_outputs(args, report["run_id"], context, report, stderr)
        abandoned = exc.steps if isinstance(exc, StepsAbandoned) else []
        raise _Stopped(termination.received, abandoned) from None
    _summarise(recipe.name, result.report, stdout, stderr)
    written = _write_outputs(args, result.run.run_id, context, result.report, stderr)
    if not written:
        return EXIT_INVALID
    return EXIT_OK if result.succeeded else EXIT_FAILED


def _summarise(name: str, report: dict[str, Any], stdout: TextIO, stderr: TextIO) -> None:
    for note in report.get("notes", ()):
        print(f"  {note}", file=stdout)
    for warning in report.get("warnings", ()):
        print(f"framework0: warning: {warning}", file=stderr)
    counts = report["counts"]
    print(
        f"recipe {name}: {report['status']} ({counts['succeeded']} succeeded, "
        f"{counts['failed']} failed, {counts['skipped']} skipped) in {report['duration']:.3f}s",
        file=stdout,
    )


def _say(stream: TextIO, line: str) -> None:
    # One write with its newline: print() writes the two apart, and a Ctrl-C or
    # SIGTERM landing between them would run this line into the next.
    stream.write(line + "\n")
    stream.flush()


class _Stopped(Exception):
    """A run stopped by Ctrl-C or SIGTERM; ``abandoned``: steps a second one left running."""

    def __init__(self, terminated: bool, abandoned: list[str]) -> None:
        super().__init__("terminated" if terminated else "interrupted")
        self.terminated = terminated
        self.abandoned = abandoned


def _write_outputs(
    args: argparse.Namespace, run_id: str, context: Context, report: Any, stderr: TextIO
) -> bool:
    ok = True
    if args.context_out:
        ok &= _write_json(
            args.context_out,
            {
                "run_id": run_id,
                "context": context.to_dict(),
                "history": [c.to_dict() for c in context.history()],
                "discarded_writes": [d.to_dict() for d in context.discarded()],
            },
            stderr,
        )
    if args.report:
        ok &= _write_json(args.report, report, stderr)
    return ok


def _checkpoint(recipe: Any, args: argparse.Namespace) -> Checkpoint:
    from .plugin import recipe_state_config

    opened = open_state(args.state, recipe_state_config(recipe))
    try:
        wanted = None if args.resume == _LATEST else args.resume
        return find_checkpoint(opened.store, recipe.path, wanted, force=args.force)
    finally:
        opened.store.close()


def _cmd_breakers(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if args.action != "list" and not args.name:
        print(f"framework0: error: breakers {args.action} needs a breaker NAME", file=stderr)
        return EXIT_INVALID
    store = open_state(args.state).store
    try:
        now = time.time()
        if args.action == "reset":
            if args.name not in store.breaker_names():
                known = ", ".join(store.breaker_names()) or "none yet"
                print(
                    f"framework0: error: no circuit breaker named {args.name!r} (known: {known})",
                    file=stderr,
                )
                return EXIT_INVALID
            store.reset(args.name, now=now)
            print(f"breaker {args.name}: closed", file=stdout)
        elif args.action == "open":
            store.force_open(args.name, now=now)
            print(f"breaker {args.name}: open until reset", file=stdout)
        else:
            names = store.breaker_names()
            if not names:
                print("no circuit breakers recorded yet", file=stdout)
            width = max((len(n) for n in names), default=4)
            for snap in store.snapshots(names, now=now):
                print(_breaker_line(snap, now, width), file=stdout)
    finally:
        store.close()
    return EXIT_OK


def _breaker_line(snap: BreakerSnapshot, now: float, width: int) -> str:
    if snap.state == "open":
        until = (
            "until reset"
            if snap.half_open_at is None
            else f"half-opens in {max(snap.half_open_at - now, 0):.0f}s"
        )
    else:
        until = ""
    return (
        f"{snap.name:<{width}}  {snap.state:<9}  {snap.consecutive_failures} consecutive "
        f"failure(s)  {until}"
    ).rstrip()


def _cmd_runs(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    store = open_state(args.state).store
    try:
        runs = store.list_runs(args.limit)
    finally:
        store.close()
    if not runs:
        print("no runs recorded yet", file=stdout)
    for summary in runs:
        started = datetime.fromtimestamp(summary.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        outcome = summary.outcome or "running (or interrupted)"
        print(f"{summary.run_id}  {started}Z  {outcome:<10}  {summary.recipe_path}", file=stdout)
    return EXIT_OK


_LABELS = {"succeeded": "ok", "failed": "FAILED", "skipped": "skipped"}


def _step_line(result: StepResult, width: int) -> str:
    label = _LABELS[result.status]
    timing = f"{result.duration:8.3f}s" if result.status != "skipped" else " " * 9
    why = result.error or result.reason or ""
    extra = "; ".join(x for x in (result.detail, why) if x)
    return f"  {label:<8} {result.name:<{width}} {timing}  {extra}".rstrip()


def _check_writable(path: str | None, option: str) -> None:
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise Framework0Error(f"{option} {path}: folder {parent} does not exist")
    if Path(path).is_dir():
        raise Framework0Error(f"{option} {path}: is a directory; give a file name")
    if not os.access(parent, os.W_OK):
        raise Framework0Error(f"{option} {path}: folder {parent} is not writable")


def _write_json(path: str, data: Any, stderr: TextIO) -> bool:
    target = Path(path)
    try:
        # Write then rename, so a crash never leaves half a file behind.
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.resolve().parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, target)
    except OSError as exc:
        print(f"framework0: error: cannot write {path}: {exc.strerror or exc}", file=stderr)
        return False
    return True


if __name__ == "__main__":  # pragma: no cover
    main()
