"""Read YAML into plain data while remembering where every key and item stood."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ruamel.yaml.main
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from .problems import PathPart, Problem, RecipeInvalid

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Locator", "load_yaml", "parse_yaml"]

# Limits that keep hostile documents (alias bombs, deep nesting, huge files)
# from costing more than a fraction of a second to reject.
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000

_FAST_PARSER = getattr(ruamel.yaml.main, "CParser", None) is not None
"""Whether libyaml is there to parse with (see _compose)."""

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


_CORE = "tag:yaml.org,2002:"
_STR = _CORE + "str"
_MERGE = _CORE + "merge"
_TYPED = frozenset(_CORE + kind for kind in ("null", "bool", "int", "float"))
# The core tags each kind of node may carry (other core tags are mistakes).
_LIST_TAGS = frozenset(_CORE + kind for kind in ("seq", "omap", "pairs"))
_MAPPING_TAGS = frozenset(_CORE + kind for kind in ("map", "set"))


class _Converter:
    """Turns composed YAML nodes into plain dicts, lists and scalars, with limits."""

    def __init__(self, locator: Locator, scalar: Callable[[ScalarNode, str], Any]) -> None:
        self.places = locator.places
        self.scalar = scalar
        self.nodes = 0
        self.open: set[int] = set()
        """The collections being converted, around the current node: an alias to one is a loop."""

    def convert(self, node: Node, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"document has more than {MAX_NODES} nodes (alias expansion?)")
        if depth > MAX_DEPTH:
            raise _TooBig(f"document is nested deeper than {MAX_DEPTH} levels")
        # Read once: ruamel builds the text of a node's tag on every read.
        tag = node.tag
        if isinstance(node, ScalarNode):
            if tag == _STR:
                return node.value
            if tag in _LIST_TAGS or tag in _MAPPING_TAGS:
                raise _Unreadable(node, f"a single value tagged {_short(tag)}")
            return self.scalar(node, tag or "")
        tag = tag or ""
        if tag.startswith(_CORE) and tag not in (
            _LIST_TAGS if isinstance(node, SequenceNode) else _MAPPING_TAGS
        ):
            what = "a list" if isinstance(node, SequenceNode) else "a mapping"
            raise _Unreadable(node, f"{what} tagged {_short(tag)}")
        key = id(node)
        if key in self.open:
            raise _Unreadable(node, "an alias to a collection it is part of (a loop)")
        self.open.add(key)
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path, depth)
            return self._mapping(node, path, depth)
        finally:
            self.open.discard(key)

    def _sequence(self, node: Node, path: Path_, depth: int) -> list[Any]:
        places = self.places
        items: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            if not _empty(item):
                mark = item.start_mark
                places[child] = (mark.line + 1, mark.column + 1)
            items.append(self.convert(item, child, depth + 1))
        return items

    def _mapping(self, node: Node, path: Path_, depth: int) -> dict[Any, Any]:
        places = self.places
        out: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            key_tag = key_node.tag
            if key_tag == _MERGE:
                if merged:
                    raise _Unreadable(
                        key_node,
                        "a second merge key (<<) in one mapping; merge several with one: "
                        "<<: [*first, *second]",
                    )
                merged.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                raise _Unreadable(
                    key_node, "a mapping key must be a single value, not a list or mapping"
                )
            key = key_node.value if key_tag == _STR else self.scalar(key_node, key_tag)
            mark = key_node.start_mark
            if key in seen:
                raise _Unreadable(
                    key_node,
                    f"duplicate key {key!r}: it is set on line {seen[key]} already; "
                    "keep one of them",
                )
            seen[key] = mark.line + 1
            child = (*path, _part(key))
            places[child] = (mark.line + 1, mark.column + 1)
            if not _empty(value_node):
                value_mark = value_node.start_mark
                places[("<value>", *child)] = (value_mark.line + 1, value_mark.column + 1)
            out[key] = self.convert(value_node, child, depth + 1)
        for source in merged:
            self._merge(out, source, path, depth)
        return out

    def _merge(self, out: dict[Any, Any], source: Node, path: Path_, depth: int) -> None:
        # A merge key (<<: *base, or a list of them) adds the keys it names that
        # the mapping does not set itself; the first source listed wins.
        # Their places are those of the entries merged in, where they are written.
        sources = source.value if isinstance(source, SequenceNode) else [source]
        for item in sources:
            if not isinstance(item, MappingNode):
                raise _Unreadable(item, "a merge key (<<) takes a mapping or a list of mappings")
            places, self.places = self.places, {}
            try:
                entries = self._mapping(item, path, depth + 1)
            finally:
                theirs, self.places = self.places, places
            added = {_part(key) for key in entries if key not in out}
            for key, value in entries.items():
                out.setdefault(key, value)
            start = len(path)
            for where, place in theirs.items():
                first = where[start + 1] if where[0] == "<value>" else where[start]
                if first in added:
                    places.setdefault(where, place)


def _empty(node: Node) -> bool:
    # Nothing written (``key:`` alone): parsers disagree on where that nothing
    # is, so it has no place of its own and is placed at its key or list.
    # (A plain scalar's style is None from one parser and "" from the other.)
    return isinstance(node, ScalarNode) and node.value == "" and not node.style


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _part(key: Any) -> PathPart:
    # Keys that are neither strings nor numbers (null, true) are named by their text.
    return key if isinstance(key, str | int) else str(key)


class _TooBig(Exception):
    pass


class _Unreadable(Exception):
    def __init__(self, node: Node, reason: str) -> None:
        super().__init__(reason)
        self.line = node.start_mark.line + 1
        self.column = node.start_mark.column + 1


class _Yaml12Resolver(VersionedResolver):
    """YAML 1.2's implicit tags, for a document without a %YAML directive.

    ruamel looks the version up again for every scalar (through two caught
    AttributeErrors), and matches its text against the tags' patterns every
    time; here the version is fixed, and each distinct text is matched once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tags: dict[str, Any] = {}

    @property
    def processing_version(self) -> tuple[int, int]:
        return (1, 2)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # A plain scalar's tag depends on its text alone (there are no path resolvers).
        if kind is not ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        tag = self._tags.get(value)
        if tag is None:
            tag = self._tags[value] = super().resolve(kind, value, implicit)
        return tag


