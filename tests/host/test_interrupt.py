"""Ctrl-C under --workers: running steps are waited for, and a second Ctrl-C abandons them."""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import Project

SLOW = """
import os, time

def slow(context, args):
    open(args["started"], "w").close()
    deadline = time.time() + 60
    while not os.path.exists(args["release"]) and time.time() < deadline:
        time.sleep(0.01)
    context.set("slow_done", True)

def quick(context, args):
    context.set("quick_done", True)
"""

DEADLINE = 30.0


def _slow_recipe(project: Project, *extra: str) -> tuple[str, Path, Path]:
    """Write a recipe of a slow step (until release.flag appears) and a quick one.

    Returns the recipe's path and the slow step's started and release flags.
    """
    project.module("slow_steps", SLOW)
    started, release = project.root / "started.flag", project.root / "release.flag"
    args = f'{{started: "{started}", release: "{release}"}}'
    path = project.recipe(
        "steps:\n"
        f"  - {{name: slow, module: slow_steps, function: slow, args: {args}}}\n"
        "  - {name: quick, module: slow_steps, function: quick}\n" + "".join(extra)
    )
    return path, started, release


def _run_interrupted(path: str, *, every_step: bool = False, **options: Any) -> None:
    """Run the recipe with execute(), Ctrl-C coming as its first (or every) step ends."""
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    ended: list[object] = []

    def interrupt(result: object) -> None:
        ended.append(result)
        if every_step or len(ended) == 1:
            raise KeyboardInterrupt  # as if Ctrl-C came while the main thread recorded it

    pm = plugin_manager()
    execute(load_checked_recipe(path, pm), hook=pm.hook, on_step_end=interrupt, **options)


def _aborted_reports(path: str, *plugins: object, **options: Any) -> list[dict[str, Any]]:
    """Run the recipe with execute(), which must raise KeyboardInterrupt; return the reports."""
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    pm = plugin_manager(plugins=list(plugins))
    reports: list[dict[str, Any]] = []
    with pytest.raises(KeyboardInterrupt):
        execute(load_checked_recipe(path, pm), hook=pm.hook, on_abort=reports.append, **options)
    return reports


def _checkpoint(db: Path, path: str) -> Any:
    """The checkpoint of the latest run of ``path`` in the SQLite state file ``db``."""
    from framework0_errors.stores.select import open_store

    store = open_store(f"sqlite:{db}")
    try:
        checkpoint = store.latest_run(str(Path(path).resolve()))
    finally:
        store.close()
    assert checkpoint is not None
    return checkpoint


def _log_watch_installed() -> bool:
    """Whether a run's log watch still listens on the root logger."""
    from framework0_errors import detect

    return any(isinstance(h, detect._Dispatcher) for h in logging.getLogger().handlers)


