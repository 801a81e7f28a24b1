"""The Framework0 Context API."""

from __future__ import annotations

import enum
import itertools
import threading
from typing import Any

import pytest

from framework0_errors.orchestrator import Change, Context, ContextValueError


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


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        float("nan"),
        {"a": b"bytes"},
        {"attempts": 1, "duration": float("inf")},
        {"attempts": 1, "duration": float("nan")},
        {"nested": {"x": -float("inf")}},
        [1, {"a": float("nan")}],
        {"a": 1, "b": object()},
    ],
)
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


@pytest.mark.parametrize("trimmed", [False, True])
def test_changes_since_without_copies_shares_values_not_the_mapping(trimmed: bool) -> None:
    """copies=False hands out the stored values in a new dict that later sets leave alone."""
    ctx = Context(history_limit=4)
    ctx.set("b", {"x": [1]})
    for i in range(6 if trimmed else 1):
        ctx.set("a", i)
    version, changes = ctx.changes_since(0, copies=False)
    assert changes["b"] is ctx._data["b"]
    ctx.set("c", 1)
    assert "c" not in changes
    assert version == (7 if trimmed else 2)


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


def test_set_owned_stores_the_record_as_given_with_history() -> None:
    """set_owned keeps the caller's object, records the change, and trims like set()."""
    ctx = Context(history_limit=10)
    ctx.set("recovery.s", {"outcome": "failed"}, who="before")
    records = [{"attempts": i, "outcome": "succeeded"} for i in range(30)]
    for record in records:
        ctx.set_owned("recovery.s", record, "owner")
    assert ctx._data["recovery.s"] is records[-1]
    assert ctx.get("recovery.s") == records[-1]
    assert ctx.get("recovery") == {"s": records[-1]}
    last = ctx.history()[-1]
    assert (last.key, last.before, last.after, last.who) == (
        "recovery.s",
        records[-2],
        records[-1],
        "owner",
    )
    assert len(ctx.history()) <= 10
    assert ctx.changes_since(0) == (31, {"recovery.s": records[-1]})


def test_set_owned_many_is_set_owned_of_each_under_one_clock_reading() -> None:
    """Each pair is one change, in order, stamped alike; the history trims as it grows."""
    readings = itertools.count(1.0)
    ctx = Context(clock=lambda: next(readings), history_limit=4)
    ctx.set("a", 0, who="before")
    shared = {"state": "closed"}
    ctx.set_owned_many([("a", shared), ("b", shared), ("a", {"state": "open"})], "owner")
    assert ctx._data["b"] is shared
    assert ctx.get("a") == {"state": "open"}
    assert [(c.key, c.before, c.who, c.timestamp) for c in ctx.history()[-3:]] == [
        ("a", 0, "owner", 2.0),
        ("b", None, "owner", 2.0),
        ("a", shared, "owner", 2.0),
    ]
    ctx.set_owned_many([(f"k{i}", i) for i in range(5)], "owner")
    assert len(ctx.history()) <= 4
    assert ctx.changes_since(7) == (9, {"k3": 3, "k4": 4})
    ctx.set_owned_many([], "owner")  # nothing: no change
    assert ctx.changes_since(9) == (9, {})


RECORD = {"attempts": 1, "outcome": "succeeded", "strategy": "none", "duration": 0.1, "error": None}


@pytest.mark.parametrize(
    "value",
    [RECORD, {}, {"n": [1, {"x": 2.5}]}, [RECORD, [True, None]], ("a", 1), 0.5, "text"],
)
def test_set_and_get_hand_out_copies(value: Any) -> None:
    """Neither the caller's object nor a value get() returned is shared with the Context."""
    ctx = Context()
    ctx.set("k", value)
    expected = list(value) if isinstance(value, tuple) else value
    assert ctx.get("k") == expected
    if isinstance(value, dict | list):
        assert ctx.get("k") is not value
        got = ctx.get("k")
        assert got is not ctx.get("k")
        if isinstance(got, dict):
            got["added"] = 1
        else:
            got.append(1)
    assert ctx.get("k") == expected
    assert ctx.history()[-1].after == expected


class Colour(enum.IntEnum):
    """An int subclass, as a step might store."""

    RED = 1


class Name(enum.StrEnum):
    """A str subclass, as a step might use for keys."""

    KEY = "key"


