"""Plugins are found through the entry point; the host never imports the plugin."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import framework0_errors.orchestrator as host
from framework0_errors.orchestrator import PluginLoadError, plugin_manager

from ..conftest import CliResult, Project

THIRD_PARTY = """
import json, os
from framework0_errors import hookimpl
from framework0_errors.orchestrator import StepMiddleware

LOG = os.environ["SAMPLE_PLUGIN_LOG"]

def _log(*event):
    with open(LOG, "a") as f:
        f.write(json.dumps(event) + "\\n")

@hookimpl
def framework0_step_middleware(step):
    def shout(invocation, call_next):
        _log("middleware", step.name)
        call_next(invocation)
        invocation.context.set("sample." + step.name, "wrapped")
    return [StepMiddleware("sample", shout, order=500)]

@hookimpl
def framework0_step_end(step, result):
    _log("step_end", step.name, result.status)

@hookimpl
def framework0_run_end(run, report):
    _log("run_end", run.recipe.name, report["status"])
"""


def _install_plugin(root: Path) -> Path:
    """Install a distribution the way pip would: a module plus its dist-info."""
    site = root / "site"
    site.mkdir()
    (site / "sample_plugin.py").write_text(THIRD_PARTY)
    info = site / "sample_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sample-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[framework0]\nsample = sample_plugin\n")
    return site


def test_third_party_plugin_through_entry_point(project: Project) -> None:
    """An installed plugin adds middleware and observes events via the real console script."""
    site = _install_plugin(project.root)
    path = project.recipe(
        """
        steps:
          - name: orders
            module: framework0_errors.demo.services
            function: load_orders
        """
    )
    log = project.root / "events.jsonl"
    env = dict(os.environ, PYTHONPATH=str(site), SAMPLE_PLUGIN_LOG=str(log))
    proc = subprocess.run(
        [sys.executable, "-m", "framework0_errors", "run", path, "--context-out", "ctx.json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project.root,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events == [
        ["middleware", "orders"],
        ["step_end", "orders", "succeeded"],
        ["run_end", "recipe", "succeeded"],
    ]
    ctx = json.loads((project.root / "ctx.json").read_text())["context"]
    assert ctx["sample.orders"] == "wrapped"


def test_broken_plugin_is_one_clear_message(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin that fails to import is named, with how to disable it, and exit 2."""
    site = project.root / "site"
    site.mkdir()
    (site / "bad_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    info = site / "bad_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[framework0]\nbad = bad_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    import importlib

    importlib.invalidate_caches()
    with pytest.raises(PluginLoadError, match="plugin 'bad'"):
        plugin_manager()
    result = run_cli("schema")
    assert result.code == 2
    assert "FRAMEWORK0_DISABLE_PLUGINS=bad" in result.err
    assert "Traceback" not in result.err
    assert plugin_manager(disabled=["bad"]) is not None


def test_host_imports_nothing_from_the_plugin() -> None:
    """No module under orchestrator/ imports anything of the package outside orchestrator/."""
    folder = Path(host.__file__).parent
    offenders = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                outside = node.level > 1 or (
                    node.level == 0
                    and target.startswith("framework0_errors")
                    and not target.startswith("framework0_errors.orchestrator")
                )
                if outside:
                    offenders.append(f"{path.name}: from {'.' * node.level}{target}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.name}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("framework0_errors")
                    and not a.name.startswith("framework0_errors.orchestrator")
                ]
    assert offenders == []
