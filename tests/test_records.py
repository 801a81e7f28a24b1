"""Tests for error records: building, bounding, redacting, fingerprinting, JSON round-trip."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framework0_errors.categories import ErrorCategory, ErrorSeverity
from framework0_errors.classify import Classification, ClassificationRule, Classifier
from framework0_errors.detect import DetectedLogError
from framework0_errors.records import (
    MAX_CAUSES,
    MAX_FRAMES,
    MAX_MESSAGE,
    CauseLink,
    ErrorRecord,
    fingerprint,
    new_record_id,
    normalise_message,
)
from framework0_errors.redact import Redactor

VALIDATION = Classification(
    ErrorCategory.VALIDATION, ErrorSeverity.HIGH, False, "check the args", "builtin validation"
)


def record_of(exc: BaseException, **overrides: Any) -> ErrorRecord:
    """Build a record of ``exc`` with fixed ids and clock."""
    options: dict[str, Any] = {
        "classification": VALIDATION,
        "run_id": "run-1",
        "recipe": "recipes/etl.yaml",
        "step": "load",
        "attempt": 2,
        "clock": lambda: 1_700_000_000.5,
        "id_factory": lambda: "rec-1",
        **overrides,
    }
    return ErrorRecord.from_exception(exc, **options)


def raised(exc: BaseException) -> BaseException:
    """Raise and catch ``exc`` so it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


class ServiceError(Exception):
    """A non-builtin error for qualified type names."""


def test_from_exception_fills_every_field() -> None:
    """A record carries ids, place, time, type, message and the classification."""
    record = record_of(raised(ValueError("bad row 7")))
    assert (record.id, record.run_id, record.recipe, record.step, record.attempt) == (
        "rec-1",
        "run-1",
        "recipes/etl.yaml",
        "load",
        2,
    )
    assert record.time == 1_700_000_000.5
    assert record.timestamp == "2023-11-14T22:13:20.500000Z"
    assert (record.exception_type, record.message) == ("ValueError", "bad row 7")
    assert (record.category, record.severity, record.transient) == (
        ErrorCategory.VALIDATION,
        ErrorSeverity.HIGH,
        False,
    )
    assert (record.hint, record.rule, record.detected, record.logger) == (
        "check the args",
        "builtin validation",
        False,
        None,
    )
    assert record.fingerprint == fingerprint("ValueError", "bad row 7", "load")


def test_exception_type_is_qualified_except_builtins() -> None:
    """Non-builtin types are module.QualName; builtins are bare."""
    assert record_of(ServiceError("x")).exception_type == f"{__name__}.ServiceError"
    assert record_of(KeyError("x")).exception_type == "KeyError"


def test_default_id_and_clock() -> None:
    """Without factories, ids are fresh hex and time is the wall clock."""
    first = ErrorRecord.from_exception(
        ValueError("x"), classification=VALIDATION, run_id="r", recipe="x", step="s", attempt=1
    )
    second = record_of(ValueError("x"), id_factory=new_record_id, clock=lambda: 0.0)
    assert re.fullmatch("[0-9a-f]{32}", first.id)
    assert first.id != second.id
    assert first.time > 1_600_000_000
    assert second.timestamp == "1970-01-01T00:00:00.000000Z"


def test_cause_and_context_links_are_recorded() -> None:
    """Explicit causes and implicit contexts are both recorded, with their kind."""
    try:
        try:
            try:
                raise KeyError("host")
            except KeyError:
                raise OSError("config unreadable") from None
        except OSError as inner:
            raise RuntimeError("load failed") from inner
    except RuntimeError as outer:
        record = record_of(outer)
    assert record.causes == (CauseLink("OSError", "config unreadable", "cause"),)
    try:
        try:
            raise KeyError("host")
        except KeyError:
            raise ServiceError("while handling")  # noqa: B904  # the implicit context is the point
    except ServiceError as exc:
        record = record_of(exc)
    assert record.causes == (CauseLink("KeyError", "'host'", "context"),)