_DIRECTIVE = re.compile(r"^%YAML[ \t]+([0-9]+)\.([0-9]+)", re.MULTILINE)
# What libyaml reads otherwise than YAML 1.2: tabs as separators (after `key:`,
# say), and U+0085, U+2028 and U+2029 as line breaks.
_LIBYAML_DIFFERS = re.compile("[\t\x85\u2028\u2029]")
# libyaml composes recursively in C, each level of nesting taking a few hundred
# bytes of stack: a thread's usual 8 MiB overflow at about 13,000 brackets of
# [a: (two levels each) or 30,000 of [ (the process dies, exit 139). Two
# bounds decide who reads a document:
# - _deepest_possible counts every bracket and brace, so nothing can make it
#   fall short of the real depth;
# - _likely_depth skips quoted text and comments, as a person reads them; an
#   apostrophe in plain text (it's) can fool it.
# Text both put at most _LIBYAML_SAFE_DEPTH deep is read by libyaml here. Text
# that is likely deep is read by the pure parser, which refuses deep nesting
# quickly (in seconds only for thousands of brackets on one line). Text likely
# shallow but possibly deep (a large recipe with many flow mappings) is read
# by libyaml on a thread with a stack sized for the possible depth. libyaml
# takes time in proportion to the square of the depth (0.4 s for 10,000
# levels, 1.8 s for 20,000, 42 s for 80,000): past _LIBYAML_MAX_DEPTH, text
# that fooled the reading could take minutes, so the pure parser reads it.
_LIBYAML_SAFE_DEPTH = 1000
_STACK_PER_LEVEL = 1024  # bytes a bracket may take; about 640 measured for [a:
_LIBYAML_MAX_DEPTH = 20_000


def _compose(text: str, version: tuple[int, int] | None) -> Node | None:
    # libyaml (ruamel.yaml.clib), where installed, composes several times faster
    # than ruamel's pure-Python parser. It follows YAML 1.1 where 1.2 differs,
    # so the pure parser has the last word: on any error, for documents that
    # name their YAML version, and for text where the two would differ.
    if _FAST_PARSER and version is None and _LIBYAML_DIFFERS.search(text) is None:
        possible = _deepest_possible(text)
        if possible <= _LIBYAML_MAX_DEPTH and (
            possible <= _LIBYAML_SAFE_DEPTH or _likely_depth(text) <= _LIBYAML_SAFE_DEPTH
        ):
            fast = YAML(typ="safe", pure=False)
            fast.Resolver = _Yaml12Resolver
            try:
                if possible <= _LIBYAML_SAFE_DEPTH:
                    return fast.compose(text)  # type: ignore[no-any-return]
                return _on_own_stack(lambda: fast.compose(text), possible * _STACK_PER_LEVEL)
            except (YAMLError, _NoThread):
                pass
    return YAML(typ="safe", pure=True).compose(text)  # type: ignore[no-any-return]


