"""Read YAML into plain data while remembering where every key and item stood."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .problems import PathPart, Problem, RecipeInvalid

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Locator", "load_yaml", "parse_yaml"]

# Limits that keep hostile documents (alias bombs, deep nesting, huge files)
# from costing more than a fraction of a second to reject.
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000

Path_ = tuple[PathPart, ...]


@dataclass(slots=True)
class Locator:
    """Maps data paths of a loaded document to 1-based (line, column) places.

    The place of a mapping entry is that of its key; the place of a list item
    is that of the item. An unknown path falls back to its nearest known
    ancestor, so every problem can be given a place.
    """

    file: str
    places: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Sequence[PathPart]) -> tuple[int, int]:
        """Return (line, column) of ``path`` or of its nearest known ancestor."""
        key = tuple(path)
        while key:
            place = self.places.get(key)
            if place is not None:
                return place
            key = key[:-1]
        return self.places.get((), (1, 1))

    def value_position(self, path: Sequence[PathPart]) -> tuple[int, int]:
        """Return (line, column) of the value at ``path`` (its key's place if unknown)."""
        place = self.places.get(("<value>", *path))
        return place if place is not None else self.position(path)

    def problem(
        self,
        path: Sequence[PathPart],
        message: str,
        *,
        shown_path: str | None = None,
        severity: str = "error",
    ) -> Problem:
        """Build a :class:`Problem` placed at ``path``."""
        from .problems import format_path

        line, column = self.position(path)
        return Problem(
            file=self.file,
            line=line,
            column=column,
            message=message,
            path=format_path(path) if shown_path is None else shown_path,
            severity="warning" if severity == "warning" else "error",
        )


class _Converter:
    """Turns ruamel's round-trip nodes into plain dicts and lists, with limits."""

    def __init__(self, locator: Locator) -> None:
        self.locator = locator
        self.nodes = 0

    def convert(self, node: Any, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"document has more than {MAX_NODES} nodes (alias expansion?)")
        if depth > MAX_DEPTH:
            raise _TooBig(f"document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, CommentedMap):
            out: dict[Any, Any] = {}
            for key, value in node.items():
                child = (*path, key if isinstance(key, str | int) else str(key))
                line, col = self._key_place(node, key)
                self.locator.places[child] = (line, col)
                vplace = self._value_place(node, key)
                if vplace is not None:
                    self.locator.places[("<value>", *child)] = vplace
                out[key] = self.convert(value, child, depth + 1)
            return out
        if isinstance(node, CommentedSeq):
            items: list[Any] = []
            for index, value in enumerate(node):
                child = (*path, index)
                try:
                    line, col = node.lc.item(index)
                    self.locator.places[child] = (line + 1, col + 1)
                except (KeyError, TypeError, AttributeError):
                    pass
                items.append(self.convert(value, child, depth + 1))
            return items
        if isinstance(node, str):
            return str(node)
        if isinstance(node, bool | int | float) or node is None:
            return _plain_scalar(node)
        return str(node)

    @staticmethod
    def _key_place(node: CommentedMap, key: Any) -> tuple[int, int]:
        try:
            line, col = node.lc.key(key)
            return line + 1, col + 1
        except (KeyError, TypeError, AttributeError):
            return node.lc.line + 1, node.lc.col + 1

    @staticmethod
    def _value_place(node: CommentedMap, key: Any) -> tuple[int, int] | None:
        try:
            line, col = node.lc.value(key)
            return line + 1, col + 1
        except (KeyError, TypeError, AttributeError):
            return None


def _plain_scalar(node: Any) -> Any:
    # ruamel wraps scalars (ScalarFloat, ScalarBoolean, ...); hand out builtins.
    if isinstance(node, bool) or node is None:
        return None if node is None else bool(node)
    if isinstance(node, int):
        return int(node)
    return float(node)


class _TooBig(Exception):
    pass


def parse_yaml(text: str, file: str) -> tuple[Any, Locator]:
    """Parse ``text`` into plain data and a :class:`Locator`.

    Raises:
        RecipeInvalid: on a syntax error, duplicate key or a hostile document.
    """
    locator = Locator(file)
    if len(text) > MAX_BYTES:
        raise RecipeInvalid(
            [Problem(file, 1, 1, f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")]
        )
    yaml = YAML(typ="rt", pure=True)
    try:
        raw = yaml.load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise RecipeInvalid(
            [Problem(file, line, col, f"YAML syntax error: {what or exc}")]
        ) from None
    except (YAMLError, RecursionError, ValueError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RecipeInvalid([Problem(file, 1, 1, f"YAML error: {reason}")]) from None
    try:
        data = _Converter(locator).convert(raw, (), 0)
    except (_TooBig, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RecipeInvalid([Problem(file, 1, 1, f"document rejected: {reason}")]) from None
    return data, locator


def load_yaml(path: str | Path) -> tuple[Any, Locator]:
    """Read and parse a YAML file; see :func:`parse_yaml`."""
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_BYTES:
            raise RecipeInvalid(
                [Problem(name, 1, 1, f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")]
            )
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeInvalid(
            [Problem(name, 1, 1, "file not found: check the path and the working directory")]
        ) from None
    except IsADirectoryError:
        raise RecipeInvalid([Problem(name, 1, 1, "is a directory, not a recipe file")]) from None
    except UnicodeDecodeError as exc:
        raise RecipeInvalid(
            [Problem(name, 1, 1, f"file is not UTF-8 text ({exc.reason})")]
        ) from None
    except OSError as exc:
        raise RecipeInvalid([Problem(name, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return parse_yaml(text, name)