def test_cause_chain_is_bounded_and_survives_loops() -> None:
    """Chains are cut at MAX_CAUSES links, and a looping chain ends."""
    head = ValueError("0")
    current = head
    for i in range(1, MAX_CAUSES + 5):
        nxt = ValueError(str(i))
        current.__cause__ = nxt
        current = nxt
    assert [c.message for c in record_of(head).causes] == [str(i) for i in range(1, MAX_CAUSES + 1)]
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert [c.message for c in record_of(a).causes] == ["b"]


def recurse(depth: int) -> None:
    """Raise from ``depth`` frames down."""
    if depth == 0:
        raise ServiceError("deep")
    recurse(depth - 1)


def test_traceback_keeps_the_last_frames() -> None:
    """The traceback summary holds the last MAX_FRAMES frames as 'file:line in func'."""
    try:
        recurse(MAX_FRAMES * 2)
    except ServiceError as exc:
        record = record_of(exc)
    assert len(record.traceback) == MAX_FRAMES
    assert all(re.fullmatch(r".+:\d+ in recurse", line) for line in record.traceback)
    assert record.traceback[-1].startswith(__file__ + ":")


def test_exception_never_raised_has_no_traceback() -> None:
    """An exception that was never raised has an empty traceback summary."""
    assert record_of(ValueError("x")).traceback == ()


def test_redactor_masks_message_causes_and_traceback() -> None:
    """Secrets from the step's args are masked everywhere in the record."""
    redactor = Redactor.for_args({"db": {"password": "hunter22"}}).with_values(["recurse"])
    try:
        try:
            raise KeyError("login with hunter22")
        except KeyError as inner:
            raise ServiceError("dsn postgres://u:hunter22@db failed") from inner
    except ServiceError as exc:
        record = record_of(exc, redactor=redactor)
    assert record.message == "dsn postgres://u:***@db failed"
    assert record.causes[0].message == "'login with ***'"
    try:
        recurse(1)
    except ServiceError as exc:
        frames = record_of(exc, redactor=redactor).traceback
    assert frames[-1].endswith(" in ***")
    assert "hunter22" not in json.dumps(record.to_dict())


def test_long_messages_are_clipped() -> None:
    """Messages are bounded to MAX_MESSAGE characters, ending in an ellipsis."""
    record = record_of(ValueError("x" * (MAX_MESSAGE * 3)))
    assert len(record.message) == MAX_MESSAGE
    assert record.message.endswith("…")
    assert record_of(ValueError("y" * MAX_MESSAGE)).message == "y" * MAX_MESSAGE


class Unprintable(Exception):
    """An exception whose __str__ fails."""

    def __str__(self) -> str:
        raise RuntimeError("no")


def test_unprintable_exception_still_gets_a_record() -> None:
    """A broken __str__ does not hide the error it belongs to."""
    assert record_of(Unprintable()).message == "<unprintable Unprintable>"


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("timeout after 3.2s on host 10.0.0.5", "timeout after <n>s on host <n>"),
        ("object at 0x7f3a2b1c", "object at <hex>"),
        ("commit 3f2a9b8c7d1e not found", "commit <hex> not found"),
        ("job 123e4567-e89b-12d3-a456-426614174000 died", "job <uuid> died"),
        ("missing key 'customer_id'", "missing key <str>"),
        ('file "data 1.csv" is empty', "file <str> is empty"),
        ("can't open, it's locked", "can't open, it's locked"),
        ("  many   blanks\n here ", "many blanks here"),
        ("deadbeef plain word", "deadbeef plain word"),
    ],
)
def test_normalise_message(message: str, normalised: str) -> None:
    """Numbers, hex ids, UUIDs and quoted strings become placeholders."""
    assert normalise_message(message) == normalised


