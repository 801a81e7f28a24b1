"""Shared fixtures: recipe files on disk and the CLI run in-process."""

from __future__ import annotations

import io
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framework0_errors import cli


@dataclass
class CliResult:
    """Exit code and output of one in-process ``framework0`` call."""

    code: int
    out: str
    err: str


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """Run ``framework0 ARGS`` in-process and capture its output."""

    def call(*argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = cli.run(list(argv), stdout=out, stderr=err)
        return CliResult(code, out.getvalue(), err.getvalue())

    return call


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A folder for recipes and their scriptlet modules, importable and cleaned up."""
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield Project(tmp_path)
    # Scriptlet modules of one test must not leak into the next.
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if getattr(module, "__file__", None) and str(tmp_path) in str(module.__file__):
            del sys.modules[name]
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


@dataclass
class Project:
    """Writes recipes and modules into a temporary folder."""

    root: Path

    def module(self, name: str, source: str) -> Path:
        """Write a Python module ``name`` (dotted names make packages)."""
        parts = name.split(".")
        folder = self.root
        for part in parts[:-1]:
            folder = folder / part
            folder.mkdir(exist_ok=True)
            (folder / "__init__.py").touch()
        path = folder / f"{parts[-1]}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def recipe(self, text: str, name: str = "recipe.yaml") -> str:
        """Write a recipe and return its path."""
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)


@pytest.fixture
def host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the host without the error-handling plugin."""
    monkeypatch.setenv("FRAMEWORK0_DISABLE_PLUGINS", "error_handling")
