"""Reading YAML into data with places, and rejecting what cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework0_errors.orchestrator import RecipeInvalid, load_yaml, parse_yaml, yamlsource


def test_positions_of_keys_items_and_values() -> None:
    """Keys, list items and values are placed 1-based; unknown paths use an ancestor."""
    data, loc = parse_yaml("a: 1\nsteps:\n  - name: x\n    retry:\n      max: 3\n", "r.yaml")
    assert data == {"a": 1, "steps": [{"name": "x", "retry": {"max": 3}}]}
    assert loc.position(("a",)) == (1, 1)
    assert loc.position(("steps", 0)) == (3, 5)
    assert loc.position(("steps", 0, "retry", "max")) == (5, 7)
    assert loc.value_position(("steps", 0, "retry", "max")) == (5, 12)
    assert loc.position(("steps", 0, "retry", "nope", 3)) == (4, 5)
    assert loc.position(()) == (1, 1)


def test_scalars_become_builtin_types() -> None:
    """ruamel's scalar wrappers are handed out as plain bool, int, float, str, None."""
    data, _ = parse_yaml("a: 1.5\nb: true\nc: ~\nd: x\ne: 2026-01-01\n", "r.yaml")
    assert type(data["a"]) is float
    assert data["b"] is True
    assert data["c"] is None
    assert type(data["d"]) is str
    assert data["e"] == "2026-01-01"


def test_other_tags_keep_the_text_written() -> None:
    """Timestamps, binary and unknown tags are the text as written; !!str wins over int."""
    text = "a: 2001-12-14t21:59:43.10-05:00\nb: !!binary aGk=\nc: !custom bar\nd: !!str 12\n"
    data, _ = parse_yaml(text, "r.yaml")
    assert data == {"a": "2001-12-14t21:59:43.10-05:00", "b": "aGk=", "c": "bar", "d": "12"}


def test_yaml_1_2_is_read_as_yaml_1_2() -> None:
    """What libyaml (YAML 1.1) would refuse or read otherwise is read as YAML 1.2 says."""
    data, loc = parse_yaml("a: {b: c:d}\nc: [yes, on, 012]\n", "r.yaml")
    assert data == {"a": {"b": "c:d"}, "c": ["yes", "on", 12]}
    assert loc.value_position(("a", "b")) == (1, 8)
    # A document that names its version is read by that version's rules.
    data, _ = parse_yaml("%YAML 1.1\n---\na: yes\nb: 017\nc: 1:30\n", "r.yaml")
    assert data == {"a": True, "b": 15, "c": 90}
    # libyaml takes U+2028 for a line break and a tab for a separator; YAML 1.2 does not.
    data, _ = parse_yaml("- x\u2028- y\n", "r.yaml")
    assert data == ["x\u2028- y"]
    with pytest.raises(RecipeInvalid, match="YAML syntax error"):
        parse_yaml("a:\t1\n", "r.yaml")


def _hidden(depth: int) -> str:
    # An apostrophe in plain text opens no quote: nesting after it is as real as any.
    return "x: it's\ny:\n" + " [\n" * depth + " ]\n" * (depth - 1) + " ] # '\n"


@pytest.mark.parametrize(
    "text",
    [
        "steps: " + "[" * 40_000 + "]" * 40_000 + "\n",
        "steps:\n" + "- " * 50_000 + "x\n",
        "a: " + "{a: " * 30_000 + "1" + "}" * 30_000 + "\n",
        _hidden(30_000),
        _hidden(3_000),  # read by libyaml, on a thread of its own
        _hidden(3_000).replace("it's", "'[[[['"),
    ],
    ids=["flow", "block", "mapping", "after an apostrophe", "on a big stack", "quoted brackets"],
)
def test_very_deep_nesting_is_refused_without_crashing(text: str) -> None:
    """Nesting deep enough to overflow libyaml's C stack on a usual thread is refused cleanly."""
    assert yamlsource._deepest_possible(text) > yamlsource._LIBYAML_SAFE_DEPTH
    with pytest.raises(RecipeInvalid, match="nested"):
        parse_yaml(text, "deep.yaml")