def test_fingerprint_groups_messages_that_differ_in_details() -> None:
    """Same type, step and message shape give one fingerprint; any other change splits."""
    first = fingerprint("TimeoutError", "timeout after 3.2s on host 10.0.0.5", "fetch")
    second = fingerprint("TimeoutError", "timeout after 4.1s on host 10.0.0.7", "fetch")
    assert first == second
    assert re.fullmatch("[0-9a-f]{16}", first)
    assert fingerprint("OSError", "timeout after 3.2s on host 10.0.0.5", "fetch") != first
    assert fingerprint("TimeoutError", "timeout after 3.2s on host 10.0.0.5", "load") != first
    assert fingerprint("TimeoutError", "refused by host 10.0.0.5", "fetch") != first


# --------------------------------------------------------------------------- JSON round-trip

texts = st.text(max_size=40)
records = st.builds(
    ErrorRecord,
    id=texts,
    run_id=texts,
    recipe=texts,
    step=texts,
    attempt=st.integers(min_value=0, max_value=10**6),
    time=st.floats(min_value=-1e10, max_value=1e11, allow_nan=False, allow_infinity=False),
    exception_type=texts,
    message=st.text(max_size=200),
    category=st.sampled_from(ErrorCategory),
    severity=st.sampled_from(ErrorSeverity),
    transient=st.booleans(),
    fingerprint=texts,
    causes=st.lists(
        st.builds(CauseLink, type=texts, message=texts, kind=st.sampled_from(["cause", "context"])),
        max_size=4,
    ).map(tuple),
    traceback=st.lists(texts, max_size=4).map(tuple),
    hint=st.none() | texts,
    rule=texts,
    detected=st.booleans(),
    logger=st.none() | texts,
)


@given(records)
def test_records_round_trip_through_json(record: ErrorRecord) -> None:
    """to_dict, JSON text and from_dict give back an equal record."""
    text = json.dumps(record.to_dict())
    assert ErrorRecord.from_dict(json.loads(text)) == record


def test_json_form_has_epoch_and_iso_time() -> None:
    """The JSON form carries time as epoch seconds and as an ISO-8601 UTC string."""
    data = record_of(ValueError("x")).to_dict()
    assert data["time"] == 1_700_000_000.5
    assert data["timestamp"] == "2023-11-14T22:13:20.500000Z"
    assert (data["category"], data["severity"]) == ("VALIDATION", "HIGH")


def test_from_dict_ignores_unknown_keys_and_fills_optional_ones() -> None:
    """Newer fields are ignored; rule and detected default when absent; int time is fine."""
    data = record_of(ValueError("x")).to_dict()
    del data["rule"], data["detected"], data["timestamp"]
    data.update(time=5, extra="from a newer version")
    record = ErrorRecord.from_dict(data)
    assert (record.rule, record.detected, record.time) == ("", False, 5.0)