class Running:
    """A ``framework0 run --workers 2`` process, its stderr read line by line."""

    def __init__(self, project: Project, *options: str) -> None:
        recipe, self.started, self.release = _slow_recipe(
            project, "  - {name: later, module: slow_steps, function: quick, depends_on: [slow]}\n"
        )
        script = shutil.which("framework0")
        assert script is not None, "the package must be installed (pip install -e .)"
        self.process = subprocess.Popen(
            [script, "run", recipe, "--workers", "2", "--state", "memory:", *options],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            self.lines.put(line)

    def wait_for_file(self, path: Path) -> None:
        """Return once ``path`` exists (the slow step has started)."""
        deadline = time.monotonic() + DEADLINE
        while not path.exists():
            assert time.monotonic() < deadline, f"{path.name} never appeared"
            assert self.process.poll() is None, "".join(self.err)
            time.sleep(0.01)

    def wait_for_line(self, text: str) -> str:
        """Return the first stderr line containing ``text``."""
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                pytest.fail(f"no line with {text!r} on stderr: {''.join(self.err)!r}")
            if text in line:
                return line

    def interrupt(self) -> None:
        """Send SIGINT, as Ctrl-C in a terminal does."""
        self.process.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, str, str]:
        """Return the exit code, stdout and stderr once the process ends."""
        code = self.process.wait(timeout=DEADLINE)
        self.close()
        return code, self.out, "".join(self.err)

    def close(self) -> None:
        """Kill the process if it still runs; read and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.out = self.process.stdout.read()
        self.process.stdout.close()
        self.reader.join(DEADLINE)
        self.process.stderr.close()


@pytest.fixture
def running(project: Project) -> Iterator[Running]:
    """The recipe running, its slow step started; killed if a test leaves it running."""
    yield from _started(Running(project))


@pytest.fixture
def reporting(project: Project) -> Iterator[Running]:
    """As ``running``, with ``--report report.json``."""
    yield from _started(Running(project, "--report", str(project.root / "report.json")))


def _started(process: Running) -> Iterator[Running]:
    process.wait_for_file(process.started)
    yield process
    if not process.process.stdout or not process.process.stdout.closed:
        process.close()
    process.release.touch()  # let a step a test abandoned end


def test_first_interrupt_waits_for_running_steps_and_records_them(running: Running) -> None:
    """Ctrl-C says what it waits for, lets the running step finish, starts nothing new."""
    running.interrupt()
    line = running.wait_for_line("interrupted")
    # quick may still be running too, on a busy machine
    assert "framework0: interrupted: waiting for slow" in line
    assert "to finish; press Ctrl-C again to abandon them" in line
    running.release.touch()
    code, out, err = running.finish()
    assert code == 130
    assert "Traceback" not in err
    assert "framework0: interrupted\n" in err
    assert re.search(r"^\s+ok\s+slow\s", out, re.MULTILINE)  # the step was recorded
    assert "later" not in out  # its dependent was never started


def test_second_interrupt_abandons_running_steps_at_once(running: Running) -> None:
    """A second Ctrl-C exits with 130 without waiting for the step, naming it."""
    running.interrupt()
    running.wait_for_line("press Ctrl-C again")
    running.interrupt()
    code, _, err = running.finish()  # times out if it waits for the step (60 s)
    assert code == 130
    assert "Traceback" not in err
    assert "interrupted again: abandoned slow" in err  # quick too, on a busy machine
    assert "their work is not recorded, and --resume runs them again" in err


def test_sigterm_stops_the_run_as_ctrl_c_does(project: Project, reporting: Running) -> None:
    """SIGTERM (a scheduler stopping the run) waits for the running step and exits with 143."""
    reporting.process.send_signal(signal.SIGTERM)
    line = reporting.wait_for_line("terminated")
    assert "framework0: terminated: waiting for slow" in line
    assert "send SIGTERM again (or press Ctrl-C) to abandon them" in line
    reporting.release.touch()
    code, out, err = reporting.finish()
    assert code == 143
    assert "Traceback" not in err
    assert "framework0: terminated\n" in err
    assert re.search(r"^\s+ok\s+slow\s", out, re.MULTILINE)
    assert "recipe recipe: terminated (" in out
    written = json.loads((project.root / "report.json").read_text())
    assert written["status"] == "terminated"
    steps = {s["name"]: s for s in written["steps"]}
    assert steps["slow"]["status"] == "succeeded"
    assert steps["later"]["status"] == "skipped"
    assert steps["later"]["reason"] == "not run: the run was interrupted"


def test_an_interrupted_run_writes_its_report_and_context(project: Project) -> None:
    """Ctrl-C in a step: --report and --context-out say what ran, and what did not and why."""
    import io

    from framework0_errors import cli

    project.module(
        "stopping_steps",
        "def first(context, args):\n    context.set('first', 1)\n"
        "def stop(context, args):\n    raise KeyboardInterrupt\n",
    )
    path = project.recipe(
        "steps:\n  - {name: a, module: stopping_steps, function: first}\n"
        "  - {name: b, module: stopping_steps, function: stop, depends_on: [a]}\n"
        "  - {name: c, module: stopping_steps, function: first, depends_on: [b]}\n"
    )
    report, context = project.root / "report.json", project.root / "context.json"
    out, err = io.StringIO(), io.StringIO()
    options = ["--state", "memory:", "--report", str(report), "--context-out", str(context)]
    assert cli.run(["run", path, *options], stdout=out, stderr=err) == 130
    assert "recipe recipe: interrupted (1 succeeded, 0 failed, 2 skipped)" in out.getvalue()
    assert err.getvalue().endswith("framework0: interrupted\n")
    written = json.loads(report.read_text())
    assert written["status"] == "interrupted"
    assert [(s["name"], s["status"], s["reason"]) for s in written["steps"]] == [
        ("a", "succeeded", None),
        ("b", "skipped", "stopped while running by the interrupt"),
        ("c", "skipped", "not run: the run was interrupted"),
    ]
    saved = json.loads(context.read_text())
    assert saved["run_id"] == written["run_id"]
    assert saved["context"]["first"] == 1


def test_second_sigterm_abandons_running_steps(project: Project, reporting: Running) -> None:
    """A second SIGTERM abandons the running step at once, names it, and reports it."""
    reporting.process.send_signal(signal.SIGTERM)
    reporting.wait_for_line("send SIGTERM again")
    reporting.process.send_signal(signal.SIGTERM)
    code, _, err = reporting.finish()  # times out if it waits for the step (60 s)
    assert code == 143
    assert "Traceback" not in err
    assert "terminated again: abandoned slow" in err
    steps = {s["name"]: s for s in json.loads((project.root / "report.json").read_text())["steps"]}
    assert steps["slow"]["reason"] == (
        "abandoned while running: a second interrupt stopped waiting for it"
    )


def test_sigterm_handler_is_put_back_after_a_run(project: Project) -> None:
    """In-process, the run's SIGTERM handler is in place only while the steps run."""
    import io
    import sys

    from framework0_errors import cli

    project.module(
        "sigterm_look",
        "import signal\nSEEN = []\n"
        "def f(context, args):\n    SEEN.append(signal.getsignal(signal.SIGTERM))\n",
    )
    path = project.recipe("steps:\n  - {name: a, module: sigterm_look, function: f}\n")
    before = signal.getsignal(signal.SIGTERM)
    out = io.StringIO()
    assert cli.run(["run", path, "--state", "memory:"], stdout=out, stderr=out) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    seen = sys.modules["sigterm_look"].SEEN
    assert len(seen) == 1
    assert seen[0] is not before  # installed while the step ran