def test_the_nesting_bounds_count_brackets_surely_or_as_read() -> None:
    """The sure bound counts every bracket; the likely depth skips quotes and comments."""
    text = "a: '[[[['\nb: \"{{{{\"  # [[[[\nc: [[1]]\nd: x#[[\n# [[[\n"
    lines = 2 * (len('b: "{{{{"  # [[[[') + 1)
    assert yamlsource._deepest_possible(text) == lines + 19
    assert yamlsource._likely_depth(text) == 2 + 2  # x#[[ is no comment, but [[ closes none
    fooled = "x: it's [[[[ '\n"  # the apostrophe seems to open a quote
    assert yamlsource._likely_depth(fooled) == 2
    assert yamlsource._deepest_possible(fooled) == 2 * (len(fooled) - 1 + 1) + 4
    # Block nesting is read from indentation, not from the length of lines.
    long_line = "a:\n  b:\n    - " + "x" * 2000 + "\n"
    assert yamlsource._likely_depth(long_line) == 2 * (4 + 1)
    assert yamlsource._deepest_possible(long_line) > yamlsource._LIBYAML_SAFE_DEPTH


def test_text_that_might_nest_deeply_is_read_on_a_thread_of_its_own() -> None:
    """Above the safe bound, libyaml reads on its own thread; results and errors come back."""
    lines = [f"k{i}: [{i}, {{a: [1]}}]" for i in range(400)]
    text = "\n".join(lines) + "\n"
    assert yamlsource._deepest_possible(text) > yamlsource._LIBYAML_SAFE_DEPTH
    data, locator = parse_yaml(text, "wide.yaml")
    assert data["k399"] == [399, {"a": [1]}]
    assert locator.position(("k399",)) == (400, 1)
    with pytest.raises(RecipeInvalid, match=r"wide\.yaml:402:") as raised:
        parse_yaml(text + "k: [unclosed\n", "wide.yaml")
    assert "YAML syntax error" in str(raised.value)


def test_without_a_thread_of_that_size_the_pure_parser_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A system that refuses the stack size still gets the document, from the pure parser."""
    import threading

    def refused(size: int = 0) -> int:
        if size:
            raise ValueError("size not valid")
        return 0

    monkeypatch.setattr(threading, "stack_size", refused)
    text = "".join(f"k{i}: [{i}]\n" for i in range(600))
    data, _ = parse_yaml(text, "wide.yaml")
    assert data["k599"] == [599]


def test_merge_keys_add_what_the_mapping_does_not_set() -> None:
    """``<<`` merges mappings under the keys set explicitly, placed where written."""
    text = "base: &b {x: 1, y: {z: 2}}\nc:\n  <<: [*b, {w: 1, x: 9}]\n  y: 3\n"
    data, loc = parse_yaml(text, "r.yaml")
    assert data["c"] == {"y": 3, "x": 1, "w": 1}
    assert loc.position(("c", "y")) == (4, 3)
    assert loc.position(("c", "x")) == (1, 11)
    assert loc.value_position(("c", "w")) == (3, 16)
    assert loc.position(("c", "y", "z")) == (4, 3)


TRICKY = """\
# comment
name: "quoted \\u00e9 \\n"   # trailing comment
single: 'it''s'
folded: >
  one
  two
literal: |-
  keep
   this
anchors: {a: &n 5, b: *n}
list:
- - nested
  - {k: [1, 2.5e3, -.inf, null, ~, true, False, 0x1f, 0o17, 1_000]}
- ? key
  : value
