"""Resilience state across runs and processes: breakers, history, checkpoints, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from framework0_errors.stores.select import open_store

from ..conftest import CliResult, Project

SERVICE = """
import os, signal

def _log(args, name):
    with open(args["log"], "a") as handle:
        handle.write(name + "\\n")

def dead(context, args):
    _log(args, "dead")
    raise ConnectionError("connection refused by payments")

def work(context, args):
    _log(args, args["n"])
    if args.get("kill") and not os.path.exists(args["kill"]):
        open(args["kill"], "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    context.set("done." + args["n"], int(context.get("total", 0)) + 1)
    context.set("total", int(context.get("total", 0)) + 1)
    return 0
"""


def _framework0(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = shutil.which("framework0")
    assert script is not None, "the package must be installed (pip install -e .)"
    environ = {k: v for k, v in os.environ.items() if k != "FRAMEWORK0_STATE"}
    environ.update(env or {})
    return subprocess.run(
        [script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        timeout=120,
    )


def _dead_recipe(project: Project, log: Path) -> str:
    project.module("service", SERVICE)
    steps = "".join(
        f"""
  - name: charge_{i}
    module: service
    function: dead
    args: {{log: "{log}"}}
    error_handling:
      circuit_breaker: {{name: payments, failure_threshold: 2, recovery_timeout: 600}}
      on_failure: continue
"""
        for i in range(2)
    )
    return project.recipe("steps:" + steps)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_breaker_opened_by_one_process_protects_the_next(
    project: Project, backend: str, request: pytest.FixtureRequest
) -> None:
    """Run 1 fails twice and opens the breaker; run 2, a new process, never calls the service."""
    log = project.root / "calls.log"
    path = _dead_recipe(project, log)
    env = {}
    if backend == "redis":
        env["FRAMEWORK0_STATE"] = str(request.getfixturevalue("redis_url"))
    first = _framework0("run", path, cwd=project.root, env=env)
    assert first.returncode == 1, first.stderr
    assert log.read_text().splitlines() == ["dead", "dead"]
    second = _framework0("run", path, "--report", "r2.json", cwd=project.root, env=env)
    assert second.returncode == 1
    assert log.read_text().splitlines() == ["dead", "dead"], "the service was called again"
    assert "short-circuited (breaker payments open)" in second.stdout
    report = json.loads((project.root / "r2.json").read_text())
    assert report["circuit_breakers"]["payments"]["state"] == "open"
    listing = _framework0("breakers", cwd=project.root, env=env)
    assert "payments" in listing.stdout
    assert "open" in listing.stdout
    assert "half-opens in" in listing.stdout
    reset = _framework0("breakers", "reset", "payments", cwd=project.root, env=env)
    assert reset.returncode == 0
    third = _framework0("run", path, cwd=project.root, env=env)
    assert third.returncode == 1
    assert len(log.read_text().splitlines()) == 4, "after a reset the service is tried again"


def test_breaker_control_and_run_listing(
    project: Project, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """breakers open/reset/list and runs work against a chosen store."""
    url = f"sqlite:{tmp_path / 'ops.db'}"
    assert run_cli("breakers", "--state", url).out == "no circuit breakers recorded yet\n"
    assert run_cli("runs", "--state", url).out == "no runs recorded yet\n"
    assert run_cli("breakers", "open", "--state", url).code == 2
    opened = run_cli("breakers", "open", "billing", "--state", url)
    assert opened.out == "breaker billing: open until reset\n"
    listing = run_cli("breakers", "list", "--state", url)
    assert listing.out.split()[:2] == ["billing", "open"]
    assert "until reset" in listing.out
    assert run_cli("breakers", "reset", "billing", "--state", url).code == 0
    assert "closed" in run_cli("breakers", "--state", url).out
    log = project.root / "calls.log"
    path = _dead_recipe(project, log)
    run_cli("run", path, "--state", url)
    runs = run_cli("runs", "--state", url, "--limit", "5")
    (line,) = runs.out.splitlines()
    assert "failed" in line
    assert line.endswith(str(Path(path).resolve()))
    store = open_store(url)
    try:
        history = store.recent_errors(10)
    finally:
        store.close()
    assert [r["step"] for r in history] == ["charge_1", "charge_0"]


def _ten_steps(project: Project, log: Path, kill: Path | None) -> str:
    project.module("service", SERVICE)
    steps = ""
    for i in range(10):
        extra = f', kill: "{kill}"' if kill is not None and i == 5 else ""
        dep = f"\n    depends_on: [s{i - 1}]" if i else ""
        steps += f"""
  - name: s{i}
    module: service
    function: work
    args: {{log: "{log}", n: "{i}"{extra}}}{dep}"""
    return project.recipe("steps:" + steps + "\n")


def test_killed_run_resumes_where_it_stopped(project: Project, tmp_path: Path) -> None:
    """SIGKILL at step 6 of 10; --resume runs only the rest and ends with the same Context."""
    log = project.root / "calls.log"
    path = _ten_steps(project, log, kill=project.root / "killed.marker")
    first = _framework0("run", path, cwd=project.root)
    assert first.returncode == -9
    assert log.read_text().split() == [str(i) for i in range(6)]
    resumed = _framework0("run", path, "--resume", "--context-out", "ctx.json", cwd=project.root)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run" in resumed.stdout
    assert log.read_text().split() == [str(i) for i in range(6)] + [str(i) for i in range(5, 10)]
    # The same recipe, never interrupted, in a fresh folder.
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "service.py").write_text(SERVICE)
    text = Path(path).read_text().replace(f', kill: "{project.root / "killed.marker"}"', "")
    (clean / "recipe.yaml").write_text(text.replace(str(log), str(clean / "calls.log")))
    fresh = _framework0("run", "recipe.yaml", "--context-out", "ctx.json", cwd=clean)
    assert fresh.returncode == 0, fresh.stderr
    resumed_ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    fresh_ctx = json.loads((clean / "ctx.json").read_text())["context"]
    assert resumed_ctx == fresh_ctx
    assert resumed_ctx["total"] == 10


def test_resume_refuses_a_changed_recipe(
    project: Project, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """A recipe edited since the run is refused unless --force; unknown runs are named."""
    url = f"sqlite:{tmp_path / 'state.db'}"
    log = project.root / "calls.log"
    path = _ten_steps(project, log, kill=None)
    none_yet = run_cli("run", path, "--resume", "--state", url)
    assert none_yet.code == 2
    assert "no earlier run" in none_yet.err
    assert run_cli("run", path, "--state", url).code == 0
    Path(path).write_text(Path(path).read_text() + "# edited\n")
    refused = run_cli("run", path, "--resume", "--state", url)
    assert refused.code == 2
    assert "changed since run" in refused.err
    assert "--force" in refused.err
    forced = run_cli("run", path, "--resume", "--force", "--state", url)
    assert forced.code == 0
    assert "10 step(s) done before" in forced.out
    missing = run_cli("run", path, "--resume", "nosuchrun", "--state", url)
    assert missing.code == 2
    assert "no run 'nosuchrun'" in missing.err


def test_unreachable_redis_fails_or_falls_back(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down: on_unavailable fail gives one clear message; local warns and runs."""
    monkeypatch.delenv("FRAMEWORK0_STATE", raising=False)
    log = project.root / "calls.log"
    project.module("service", SERVICE)
    base = f"""
steps:
  - name: s0
    module: service
    function: work
    args: {{log: "{log}", n: "0"}}
"""
    dead = "redis://127.0.0.1:1/0"
    text = f'error_handling:\n  state: {{url: "{dead}"}}\n' + base
    failed = run_cli("run", project.recipe(text))
    assert failed.code == 2
    assert "127.0.0.1:1" in failed.err
    assert "Traceback" not in failed.err
    (project.root / "recipe.yaml").unlink()
    text = f'error_handling:\n  state: {{url: "{dead}", on_unavailable: local}}\n' + base
    ok = run_cli("run", project.recipe(text), "--report", "r.json")
    assert ok.code == 0, ok
    report = json.loads((project.root / "r.json").read_text())
    assert report["state"] == "sqlite:.framework0/state.db"
    assert "state store unavailable" in report["warnings"][0]


@pytest.mark.parametrize(("checkpoints", "writes"), [("true", 3), ("false", 1)])
def test_checkpoints_can_be_turned_off(
    project: Project,
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    checkpoints: str,
    writes: int,
) -> None:
    """With state.checkpoints false, only the end of the run is committed."""
    from framework0_errors.runtime import RunState

    saved: list[object] = []
    original = RunState.checkpoint

    def counting(self: RunState) -> None:
        saved.append(dict(self.unsaved))
        original(self)

    monkeypatch.setattr(RunState, "checkpoint", counting)
    log = project.root / "calls.log"
    project.module("service", SERVICE)
    steps = "".join(
        f"""
  - name: s{i}
    module: service
    function: work
    args: {{log: "{log}", n: "{i}"}}"""
        for i in range(2)
    )
    text = f"error_handling:\n  state: {{checkpoints: {checkpoints}}}\nsteps:{steps}\n"
    assert run_cli("run", project.recipe(text), "--state", "memory:").code == 0
    assert len(saved) == writes


def test_resetting_an_unknown_breaker_is_an_error(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """breakers reset NAME for a name never seen says so, listing the known ones."""
    url = f"sqlite:{tmp_path / 'b.db'}"
    run_cli("breakers", "open", "known", "--state", url)
    result = run_cli("breakers", "reset", "typo", "--state", url)
    assert result.code == 2
    assert "no circuit breaker named 'typo' (known: known)" in result.err


PARALLEL = """
import os, signal, time

def slow_increment(context, args):
    context.set("count", int(context.get("count", 0)) + 1)
    deadline = time.time() + 20
    while not os.path.exists(args["killed"]) and time.time() < deadline:
        time.sleep(0.02)  # the first run is killed while this step is still here
    return 0

def quick(context, args):
    context.set("quick", True)
    return 0

def kill(context, args):
    if not os.path.exists(args["killed"]):
        open(args["killed"], "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return 0
"""


def test_resume_after_a_kill_under_workers_does_not_repeat_work(project: Project) -> None:
    """Writes of a step still running at the kill are not checkpointed, so resuming is exact."""
    project.module("par", PARALLEL)
    killed = project.root / "killed.marker"
    path = project.recipe(
        f"""
        steps:
          - name: a
            module: par
            function: slow_increment
            args: {{killed: "{killed}"}}
          - name: b
            module: par
            function: quick
          - name: c
            module: par
            function: kill
            depends_on: [b]
            args: {{killed: "{killed}"}}
        """
    )
    first = _framework0("run", path, "--workers", "2", cwd=project.root)
    assert first.returncode == -9, first.stderr
    resumed = _framework0(
        "run", path, "--resume", "--workers", "2", "--context-out", "ctx.json", cwd=project.root
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "1 step(s) done before" in resumed.stdout  # b; a was still running
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    assert ctx["count"] == 1
    assert ctx["quick"] is True


def test_a_store_lost_at_the_end_leaves_the_breakers_the_context_heard_of(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the final read of the breakers fails, the report keeps their last Context state."""
    from framework0_errors.stores.select import MemoryStateStore, StoreUnavailableError

    batch = MemoryStateStore.snapshots

    def one(self: MemoryStateStore, name: str, *, now: float) -> object:
        return batch(self, [name], now=now)[0]

    def gone(self: MemoryStateStore, names: object, *, now: float) -> object:
        raise StoreUnavailableError("the store went away")

    monkeypatch.setattr(MemoryStateStore, "snapshot", one)
    monkeypatch.setattr(MemoryStateStore, "snapshots", gone)
    path = _dead_recipe(project, project.root / "calls.log")
    result = run_cli("run", path, "--state", "memory:", "--report", "report.json")
    assert result.code == 1
    report = json.loads((project.root / "report.json").read_text())
    # Written when the second failure opened it; the run's end could not read it again.
    assert report["circuit_breakers"]["payments"]["state"] == "open"
    assert report["circuit_breakers"]["payments"]["consecutive_failures"] == 2
    assert any("the store went away" in w for w in report["warnings"])