def test_execute_tells_on_interrupt_what_runs_and_lets_it_finish(project: Project) -> None:
    """execute() names the steps still running to on_interrupt, then waits for them."""
    from framework0_errors.orchestrator import Context

    path, _, release = _slow_recipe(project)
    context = Context()
    told: list[list[str]] = []

    def on_interrupt(names: list[str]) -> None:
        told.append(names)
        release.touch()

    with pytest.raises(KeyboardInterrupt) as stopped:
        _run_interrupted(
            path,
            workers=2,
            context=context,
            on_interrupt=on_interrupt,
            options={"state": "memory:"},
        )
    assert type(stopped.value) is KeyboardInterrupt  # nothing was abandoned
    assert told == [["slow"]]
    assert context.get("slow_done") is True


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def _interrupted_with_workers(path: str, release: Path) -> tuple[list[list[str]], list[str], Any]:
    """Run under --workers 2 until an interrupt the test arranges; release slow when told.

    Returns what on_interrupt was told, the steps whose end was recorded, and the Context.
    """
    from framework0_errors.orchestrator import (
        Context,
        execute,
        load_checked_recipe,
        plugin_manager,
    )

    pm = plugin_manager()
    context = Context()
    told: list[list[str]] = []
    ended: list[str] = []

    def on_interrupt(names: list[str]) -> None:
        told.append(names)
        threading.Timer(0.05, release.touch).start()  # slow ends a little later

    with pytest.raises(KeyboardInterrupt) as stopped:
        execute(
            load_checked_recipe(path, pm),
            hook=pm.hook,
            workers=2,
            context=context,
            on_step_end=lambda result: ended.append(result.name),  # type: ignore[attr-defined]
            on_interrupt=on_interrupt,
            options={"state": "memory:"},
        )
    assert type(stopped.value) is KeyboardInterrupt  # nothing was abandoned
    return told, ended, context


