"""The framework0 command line: exit codes, messages, and the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

import pytest

import framework0_errors
from framework0_errors import cli

from ..conftest import CliResult, Project

pytestmark = pytest.mark.usefixtures("host_only")

RECIPE = """
steps:
  - name: orders
    module: framework0_errors.demo.services
    function: load_orders
"""


def test_version(run_cli: Callable[..., CliResult], capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    assert run_cli("--version").code == 0
    assert capsys.readouterr().out.strip() == f"framework0 {framework0_errors.__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["run", "r.yaml", "--workers", "0"],
        ["run", "r.yaml", "--workers", "x"],
        ["nope"],
    ],
)
def test_usage_errors_exit_2(run_cli: Callable[..., CliResult], argv: list[str]) -> None:
    """Wrong arguments give argparse's message and exit 2."""
    assert run_cli(*argv).code == 2


def test_schema_has_host_keys(run_cli: Callable[..., CliResult]) -> None:
    """framework0 schema prints the recipe schema as stable JSON."""
    result = run_cli("schema")
    schema = json.loads(result.out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["$defs"]["step"]["properties"]) >= {"name", "module", "function", "args"}
    assert result.out == cli.render_schema(schema)


def test_validate_and_explain(project: Project, run_cli: Callable[..., CliResult]) -> None:
    """validate says ok per file; explain lists each step and the code it runs."""
    path = project.recipe(RECIPE)
    result = run_cli("validate", path, path)
    assert result.code == 0
    assert result.out.splitlines() == [f"{path}: ok", f"{path}: ok"]
    explained = run_cli("explain", path)
    assert explained.code == 0
    assert "orders: no error handling" in explained.out
    assert "runs framework0_errors.demo.services:load_orders" in explained.out


@pytest.mark.parametrize("option", ["--context-out", "--report"])
def test_output_folder_must_exist(
    project: Project, run_cli: Callable[..., CliResult], option: str
) -> None:
    """An output path in a missing folder is refused before anything runs."""
    path = project.recipe(RECIPE)
    result = run_cli("run", path, option, "no/such/dir/out.json")
    assert result.code == 2
    assert "does not exist" in result.err
    result = run_cli("run", path, option, str(project.root))
    assert result.code == 2
    assert "is a directory" in result.err


def test_internal_errors_are_one_line(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is reported as a bug with exit 70, without a traceback."""
    path = project.recipe(RECIPE)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli, "execute", boom)
    result = run_cli("run", path)
    assert result.code == 70
    assert "internal error: RuntimeError: kaput" in result.err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError):
        run_cli("run", path)


def test_interrupt_exits_130(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during a run exits 130 with one line."""
    path = project.recipe(RECIPE)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "execute", interrupted)
    result = run_cli("run", path)
    assert result.code == 130
    assert result.err == "framework0: interrupted\n"


def test_main_exits_with_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() turns run()'s return value into the process exit code."""
    monkeypatch.setattr(cli, "run", lambda argv, stdout, stderr: 3)
    with pytest.raises(SystemExit) as info:
        cli.main(["x"])
    assert info.value.code == 3


def test_console_script_end_to_end(project: Project) -> None:
    """The installed ``framework0`` script runs a recipe and reports its version."""
    script = shutil.which("framework0")
    assert script is not None, "the package must be installed (pip install -e .)"
    path = project.recipe(RECIPE)
    proc = subprocess.run([script, "run", path], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "recipe recipe: succeeded" in proc.stdout
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"framework0 {framework0_errors.__version__}"


def test_unwritable_outputs(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that cannot be written is refused up front; a write that fails is reported."""
    path = project.recipe(RECIPE)
    locked = project.root / "locked"
    locked.mkdir()
    monkeypatch.setattr(cli.os, "access", lambda p, mode: str(p) != str(locked))
    result = run_cli("run", path, "--report", str(locked / "r.json"))
    assert result.code == 2
    assert "is not writable" in result.err
    monkeypatch.undo()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.tempfile, "mkstemp", full)
    result = run_cli("run", path, "--report", "r.json", "--context-out", "c.json")
    assert result.code == 2
    assert result.err.count("No space left on device") == 2
    assert "recipe recipe: succeeded" in result.out
