"""The Framework0 Context API."""

from __future__ import annotations

import threading

import pytest

from framework0_errors.orchestrator import Context, ContextValueError


def test_get_set_keys_to_dict() -> None:
    """Values round-trip; keys keep first-set order; to_dict is a copy."""
    ctx = Context({"a": 1})
    ctx.set("b", {"x": [1, 2]})
    ctx.set("a", 2)
    assert ctx.get("a") == 2
    assert ctx.get("missing") is None
    assert ctx.get("missing", 5) == 5
    assert ctx.keys() == ["a", "b"]
    snapshot = ctx.to_dict()
    snapshot["b"]["x"].append(3)
    assert ctx.get("b") == {"x": [1, 2]}
    assert "a" in ctx
    assert "zzz" not in ctx


def test_stored_values_are_copies() -> None:
    """Mutating the object after set() does not change the Context."""
    ctx = Context()
    value = {"n": [1]}
    ctx.set("k", value)
    value["n"].append(2)
    assert ctx.get("k") == {"n": [1]}


def test_dotted_keys_and_prefix_lookup() -> None:
    """A dotted key is stored as given; its prefix returns the nested mapping."""
    ctx = Context()
    ctx.set("errors.fetch", [1])
    ctx.set("errors.load.deep", 2)
    ctx.set("errorsx", 3)
    assert ctx.get("errors.fetch") == [1]
    assert ctx.get("errors") == {"fetch": [1], "load": {"deep": 2}}
    assert ctx.get("errors.load") == {"deep": 2}


def test_prefix_lookup_with_conflicting_shapes() -> None:
    """A scalar and a deeper key under the same name nest without crashing."""
    ctx = Context()
    ctx.set("a.b", 1)
    ctx.set("a.b.c", 2)
    assert ctx.get("a") == {"b": {"c": 2}}


def test_history_records_who_and_before() -> None:
    """history() says who changed which key, from what, to what, and when."""
    ticks = iter([10.0, 11.0])
    ctx = Context(clock=lambda: next(ticks))
    ctx.set("k", 1, who="first")
    ctx.set("k", 2, who="second")
    changes = [c.to_dict() for c in ctx.history()]
    assert changes == [
        {"key": "k", "before": None, "after": 1, "who": "first", "timestamp": 10.0},
        {"key": "k", "before": 1, "after": 2, "who": "second", "timestamp": 11.0},
    ]


def test_history_is_bounded() -> None:
    """The history drops its oldest tenth when it reaches its limit."""
    ctx = Context(history_limit=10)
    for i in range(25):
        ctx.set("k", i)
    assert len(ctx.history()) <= 10
    assert ctx.history()[-1].after == 24


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), {"a": b"bytes"}])
def test_non_json_values_are_refused(value: object) -> None:
    """set() refuses a value that is not JSON, naming the key and the step."""
    ctx = Context()
    with pytest.raises(ContextValueError, match=r"context key 'k' \(set by step 'load'\)"):
        ctx.set("k", value, who="load")
    assert "k" not in ctx


@pytest.mark.parametrize("key", ["", 3, None])
def test_bad_keys_are_refused(key: object) -> None:
    """Keys are non-empty strings."""
    with pytest.raises(ContextValueError, match="non-empty strings"):
        Context().set(key, 1)  # type: ignore[arg-type]


def test_concurrent_writers_lose_nothing() -> None:
    """Writes from many threads all land, and the history counts them all."""
    ctx = Context()

    def write(n: int) -> None:
        for i in range(200):
            ctx.set(f"t{n}.{i}", i, who=f"t{n}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ctx.keys()) == 1600
    assert len(ctx.history()) == 1600


def test_step_view_attributes_and_fences() -> None:
    """A step's view attributes writes to it; once fenced, writes are discarded."""
    ctx = Context()
    view = ctx.writer("fetch")
    view.set("a", 1)
    view.set("b", 2, who="someone")
    assert [c.who for c in ctx.history()] == ["fetch", "someone"]
    assert view.get("a") == 1
    assert view.keys() == ["a", "b"]
    assert view.to_dict() == {"a": 1, "b": 2}
    assert len(view.history()) == 2
    assert "a" in view
    assert view.root is ctx
    child = view.child()
    child.fence("timed out after 0.5s")
    assert child.fenced
    assert not view.fenced
    child.set("late", True)
    assert "late" not in ctx
    (discarded,) = ctx.discarded()
    assert discarded.to_dict()["key"] == "late"
    assert discarded.who == "fetch"
    assert discarded.reason == "timed out after 0.5s"


def test_changes_since_returns_only_what_changed() -> None:
    """changes_since(v) gives the keys set after version v, as copies."""
    ctx = Context()
    assert ctx.changes_since(0) == (0, {})
    ctx.set("a", 1)
    ctx.set("b", {"x": [1]})
    version, changes = ctx.changes_since(0)
    assert (version, changes) == (2, {"a": 1, "b": {"x": [1]}})
    changes["b"]["x"].append(2)
    assert ctx.get("b") == {"x": [1]}
    ctx.set("a", 3)
    assert ctx.changes_since(version) == (3, {"a": 3})
    assert ctx.changes_since(3) == (3, {})


def test_changes_since_leaves_out_writers_still_at_work() -> None:
    """Writes by excluded writers wait; the version returned brings them back later."""
    ctx = Context()
    ctx.set("n", 1, who="done")
    ctx.set("n", 2, who="busy")
    ctx.set("other", "x", who="done")
    version, changes = ctx.changes_since(0, exclude={"busy"})
    assert changes == {"n": 1, "other": "x"}
    assert version == 1
    assert ctx.changes_since(version) == (3, {"n": 2, "other": "x"})


def test_changes_since_after_the_history_was_trimmed() -> None:
    """When the history no longer reaches back, every key comes back."""
    ctx = Context(history_limit=10)
    for i in range(30):
        ctx.set(f"k{i % 3}", i)
    assert ctx.changes_since(1) == (30, {"k0": 27, "k1": 28, "k2": 29})