def test_an_interrupt_while_the_pool_starts_a_thread_still_waits_for_its_step(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside Thread.start(): the pool never learns of the thread; its step is waited for."""
    from framework0_errors.orchestrator import STEP_THREAD_PREFIX

    path, started, release = _slow_recipe(project)
    real_start = threading.Thread.start
    interrupted: list[str] = []

    def start(thread: threading.Thread) -> None:
        real_start(thread)
        if thread.name.startswith(STEP_THREAD_PREFIX) and not interrupted:
            # As Ctrl-C landing in Thread.start() once the step had begun: the
            # pool's submit() stops before it notes the thread.
            _wait_for(started)
            interrupted.append(thread.name)
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start)
    told, ended, context = _interrupted_with_workers(path, release)
    assert told == [["slow"]]
    assert ended == ["slow"]  # waited for and recorded; quick was never handed out
    assert context.get("slow_done") is True


def test_a_step_handed_over_but_not_begun_when_interrupted_never_begins(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step queued for a busy worker when Ctrl-C comes is not waited for, and never runs."""
    from concurrent.futures import ThreadPoolExecutor

    from framework0_errors.orchestrator import runner

    path, started, release = _slow_recipe(project)
    # One thread behind --workers 2: slow holds it, and quick waits in its queue.
    monkeypatch.setattr(
        runner, "ThreadPoolExecutor", lambda workers, **kw: ThreadPoolExecutor(1, **kw)
    )
    main = threading.main_thread().ident
    assert main is not None

    def ctrl_c_once_slow_runs() -> None:
        _wait_for(started)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=ctrl_c_once_slow_runs, daemon=True).start()
    told, ended, context = _interrupted_with_workers(path, release)
    assert told == [["slow"]]
    assert ended == ["slow"]
    assert context.get("slow_done") is True
    assert context.get("quick_done") is None  # handed over, never begun