def test_subclasses_are_stored_as_plain_json_types() -> None:
    """Subclasses of JSON types, as values or keys, are stored as their plain JSON form."""
    ctx = Context()
    ctx.set("flat", {"colour": Colour.RED, "size": 2})
    ctx.set("keys", {Name.KEY: 1})
    ctx.set("numbers", {1: "one"})
    flat = ctx.get("flat")
    assert flat == {"colour": 1, "size": 2}
    assert type(flat["colour"]) is int
    keys = ctx.get("keys")
    assert keys == {"key": 1}
    assert [type(k) for k in keys] == [str]
    assert ctx.get("numbers") == {"1": "one"}


def test_history_items_are_changes() -> None:
    """history() hands out Change tuples with named fields."""
    ctx = Context(clock=lambda: 5.0)
    ctx.set("k", RECORD, who="load")
    (change,) = ctx.history()
    assert isinstance(change, Change)
    assert change == Change("k", None, RECORD, "load", 5.0)
    assert (change.key, change.before, change.who, change.timestamp) == ("k", None, "load", 5.0)


@pytest.mark.parametrize(("key", "value"), [("k", object()), ("", 1), ("k", float("nan"))])
def test_fenced_view_discards_without_judging(key: str, value: object) -> None:
    """A fenced view discards even a write it would refuse; an open view refuses it."""
    ctx = Context()
    view = ctx.writer("slow")
    with pytest.raises(ContextValueError):
        view.set(key, value)
    view.fence("timed out")
    view.set(key, value)
    assert ctx.history() == []
    assert [(d.key, d.who, d.reason) for d in ctx.discarded()] == [(key, "slow", "timed out")]


def test_view_set_attributes_and_copies() -> None:
    """A write through a view is a copy, attributed to the view's writer."""
    ctx = Context()
    view = ctx.writer("fetch")
    value = {"rows": [1]}
    view.set("out", value)
    value["rows"].append(2)
    assert ctx.get("out") == {"rows": [1]}
    assert [(c.key, c.who) for c in ctx.history()] == [("out", "fetch")]


def test_a_write_lands_before_the_fence_or_not_at_all() -> None:
    """Racing a writer thread, fence() splits its writes: all before landed, all after discarded."""
    ctx = Context()
    view = ctx.writer("racer")
    started = threading.Event()
    count = 2000

    def write() -> None:
        for i in range(count):
            view.set(f"k{i}", {"i": i, "t": 0.5})
            started.set()

    writer = threading.Thread(target=write)
    writer.start()
    started.wait(timeout=10)
    view.fence("abandoned")
    writer.join(timeout=10)
    landed = [c.key for c in ctx.history()]
    discarded = [d.key for d in ctx.discarded()]
    assert landed + discarded == [f"k{i}" for i in range(count)]
    assert landed  # the first write landed before the fence
    assert all(ctx.get(key) is None for key in discarded)


def test_changes_since_counts_versions_across_trims() -> None:
    """Versions keep counting every write, through a view or not, while the history is trimmed."""
    ctx = Context(history_limit=4)
    versions = []
    view = ctx.writer("w")
    for i in range(9):
        if i % 2:
            view.set("k", i)
        else:
            ctx.set("k", i)
        versions.append(ctx.changes_since(0)[0])
    assert versions == list(range(1, 10))
    assert ctx.changes_since(8) == (9, {"k": 8})
    assert ctx.changes_since(7, exclude={None}) == (8, {"k": 7})


def test_prefix_lookup_merges_keys_below_a_shared_level() -> None:
    """Keys sharing an intermediate level nest into one mapping, as copies."""
    ctx = Context()
    ctx.set("errors.load.first", {"n": 1})
    ctx.set("errors.load.second", 2)
    nested = ctx.get("errors")
    assert nested == {"load": {"first": {"n": 1}, "second": 2}}
    nested["load"]["first"]["n"] = 5
    assert ctx.get("errors.load.first") == {"n": 1}


def test_history_hands_out_copies() -> None:
    """Changing a value history() returned changes no Context value, shared or not."""
    ctx = Context()
    shared = {"state": "closed"}
    ctx.set_owned_many([("a", shared), ("b", shared)], "owner")
    ctx.set("c", {"n": [1]})
    history = ctx.history()
    history[-2].after["state"] = "open"
    history[-1].after["n"].append(2)
    assert ctx.get("a") == ctx.get("b") == {"state": "closed"}
    assert ctx.get("c") == {"n": [1]}