empty:
items:
-
- 1
unicode: grüße
"""


def test_libyaml_and_pure_parser_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """libyaml and the pure-Python parser give the same data and places."""
    if not yamlsource._FAST_PARSER:
        pytest.skip("ruamel.yaml.clib is not installed")
    root = Path(__file__).resolve().parents[2]
    files = sorted(root.glob("recipes/**/*.yaml")) + sorted(root.glob("tests/**/*.yaml"))
    texts = [path.read_text(encoding="utf-8") for path in files] + [TRICKY]
    assert len(texts) > 15
    for text in texts:
        results = []
        for fast in (True, False):
            monkeypatch.setattr(yamlsource, "_FAST_PARSER", fast)
            try:
                results.append(parse_yaml(text, "r.yaml"))
            except RecipeInvalid as exc:
                results.append(str(exc))  # type: ignore[arg-type]
        assert results[0] == results[1], text


@pytest.mark.parametrize(
    ("text", "place", "words"),
    [
        ("a: [1\n", "r.yaml:2:1:", "YAML syntax error"),
        ("a: 1\na: 2\n", "r.yaml:2:1:", "duplicate key"),
        ("a:\n\tb: 1\n", "r.yaml:2:1:", "YAML syntax error"),
        ("a: 1\n---\nb: 2\n", "r.yaml:2:1:", "single document"),
        ("? [a]\n: 1\n", "r.yaml:1:3:", "a mapping key must be a single value"),
        ("a:\n  <<: 1\n", "r.yaml:2:7:", "a merge key (<<) takes a mapping"),
        ("b: &b {x: 1}\nd:\n  <<: *b\n  <<: *b\n", "r.yaml:4:3:", "a second merge key (<<)"),
        ("a: !!int abc\n", "r.yaml:1:4:", "'abc' is not a valid !!int value"),
        ("a: !!float 1:30\n", "r.yaml:1:4:", "'1:30' is not a valid !!float value"),
        ("a: !!bool maybe\n", "r.yaml:1:4:", "'maybe' is not a valid !!bool value"),
        ("a: !!int\n", "r.yaml:1:4:", "'' is not a valid !!int value"),
        ("--- !!map\n", "r.yaml:1:5:", "a single value tagged !!map"),
        ("a: !!int [1]\n", "r.yaml:1:4:", "a list tagged !!int"),
        ("a: !!seq {b: 1}\n", "r.yaml:1:4:", "a mapping tagged !!seq"),
        ("a: &a [1, *a]\n", "r.yaml:1:4:", "an alias to a collection it is part of (a loop)"),
    ],
)
def test_syntax_errors_are_located(text: str, place: str, words: str) -> None:
    """A syntax error or duplicate key names file, line and column."""
    with pytest.raises(RecipeInvalid) as info:
        parse_yaml(text, "r.yaml")
    message = str(info.value)
    assert message.startswith(place)
    assert words in message
    assert "\n" not in message


def test_duplicate_key_names_the_first() -> None:
    """The message says where the key was set first and what to do."""
    with pytest.raises(RecipeInvalid) as info:
        parse_yaml("steps: []\nname: a\nname: b\n", "r.yaml")
    assert str(info.value) == (
        "r.yaml:3:1: YAML error: duplicate key 'name': it is set on line 2 already; "
        "keep one of them"
    )


def test_alias_bomb_is_rejected() -> None:
    """A billion-laughs document is refused instead of expanded."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(RecipeInvalid, match="more than"):
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")


def test_deep_nesting_is_rejected() -> None:
    """Nesting deeper than the limit is refused with a clear reason."""
    text = "a: " + "[" * 200 + "]" * 200 + "\n"
    with pytest.raises(RecipeInvalid, match="nested"):
        parse_yaml(text, "deep.yaml")


def test_huge_text_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text over the size limit is refused before parsing."""
    monkeypatch.setattr(yamlsource, "MAX_BYTES", 10)
    with pytest.raises(RecipeInvalid, match="larger than"):
        parse_yaml("a: 1234567890\n", "big.yaml")


def test_huge_file_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over the size limit is refused before it is read."""
    monkeypatch.setattr(yamlsource, "MAX_BYTES", 10)
    path = tmp_path / "big.yaml"
    path.write_text("a: 1234567890\n")
    with pytest.raises(RecipeInvalid, match="larger than"):
        load_yaml(path)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "missing.yaml", "file not found"),
        (lambda p: p, "is a directory"),
    ],
)
def test_unreadable_files(tmp_path: Path, make: object, words: str) -> None:
    """A missing file or a folder gives one located message."""
    target = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(RecipeInvalid, match=words):
        load_yaml(target)


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is named as such."""
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(RecipeInvalid, match="not UTF-8"):
        load_yaml(path)


def test_unreadable_permissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other OS error when reading is reported, not raised."""
    path = tmp_path / "r.yaml"
    path.write_text("a: 1\n")

    def deny(self: Path, encoding: str | None = None) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", deny)
    with pytest.raises(RecipeInvalid, match="cannot read file: Permission denied"):
        load_yaml(path)


def test_problem_helper_makes_warnings() -> None:
    """Locator.problem builds warnings and errors with a rendered path."""
    _, loc = parse_yaml("steps:\n  - a: 1\n", "r.yaml")
    warning = loc.problem(("steps", 0, "a"), "looks odd", severity="warning")
    assert str(warning) == "r.yaml:2:5: warning: steps[0].a: looks odd"
    error = loc.problem(("steps",), "bad", shown_path="")
    assert str(error) == "r.yaml:1:1: bad"