def test_an_interrupt_just_after_a_step_ended_loses_nothing_and_does_not_hang(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C right after the wake-up of an ended step: the step is still recorded."""
    from queue import SimpleQueue

    from framework0_errors.orchestrator import runner

    class InterruptedAfterFirstGet(SimpleQueue):  # type: ignore[type-arg]
        interrupted = False

        def get(self, *args: Any, **kwargs: Any) -> Any:
            item = super().get(*args, **kwargs)
            if not InterruptedAfterFirstGet.interrupted:
                InterruptedAfterFirstGet.interrupted = True
                raise KeyboardInterrupt  # as if it landed just after get() returned
            return item

    monkeypatch.setattr(runner, "SimpleQueue", InterruptedAfterFirstGet)
    path, _, release = _slow_recipe(project)
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(_interrupted_with_workers(path, release))
        except BaseException as exc:  # a failure shows in the assertions below
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive(), "execute() hung waiting for a step whose end it had lost"
    told, ended, context = outcome[0]
    assert told == [["slow"]]
    assert ended == ["quick", "slow"]
    assert context.get("quick_done") is True


def test_an_interrupt_during_run_end_still_reports(project: Project) -> None:
    """Ctrl-C while the run-end hooks work: on_abort gets the report, marked interrupted."""
    from framework0_errors.orchestrator import (
        hookimpl,
    )

    class SlowToEnd:
        @hookimpl
        def framework0_run_end(self) -> None:
            raise KeyboardInterrupt  # as if Ctrl-C came during a long rollback

    project.module("slow_steps", SLOW)
    path = project.recipe("steps:\n  - {name: a, module: slow_steps, function: quick}\n")
    reports = _aborted_reports(path, SlowToEnd(), options={"state": "memory:"})
    assert [r["status"] for r in reports] == ["interrupted"]
    assert [(s["name"], s["status"]) for s in reports[0]["steps"]] == [("a", "succeeded")]


STOPPING = """
import time

def stop(context, args):
    time.sleep(args["after"])
    raise KeyboardInterrupt

def slow(context, args):
    time.sleep(args["after"])
    context.set(args.get("key", "slow_done"), True)
"""


def _run_three_workers(path: str, context: Any, on_step_end: Any) -> None:
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    pm = plugin_manager()
    execute(
        load_checked_recipe(path, pm),
        hook=pm.hook,
        workers=3,
        context=context,
        on_step_end=on_step_end,
        options={"state": "memory:"},
    )


def test_steps_raising_keyboardinterrupt_while_waiting_are_not_a_second_interrupt(
    project: Project,
) -> None:
    """Under --workers, a second step's own KeyboardInterrupt does not abandon the others."""
    from framework0_errors.orchestrator import Context

    project.module("stopping", STOPPING)
    path = project.recipe(
        "steps:\n  - {name: k1, module: stopping, function: stop, args: {after: 0.05}}\n"
        "  - {name: k2, module: stopping, function: stop, args: {after: 0.3}}\n"
        "  - {name: slow, module: stopping, function: slow, args: {after: 0.8}}\n"
    )
    context = Context()
    ended: list[str] = []
    with pytest.raises(KeyboardInterrupt) as stopped:
        _run_three_workers(path, context, lambda result: ended.append(result.name))
    assert type(stopped.value) is KeyboardInterrupt  # not StepsAbandoned
    assert ended == ["slow"]
    assert context.get("slow_done") is True
    assert _log_watch_installed() is False


def test_an_observer_failing_while_waiting_still_waits_for_the_running_steps(
    project: Project,
) -> None:
    """Ctrl-C, then an observer error (a closed stdout) while waiting: the steps still end."""
    from framework0_errors.orchestrator import Context

    project.module("stopping", STOPPING)
    path = project.recipe(
        "steps:\n  - {name: k1, module: stopping, function: stop, args: {after: 0.05}}\n"
        "  - {name: s1, module: stopping, function: slow, args: {after: 0.3}}\n"
        "  - {name: s2, module: stopping, function: slow, args: {after: 0.8, key: s2_done}}\n"
    )
    context = Context()

    def broken(result: object) -> None:
        raise BrokenPipeError("stdout went away")

    with pytest.raises(BrokenPipeError):
        _run_three_workers(path, context, broken)
    assert context.get("s2_done") is True  # waited for, though not recorded
    assert _log_watch_installed() is False


def test_an_interrupted_run_commits_what_ended_and_releases_the_log_watch(
    project: Project,
) -> None:
    """Ctrl-C between steps: the ended step is checkpointed even with checkpoints off."""

    project.module("slow_steps", SLOW)
    db = project.root / "state.db"
    path = project.recipe(
        "error_handling:\n  state: {checkpoints: false}\nsteps:\n"
        "  - {name: a, module: slow_steps, function: quick}\n"
        "  - {name: b, module: slow_steps, function: quick}\n"
    )
    with pytest.raises(KeyboardInterrupt):
        _run_interrupted(path, options={"state": f"sqlite:{db}"})
    checkpoint = _checkpoint(db, path)
    assert checkpoint.step_outcomes == {"a": "succeeded"}
    assert checkpoint.context["quick_done"] is True
    assert checkpoint.finished_at is None  # still resumable
    assert _log_watch_installed() is False


def test_a_second_interrupt_while_waiting_raises_steps_abandoned(project: Project) -> None:
    """execute() raises StepsAbandoned naming the steps it stopped waiting for."""
    from framework0_errors.orchestrator import StepsAbandoned

    path, _, release = _slow_recipe(project)

    def interrupted_again(names: list[str]) -> None:
        raise KeyboardInterrupt

    try:
        with pytest.raises(StepsAbandoned) as abandoned:
            _run_interrupted(
                path, workers=2, on_interrupt=interrupted_again, options={"state": "memory:"}
            )
    finally:
        release.touch()  # let the abandoned step's thread end
    assert abandoned.value.steps == ["slow"]
    assert str(abandoned.value) == "abandoned running step(s): slow"


def test_a_second_interrupt_with_nothing_left_running_is_a_plain_one(project: Project) -> None:
    """An interrupt while recording the last running step abandons nothing."""
    path, _, release = _slow_recipe(project)

    def on_interrupt(names: list[str]) -> None:
        release.touch()

    with pytest.raises(KeyboardInterrupt) as stopped:
        _run_interrupted(
            path,
            every_step=True,  # slow's end is recorded after the interrupt: a second one
            workers=2,
            on_interrupt=on_interrupt,
            options={"state": "memory:"},
        )
    assert type(stopped.value) is KeyboardInterrupt


def test_an_error_while_steps_run_waits_for_them_before_it_goes_on(project: Project) -> None:
    """A failing observer under --workers: the running steps end before the error surfaces."""
    from framework0_errors.orchestrator import (
        Context,
        execute,
        load_checked_recipe,
        plugin_manager,
    )

    path, _, release = _slow_recipe(project)
    pm = plugin_manager()
    context = Context()

    def broken(result: object) -> None:
        threading.Timer(0.05, release.touch).start()  # slow ends a little later
        raise BrokenPipeError("stdout went away")

    with pytest.raises(BrokenPipeError):
        execute(
            load_checked_recipe(path, pm),
            hook=pm.hook,
            workers=2,
            context=context,
            on_step_end=broken,
            options={"state": "memory:"},
        )
    assert context.get("slow_done") is True
    assert _log_watch_installed() is False  # run_aborted released the run's state


UNDO = """
def ok(context, args):
    context.set("done." + args["name"], True)

def fail(context, args):
    raise ValueError("charge refused")

def undo(context, args):
    context.set("undone." + args["name"], True)

def undo_interrupted(context, args):
    raise KeyboardInterrupt  # as if Ctrl-C came while this compensation ran
"""


def test_an_interrupt_during_a_rollback_checkpoints_the_steps_it_undid(project: Project) -> None:
    """Ctrl-C after one of two compensations: the undone step is saved as compensated.

    The step whose compensation was cut short is saved as being undone: --resume
    runs both again (it skips only steps saved as succeeded), and the report says
    what the rollback did before it stopped.
    """

    project.module("undo_steps", UNDO)
    db = project.root / "state.db"
    path = project.recipe(
        """
        steps:
          - name: reserve
            module: undo_steps
            function: ok
            args: {name: reserve}
            error_handling:
              rollback: {scriptlet: "undo_steps:undo_interrupted", args: {name: reserve}}
          - name: hold
            module: undo_steps
            function: ok
            args: {name: hold}
            depends_on: [reserve]
            error_handling:
              rollback: {scriptlet: "undo_steps:undo", args: {name: hold}}
          - name: charge
            module: undo_steps
            function: fail
            depends_on: [hold]
            error_handling: {on_failure: rollback}
        """
    )

    reports = _aborted_reports(path, options={"state": f"sqlite:{db}"})
    assert [r["status"] for r in reports] == ["interrupted"]
    assert reports[0]["notes"] == [
        "rollback of hold: compensated",
        "charge: rollback interrupted; --resume runs again the steps it undid or was undoing",
    ]
    checkpoint = _checkpoint(db, path)
    assert checkpoint.step_outcomes == {
        "reserve": "compensating",
        "hold": "compensated",
        "charge": "failed",
    }
    assert checkpoint.context["undone.hold"] is True
    assert checkpoint.finished_at is None
    assert _log_watch_installed() is False


def test_an_interrupt_during_run_start_releases_what_plugins_set_up(project: Project) -> None:
    """Ctrl-C in a later plugin's run_start: run_aborted releases the state, on_abort reports."""
    from framework0_errors.orchestrator import (
        hookimpl,
    )

    class SlowToStart:
        @hookimpl(trylast=True)
        def framework0_run_start(self) -> None:
            raise KeyboardInterrupt  # as if Ctrl-C came while it connected somewhere

    project.module("slow_steps", SLOW)
    path = project.recipe("steps:\n  - {name: a, module: slow_steps, function: quick}\n")
    reports = _aborted_reports(path, SlowToStart(), options={"state": "memory:"})
    assert _log_watch_installed() is False
    assert [r["status"] for r in reports] == ["interrupted"]
    assert [(s["name"], s["status"]) for s in reports[0]["steps"]] == [("a", "skipped")]


def test_a_run_start_that_fails_before_the_state_is_set_up_leaves_nothing_open(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notification channel's ${VAR} unset at run time: the error, no store or log watch left."""
    from framework0_errors.notify import MissingEnvVarError
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager
    from framework0_errors.stores.select import MemoryStateStore

    closed: list[bool] = []
    monkeypatch.setattr(MemoryStateStore, "close", lambda self: closed.append(True))
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/hook")
    project.module("slow_steps", SLOW)
    path = project.recipe(
        """
        error_handling:
          notifications:
            channels:
              ops: {type: webhook, url: "${HOOK_URL}"}
        steps:
          - {name: a, module: slow_steps, function: quick}
        """
    )
    pm = plugin_manager()
    recipe = load_checked_recipe(path, pm)
    monkeypatch.delenv("HOOK_URL")
    with pytest.raises(MissingEnvVarError):
        execute(recipe, hook=pm.hook, options={"state": "memory:"})
    assert closed == [True]
    assert _log_watch_installed() is False


ABANDONED_UNDO = """
import os, signal, threading, time

started = threading.Event()

def ok(context, args):
    context.set("done." + args["name"], True)

def fail(context, args):
    raise ValueError("charge refused")

def undo_then_interrupted(context, args):
    assert started.wait(5)
    raise KeyboardInterrupt  # the first Ctrl-C, as this one runs

def slow_undo(context, args):
    started.set()
    time.sleep(0.3)  # the main thread now waits for this one to end ...
    os.kill(os.getpid(), signal.SIGINT)  # ... and a second Ctrl-C abandons it
    time.sleep(0.3)
    context.set("undone." + args["name"], True)
"""


def test_a_compensation_abandoned_by_a_second_interrupt_is_resumed(project: Project) -> None:
    """A second Ctrl-C while compensations still run: they are saved as being undone."""
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    project.module("abandoned_undo", ABANDONED_UNDO)
    db = project.root / "state.db"
    path = project.recipe(
        """
        steps:
          - name: a
            module: abandoned_undo
            function: ok
            args: {name: a}
            error_handling:
              rollback: {scriptlet: "abandoned_undo:undo_then_interrupted", args: {name: a}}
          - name: b
            module: abandoned_undo
            function: ok
            args: {name: b}
            error_handling:
              rollback: {scriptlet: "abandoned_undo:slow_undo", args: {name: b}}
          - name: charge
            module: abandoned_undo
            function: fail
            depends_on: [a, b]
            error_handling: {on_failure: rollback}
        """
    )
    pm = plugin_manager()
    with pytest.raises(KeyboardInterrupt):
        execute(
            load_checked_recipe(path, pm),
            hook=pm.hook,
            workers=2,
            options={"state": f"sqlite:{db}"},
        )
    checkpoint = _checkpoint(db, path)
    assert checkpoint.step_outcomes == {
        "a": "compensating",
        "b": "compensating",
        "charge": "failed",
    }
    for thread in threading.enumerate():  # the abandoned compensation still ends
        if thread.name.startswith("framework0-rollback"):
            thread.join(5)


ROLLBACK_RECIPE = """
steps:
  - name: hold
    module: undone_steps
    function: ok
    args: {name: hold}
    error_handling:
      rollback: {scriptlet: "undone_steps:UNDO", args: {name: hold}}
  - name: charge
    module: undone_steps
    function: fail
    depends_on: [hold]
    error_handling: {on_failure: rollback}
"""


def test_a_run_end_that_fails_after_a_rollback_still_commits_what_it_undid(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in run_end after the compensations ran: they are committed, the state released."""
    from framework0_errors import plugin
    from framework0_errors.orchestrator import execute, load_checked_recipe, plugin_manager

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("report broken")

    monkeypatch.setattr(plugin, "apply_rollback_outcome", broken)
    project.module("undone_steps", UNDO)
    db = project.root / "state.db"
    path = project.recipe(ROLLBACK_RECIPE.replace("UNDO", "undo"))
    pm = plugin_manager()
    result = execute(load_checked_recipe(path, pm), hook=pm.hook, options={"state": f"sqlite:{db}"})
    assert any("report broken" in w for w in result.report["warnings"])
    assert _checkpoint(db, path).step_outcomes == {"hold": "compensated", "charge": "failed"}
    assert _log_watch_installed() is False


def test_a_second_interrupt_before_run_aborted_still_leaves_the_rollback_committed(
    project: Project,
) -> None:
    """Ctrl-C in the rollback, then again before this plugin's run_aborted: still committed."""
    from framework0_errors.orchestrator import (
        execute,
        hookimpl,
        load_checked_recipe,
        plugin_manager,
    )

    runs: list[Any] = []

    class InterruptedAgain:
        @hookimpl
        def framework0_run_start(self, run: Any) -> None:
            runs.append(run)

        @hookimpl(tryfirst=True)
        def framework0_run_aborted(self) -> None:
            raise KeyboardInterrupt  # as if Ctrl-C came again, before the others

    project.module("undone_steps", UNDO)
    db = project.root / "state.db"
    path = project.recipe(
        ROLLBACK_RECIPE.replace("UNDO", "undo").replace(
            "steps:\n",
            """steps:
  - name: first
    module: undone_steps
    function: ok
    args: {name: first}
    error_handling:
      rollback: {scriptlet: "undone_steps:undo_interrupted", args: {name: first}}
""",
        )
    )
    pm = plugin_manager(plugins=[InterruptedAgain()])
    try:
        with pytest.raises(KeyboardInterrupt):
            execute(load_checked_recipe(path, pm), hook=pm.hook, options={"state": f"sqlite:{db}"})
        assert _checkpoint(db, path).step_outcomes == {
            "first": "compensating",
            "hold": "compensated",
            "charge": "failed",
        }
    finally:
        runs[0].extras["error_handling"].close()  # run_aborted never got to it


def test_an_interrupt_while_notifications_flush_still_reports_them(project: Project) -> None:
    """Ctrl-C while run_end waits on a webhook that never answers: no second wait, full report."""
    import os
    import signal
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept_and_interrupt() -> None:
        connection, _ = server.accept()  # the webhook's POST: never answered
        held.append(connection)
        time.sleep(0.3)  # the run has reached the flush by now
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=accept_and_interrupt, daemon=True).start()
    project.module("undone_steps", UNDO)
    port = server.getsockname()[1]
    path = project.recipe(
        f"""
        error_handling:
          on_failure: continue
          notifications:
            flush_timeout: 20
            send_retries: 0
            channels:
              hook: {{type: webhook, url: "http://127.0.0.1:{port}/hook", timeout: 20}}
            routes:
              - match: {{outcomes: [failed]}}
                channels: [hook]
        steps:
          - name: charge
            module: undone_steps
            function: fail
            error_handling: {{retry: {{max_attempts: 1}}}}
        """
    )
    started = time.monotonic()
    try:
        reports = _aborted_reports(path, options={"state": "memory:"})
    finally:
        for connection in held:
            connection.close()
        server.close()
    assert time.monotonic() - started < 15  # the flush was not waited for again
    assert reports[0]["state"] == "memory:"
    assert reports[0]["notifications"]["channels"]["hook"]["sent"] == 0