def _deepest_possible(text: str) -> int:
    """Return a bound on how deeply ``text`` can nest collections, never below the truth.

    A flow collection opens with a bracket or a brace: all of them count, also
    those in quoted text and comments. A block collection inside another
    starts at least one column further in (a list under a key: two levels for
    one column).
    """
    return _block_bound(text) + text.count("[") + text.count("{")


def _likely_depth(text: str) -> int:
    """Return how deeply ``text`` nests, as read skipping quoted text and comments.

    Close for text as people write it; an apostrophe or a double quote inside
    plain text taken for the start of a quoted one, or compact nesting on one
    line (``- - - x``), can make it fall short (see :func:`_deepest_possible`
    for a sure bound).
    """
    depth = deepest = position = 0
    search = _FLOW_TOKENS.search
    while (token := search(text, position)) is not None:
        mark, position = token.group(), token.end()
        if mark == "#":
            start = token.start()
            if start == 0 or text[start - 1] in _BEFORE_COMMENT:
                end = text.find("\n", position)
                position = len(text) if end < 0 else end
        elif mark in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif mark in ("]", "}"):
            depth = max(depth - 1, 0)
    # Block nesting as written: by indentation (a long line nests nothing).
    indent = max(map(len, _INDENTS.findall(text)), default=0)
    return 2 * (indent + 1) + deepest


def _block_bound(text: str) -> int:
    # Also counts compact nesting (- - - x), which needs no indentation.
    return 2 * (max(map(len, text.splitlines()), default=0) + 1)


_INDENTS = re.compile(r"^[ \t]*", re.MULTILINE)


# Quoted text, a # (a comment if it follows a space or a flow indicator), and
# brackets and braces. Each token starts with a character of its own, so the
# regex engine skips the rest of the text quickly.
_FLOW_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|#|[\[\]{}]""")
_BEFORE_COMMENT = frozenset(" \t\r\n,[]{}")


class _NoThread(Exception):
    """No thread with a stack of that size could be started here."""


_stack_size_lock = threading.Lock()


def _on_own_stack(compose: Callable[[], Node | None], stack_bytes: int) -> Node | None:
    """Return ``compose()`` run on a new thread with at least ``stack_bytes`` of stack."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, compose()))
        except BaseException as exc:  # handed to the calling thread
            outcome.append((False, exc))

    # The size applies to threads started from now on, in the whole process:
    # it is set for this one only, and put back at once.
    with _stack_size_lock:
        try:
            # Whole 64 KiB blocks: some systems take only multiples of the page size.
            previous = threading.stack_size((stack_bytes + (4 << 20) + 0xFFFF) & ~0xFFFF)
        except (ValueError, RuntimeError) as exc:
            raise _NoThread(str(exc)) from exc
        try:
            thread = threading.Thread(target=run, name="framework0-yaml", daemon=True)
            thread.start()
        except RuntimeError as exc:
            raise _NoThread(str(exc)) from exc
        finally:
            threading.stack_size(previous)
    thread.join()
    done, value = outcome[0]
    if not done:
        raise value
    node: Node | None = value
    return node


def _declared_version(text: str) -> tuple[int, int] | None:
    found = _DIRECTIVE.search(text)
    return None if found is None else (int(found.group(1)), int(found.group(2)))


def _scalar_function(version: tuple[int, int] | None) -> Callable[[ScalarNode, str], Any]:
    loader = YAML(typ="safe", pure=True)
    if version is not None:
        loader.version = version  # 1.1 reads 017 as 15 and 1:30 as 90
    constructor = loader.constructor
    # Recipes repeat their numbers and flags (3, 0.5, true) step after step.
    built: dict[tuple[str, str], Any] = {}

    def scalar(node: ScalarNode, tag: str) -> Any:
        # Core-schema scalars (null, bool, int, float) are built as the YAML
        # version says; any other tag, known or not, keeps the text written.
        # ``tag`` is node.tag, read by the caller.
        if tag not in _TYPED:
            return node.value
        key = (tag, node.value)
        value = built.get(key, built)
        if value is built:
            try:
                value = built[key] = constructor.construct_object(node)
            except Exception as exc:  # !!int abc, and the like
                raise _Unreadable(
                    node, f"{node.value!r} is not a valid {_short(tag)} value"
                ) from exc
        return value

    return scalar


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
    version = _declared_version(text)
    try:
        root = _compose(text, version)
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
    if root is None:
        return None, locator
    try:
        data = _Converter(locator, _scalar_function(version)).convert(root, (), 0)
    except _Unreadable as exc:
        raise RecipeInvalid([Problem(file, exc.line, exc.column, f"YAML error: {exc}")]) from None
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