def broken(**changes: Any) -> dict[str, Any]:
    """A valid record's JSON form with some keys changed (None deletes)."""
    data = record_of(ValueError("x")).to_dict()
    data["causes"] = [{"type": "KeyError", "message": "k", "kind": "cause"}]
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (broken(step=None), "missing 'step'"),
        (broken(attempt="2"), "'attempt' must be int"),
        (broken(attempt=True), "'attempt' must be int"),
        (broken(transient=1), "'transient' must be bool"),
        (broken(time="now"), "'time' must be a number"),
        (broken(time=True), "'time' must be a number"),
        (broken(category="NETWORKING"), "unknown error category"),
        (broken(severity=4), "'severity' must be str"),
        (broken(causes="none"), "'causes' must be list"),
        (broken(causes=["KeyError"]), "every cause must be a mapping"),
        (broken(causes=[{"type": "K", "message": "m", "kind": "caused"}]), "cause kind"),
        (broken(causes=[{"type": "K", "kind": "cause"}]), "missing 'message'"),
        (broken(traceback=[1]), "every traceback line must be a string"),
        (broken(hint=3), "hint and logger"),
        (broken(logger=["x"]), "hint and logger"),
        (broken(rule=1), "'rule' must be str"),
    ],
)
def test_from_dict_rejects_malformed_records(data: dict[str, Any], fragment: str) -> None:
    """A malformed JSON form is a ValueError saying which key is wrong."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ErrorRecord.from_dict(data)


def test_cause_links_of_both_kinds_read_back() -> None:
    """Both cause kinds survive from_dict."""
    for kind in ("cause", "context"):
        link = CauseLink.from_dict({"type": "T", "message": "m", "kind": kind})
        assert link.kind == kind


@pytest.mark.parametrize("time", [math.nan, math.inf, -math.inf, 1e12, -1e12])
def test_records_need_a_showable_time(time: float) -> None:
    """A time that is not finite or cannot be shown as a date is refused."""
    with pytest.raises(ValueError, match="time must be epoch seconds"):
        record_of(ValueError("x"), clock=lambda: time)


# --------------------------------------------------------------------------- detected errors


def detected(
    level: int, message: str = "upload failed", pattern: str | None = None
) -> DetectedLogError:
    """A detected log error at ``level``."""
    return DetectedLogError(
        logger="etl.upload",
        level=logging.getLevelName(level),
        levelno=level,
        message=message,
        time=1_700_000_100.0,
        pattern=pattern,
    )


def from_detected(item: DetectedLogError, classifier: Classifier, **extra: Any) -> ErrorRecord:
    """Build a record of a detected error with fixed ids."""
    return ErrorRecord.from_detected(
        item,
        classifier=classifier,
        run_id="run-1",
        recipe="r.yaml",
        step="upload",
        attempt=1,
        id_factory=lambda: "rec-9",
        **extra,
    )


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.ERROR, ErrorSeverity.HIGH),
        (logging.CRITICAL, ErrorSeverity.CRITICAL),
        (logging.WARNING, ErrorSeverity.MEDIUM),
        (logging.INFO, ErrorSeverity.LOW),
    ],
)
def test_detected_errors_take_severity_from_level(level: int, severity: ErrorSeverity) -> None:
    """A logged error is UNKNOWN, not transient, detected, with severity from its level."""
    record = from_detected(detected(level), Classifier())
    assert (record.category, record.severity, record.transient, record.detected) == (
        ErrorCategory.UNKNOWN,
        severity,
        False,
        True,
    )
    assert record.exception_type == f"logging.{logging.getLevelName(level)}"
    assert (record.logger, record.time, record.id) == ("etl.upload", 1_700_000_100.0, "rec-9")
    assert record.rule == f"log {logging.getLevelName(level)}"
    assert ErrorRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_detected_error_names_the_pattern_that_caught_it() -> None:
    """A record caught by a pattern says so in its rule."""
    record = from_detected(detected(logging.INFO, "retrying", pattern="retry"), Classifier())
    assert record.rule == "log pattern /retry/"


def test_recipe_message_rules_classify_detected_errors() -> None:
    """Recipe rules on message alone apply to logged errors; exception rules do not."""
    classifier = Classifier(
        [
            ClassificationRule.from_mapping(
                {"match": {"exception": "ValueError"}, "category": "validation"}
            ),
            ClassificationRule.from_mapping(
                {"match": {"message": "quota"}, "category": "business", "hint": "raise quota"}
            ),
        ]
    )
    hit = from_detected(detected(logging.ERROR, "Quota exceeded"), classifier)
    assert (hit.category, hit.severity, hit.hint) == (
        ErrorCategory.BUSINESS,
        ErrorSeverity.HIGH,
        "raise quota",
    )
    miss = from_detected(detected(logging.ERROR, "bad value"), classifier)
    assert miss.category is ErrorCategory.UNKNOWN


def test_detected_messages_are_redacted_and_clipped() -> None:
    """Logged messages are masked and bounded like raised ones."""
    redactor = Redactor(secret_values=["hunter22"])
    record = from_detected(
        detected(logging.ERROR, "pw hunter22 " * MAX_MESSAGE), Classifier(), redactor=redactor
    )
    assert "hunter22" not in record.message
    assert record.message.startswith("pw *** pw ***")
    assert len(record.message) == MAX_MESSAGE
