"""Located problems in a recipe: what went wrong, and where in which file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Framework0Error", "Problem", "RecipeInvalid", "format_path"]

PathPart = str | int


class Framework0Error(Exception):
    """Base class of every error framework0 raises on purpose."""

    __module__ = "framework0_errors"


def format_path(path: Iterable[PathPart]) -> str:
    """Render a data path as ``steps[2].error_handling.retry``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a recipe, with its place in the file.

    ``line`` and ``column`` are 1-based. ``path`` is the data path rendered by
    :func:`format_path` (empty when the problem concerns the whole file).
    """

    file: str
    line: int
    column: int
    message: str
    path: str = ""
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        label = "warning: " if self.severity == "warning" else ""
        what = f"{self.path}: {self.message}" if self.path else self.message
        return where + label + what

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order problems by file position, then message."""
        return (self.file, self.line, self.column, self.message)


class RecipeInvalid(Framework0Error):
    """The recipe cannot run: it has one or more located problems."""

    __module__ = "framework0_errors"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems, key=Problem.sort_key)
        super().__init__("\n".join(str(p) for p in self.problems))
