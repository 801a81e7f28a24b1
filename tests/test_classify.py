"""Tests for classifying exceptions by built-in and recipe rules, and for error selectors."""

from __future__ import annotations

import errno
import json
import re
import socket
import sqlite3
import urllib.error
from email.message import Message
from types import SimpleNamespace
from typing import Any

import pytest

from framework0_errors.categories import ErrorCategory, ErrorSeverity
from framework0_errors.classify import (
    DEFAULT_SEVERITY,
    Classification,
    ClassificationRule,
    ClassificationRuleError,
    Classifier,
    Selector,
    classify_builtin,
    error_matches,
    parse_selector,
    qualified_name,
)
from framework0_errors.orchestrator.problems import Framework0Error

NETWORK, FRAMEWORK, VALIDATION = (
    ErrorCategory.NETWORK,
    ErrorCategory.FRAMEWORK,
    ErrorCategory.VALIDATION,
)


def lookalike(module: str, qualname: str, *bases: type, **attrs: Any) -> type[Exception]:
    """Make an exception class that looks as if it were defined in ``module``."""
    name = qualname.rsplit(".", 1)[-1]
    namespace = {"__module__": module, "__qualname__": qualname, **attrs}
    return type(name, bases or (Exception,), namespace)


class ConnectionError(Exception):  # shadows the builtin on purpose
    """A class named ConnectionError that does not derive from the builtin one."""


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("requests.exceptions", "ConnectionError"),
        ("requests.exceptions", "Timeout"),
        ("requests.exceptions", "ConnectTimeout"),
        ("requests.exceptions", "ReadTimeout"),
        ("httpx._exceptions", "TransportError"),
        ("httpx._exceptions", "TimeoutException"),
        ("httpx._exceptions", "NetworkError"),
        ("urllib3.exceptions", "NewConnectionError"),
        ("urllib3.exceptions", "MaxRetryError"),
        ("urllib3.exceptions", "ProtocolError"),
        ("aiohttp.client_exceptions", "ClientConnectionError"),
        ("psycopg2", "OperationalError"),
        ("psycopg2", "InterfaceError"),
        ("psycopg", "OperationalError"),
        ("pymysql.err", "OperationalError"),
        ("sqlalchemy.exc", "OperationalError"),
        ("sqlalchemy.exc", "InterfaceError"),
        ("redis.exceptions", "ConnectionError"),
        ("redis.exceptions", "TimeoutError"),
        ("framework0_errors", "StepTimeoutError"),
    ],
)
def test_library_network_errors_are_transient_by_name(module: str, name: str) -> None:
    """Library connection/timeout errors are NETWORK and transient without the library."""
    result = classify_builtin(lookalike(module, name)("boom"))
    assert (result.category, result.transient) == (NETWORK, True)
    assert result.severity is ErrorSeverity.MEDIUM
    assert result.hint
    assert f"{module}.{name}" in result.rule


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("refused"),
        BrokenPipeError(),
        TimeoutError("slow"),
        socket.gaierror(-2, "Name or service not known"),
        socket.herror(1, "Unknown host"),
        urllib.error.URLError("no route"),
        sqlite3.OperationalError("database is locked"),
        sqlite3.InterfaceError("bad binding"),
    ],
)
def test_standard_library_network_errors_are_transient(exc: BaseException) -> None:
    """Builtin, socket, urllib and sqlite3 connection errors are NETWORK and transient."""
    result = classify_builtin(exc)
    assert (result.category, result.transient) == (NETWORK, True)


def test_redis_client_errors_are_network() -> None:
    """The real redis client's errors are classified by name like any other."""
    redis_exceptions = pytest.importorskip("redis.exceptions")
    for exc in (redis_exceptions.ConnectionError("x"), redis_exceptions.TimeoutError("x")):
        assert classify_builtin(exc).category is NETWORK


def test_connection_error_named_class_is_network_without_the_builtin() -> None:
    """Done-when: a class merely NAMED ConnectionError, defined here, is NETWORK and transient."""
    assert not issubclass(ConnectionError, OSError)
    result = Classifier().classify(ConnectionError("connection reset by peer"))
    assert (result.category, result.transient) == (NETWORK, True)
    assert result.rule == f"builtin network ({__name__}.ConnectionError)"


def test_subclass_of_a_named_class_is_matched_through_the_mro() -> None:
    """Rules look at every class of the MRO, so subclasses of named errors match."""
    base = lookalike("requests.exceptions", "ConnectionError")
    sub = lookalike("requests.exceptions", "SSLError", base)
    deeper = type("MyAppError", (sub,), {})
    assert classify_builtin(deeper("x")).category is NETWORK


@pytest.mark.parametrize(
    ("bases", "expected"),
    [
        ((ValueError, ConnectionRefusedError), VALIDATION),
        ((ConnectionRefusedError, ValueError), NETWORK),
    ],
)
def test_most_specific_class_wins(bases: tuple[type, ...], expected: ErrorCategory) -> None:
    """When two rules match, the one naming the class earlier in the MRO wins."""
    assert classify_builtin(type("Both", bases, {})("x")).category is expected


@pytest.mark.parametrize(
    ("name", "hint_word"),
    [("CircuitOpenError", "breaker"), ("BulkheadFullError", "bulkhead")],
)
def test_protection_errors_are_framework_and_transient(name: str, hint_word: str) -> None:
    """Breaker and bulkhead rejections are FRAMEWORK, transient, with a hint saying why."""
    result = classify_builtin(lookalike("framework0_errors", name, Framework0Error)("no"))
    assert (result.category, result.transient, result.severity) == (
        FRAMEWORK,
        True,
        ErrorSeverity.MEDIUM,
    )
    assert result.hint is not None
    assert hint_word in result.hint


HostMissingKeys = lookalike("framework0_errors", "MissingContextKeys", Framework0Error)
HostNonZero = lookalike("framework0_errors", "StepReturnedNonZero", Framework0Error)


def nonzero(return_code: object = None) -> Exception:
    """A host-like StepReturnedNonZero, with ``return_code`` set unless None."""
    exc = HostNonZero("step returned non-zero")
    if return_code is not None:
        exc.return_code = return_code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "category", "severity"),
    [
        (PermissionError("denied"), ErrorCategory.SECURITY, ErrorSeverity.CRITICAL),
        (ValueError("bad"), VALIDATION, ErrorSeverity.HIGH),
        (KeyError("k"), VALIDATION, ErrorSeverity.HIGH),
        (TypeError("t"), VALIDATION, ErrorSeverity.HIGH),
        (json.JSONDecodeError("x", "doc", 0), VALIDATION, ErrorSeverity.HIGH),
        (HostMissingKeys("missing processed_data"), VALIDATION, ErrorSeverity.HIGH),
        (MemoryError(), ErrorCategory.SYSTEM, ErrorSeverity.CRITICAL),
        (OSError(errno.ENOSPC, "No space left"), ErrorCategory.SYSTEM, ErrorSeverity.HIGH),
        (OSError(errno.EDQUOT, "Quota exceeded"), ErrorCategory.SYSTEM, ErrorSeverity.HIGH),
        (nonzero(2), ErrorCategory.BUSINESS, ErrorSeverity.HIGH),
        (OSError(errno.ENOENT, "No such file"), ErrorCategory.UNKNOWN, ErrorSeverity.HIGH),
        (RuntimeError("?"), ErrorCategory.UNKNOWN, ErrorSeverity.HIGH),
        (ZeroDivisionError(), ErrorCategory.UNKNOWN, ErrorSeverity.HIGH),
        (KeyboardInterrupt(), ErrorCategory.UNKNOWN, ErrorSeverity.HIGH),
    ],
)
def test_permanent_builtin_rules(
    exc: BaseException, category: ErrorCategory, severity: ErrorSeverity
) -> None:
    """Non-network built-in rules give their category and severity, never transient."""
    result = classify_builtin(exc)
    assert (result.category, result.severity, result.transient) == (category, severity, False)


def test_unknown_errors_use_the_default_rule() -> None:
    """An error no rule names is UNKNOWN, with no hint, decided by the default rule."""
    assert classify_builtin(RuntimeError("x")) == Classification(
        ErrorCategory.UNKNOWN, ErrorSeverity.HIGH, False, None, "default"
    )


def test_every_category_has_a_default_severity() -> None:
    """Each category has a documented default severity."""
    assert set(DEFAULT_SEVERITY) == set(ErrorCategory)


@pytest.mark.parametrize(
    ("status", "transient"), [(404, False), (400, False), (503, True), (429, True)]
)
def test_urllib_http_errors_are_transient_only_for_retryable_status(
    status: int, transient: bool
) -> None:
    """urllib's HTTPError (a URLError) is retried only for 408, 425, 429 and 5xx gateways."""
    exc = urllib.error.HTTPError("http://x", status, "status", Message(), None)
    result = classify_builtin(exc)
    assert (result.category, result.transient) == (NETWORK, transient)
    assert "http-status" in result.rule


@pytest.mark.parametrize(
    ("module", "name", "response", "transient"),
    [
        ("requests.exceptions", "HTTPError", SimpleNamespace(status_code=502), True),
        ("requests.exceptions", "HTTPError", SimpleNamespace(status_code=401), False),
        ("requests.exceptions", "HTTPError", None, True),
        ("httpx._exceptions", "HTTPStatusError", SimpleNamespace(status_code=408), True),
        ("httpx._exceptions", "HTTPStatusError", SimpleNamespace(status_code=422), False),
        ("httpx._exceptions", "HTTPStatusError", SimpleNamespace(status_code=True), True),
    ],
)
def test_library_http_status_errors(
    module: str, name: str, response: object, transient: bool
) -> None:
    """Status errors are transient by status; an unknown status counts as transient."""
    cls = lookalike(module, name)
    exc = cls("status")
    exc.response = response  # type: ignore[attr-defined]
    assert classify_builtin(exc).transient is transient


def test_other_http_error_named_class_is_not_network() -> None:
    """Only the listed HTTP status errors are network errors; urllib3's base HTTPError is not."""
    assert (
        classify_builtin(lookalike("somelib", "HTTPError")("x")).category is ErrorCategory.UNKNOWN
    )


@pytest.mark.parametrize(
    ("module", "qualname", "name", "expected"),
    [
        ("requests.exceptions", "ConnectionError", "ConnectionError", True),
        ("requests.exceptions", "ConnectionError", "requests.exceptions.ConnectionError", True),
        ("requests.exceptions", "ConnectionError", "exceptions.ConnectionError", True),
        ("requests.exceptions", "ConnectionError", "requests.ConnectionError", True),
        ("requests.exceptions", "ConnectionError", "builtins.ConnectionError", False),
        ("requests.exceptions", "ConnectionError", "urllib3.ConnectionError", False),
        ("requests.exceptions", "ConnectionError", "Connection", False),
        ("requests.exceptions", "ConnectionError", "Error", False),
        ("requests.exceptions", "ConnectionError", "sts.exceptions.ConnectionError", False),
        ("httpx._exceptions", "ConnectTimeout", "httpx.ConnectTimeout", True),
        ("pkg.mod", "Outer.Inner", "Inner", True),
        ("pkg.mod", "Outer.Inner", "Outer.Inner", True),
        ("pkg.mod", "Outer.Inner", "pkg.mod.Outer.Inner", True),
        ("pkg.mod", "Outer.Inner", "mod.Inner", False),
    ],
)
def test_error_matches_names(module: str, qualname: str, name: str, expected: bool) -> None:
    """Names match by simple name, qualified name, dotted suffix or re-exporting package."""
    assert error_matches(lookalike(module, qualname)("x"), name) is expected


@pytest.mark.parametrize(
    ("exc", "name", "expected"),
    [
        (ConnectionRefusedError(), "ConnectionError", True),
        (ConnectionRefusedError(), "builtins.ConnectionError", True),
        (ConnectionRefusedError(), "OSError", True),
        (ConnectionRefusedError(), "Exception", True),
        (ValueError(), "ConnectionError", False),
        (ConnectionRefusedError, "ConnectionRefusedError", True),
    ],
)
def test_error_matches_builtin_hierarchy(
    exc: BaseException | type[BaseException], name: str, expected: bool
) -> None:
    """Builtin names match over the whole MRO, for instances and classes alike."""
    assert error_matches(exc, name) is expected


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (ValueError, "ValueError"),
        (urllib.error.URLError, "urllib.error.URLError"),
        (ConnectionError, f"{__name__}.ConnectionError"),
    ],
)
def test_qualified_name(cls: type, expected: str) -> None:
    """Qualified names are module.QualName, bare for builtins."""
    assert qualified_name(cls) == expected


# --------------------------------------------------------------------------- recipe rules


def rule(**data: Any) -> ClassificationRule:
    """Build a rule from its recipe mapping."""
    return ClassificationRule.from_mapping(data)


def test_recipe_message_rule_overrides_builtin_network() -> None:
    """Done-when: a quota message rule makes a NETWORK error BUSINESS and permanent."""
    quota = rule(match={"message": "quota exceeded"}, category="BUSINESS", transient=False)
    classifier = Classifier([quota])
    hit = classifier.classify(ConnectionError("API Quota Exceeded for project 7"))
    assert (hit.category, hit.transient) == (ErrorCategory.BUSINESS, False)
    assert hit.rule == "classification[0] (message ~ /quota exceeded/)"
    miss = classifier.classify(ConnectionError("connection reset"))
    assert (miss.category, miss.transient) == (NETWORK, True)


def test_omitted_fields_come_from_the_builtin_classification() -> None:
    """A rule changing only severity keeps the built-in category, transience and hint."""
    classifier = Classifier([rule(match={"exception": "TimeoutError"}, severity="low")])
    result = classifier.classify(TimeoutError("slow"))
    builtin = classify_builtin(TimeoutError("slow"))
    assert result == Classification(
        NETWORK, ErrorSeverity.LOW, True, builtin.hint, "classification[0] (exception TimeoutError)"
    )


@pytest.mark.parametrize(
    "fields",
    [{"category": "business"}, {"transient": False}, {"category": "network", "transient": False}],
)
def test_rule_changing_the_verdict_drops_the_builtin_hint(fields: dict[str, Any]) -> None:
    """A built-in hint does not survive a rule that changes category or transience."""
    result = Classifier([rule(match={"message": "x"}, **fields)]).classify(TimeoutError("x"))
    assert result.hint is None
    own = Classifier([rule(match={"message": "x"}, hint="call ops", **fields)])
    assert own.classify(TimeoutError("x")).hint == "call ops"


def test_first_matching_rule_wins() -> None:
    """Recipe rules are tried in order; the first match decides."""
    classifier = Classifier(
        [
            rule(match={"exception": "KeyError"}, category="business"),
            rule(match={"message": "."}, category="security"),
        ]
    )
    assert classifier.classify(KeyError("k")).category is ErrorCategory.BUSINESS
    assert classifier.classify(ValueError("v")).category is ErrorCategory.SECURITY
    assert classifier.rules[0].exception == "KeyError"


def test_all_match_keys_must_hold() -> None:
    """A rule with exception and message matches only when both hold."""
    both = rule(match={"exception": "ValueError", "message": "^bad date"}, category="business")
    assert both.matches(ValueError("Bad date: 31/02"))
    assert not both.matches(ValueError("other"))
    assert not both.matches(KeyError("bad date"))


def test_return_code_rule_matches_int_attribute_only() -> None:
    """return_code rules match exceptions with an int return_code equal to theirs."""
    rc3 = rule(match={"return_code": 3}, category="validation", transient=False)
    classifier = Classifier([rc3])
    assert classifier.classify(nonzero(3)).category is VALIDATION
    assert classifier.classify(nonzero(4)).category is ErrorCategory.BUSINESS
    assert not rc3.matches(nonzero("3"))
    assert not rc3.matches(nonzero())
    assert not rule(match={"return_code": 1}, hint="h").matches(nonzero(True))


def test_non_zero_return_is_business_unless_a_rule_says_otherwise() -> None:
    """Without rules, a non-zero return is BUSINESS and not transient."""
    result = Classifier().classify(nonzero(2))
    assert (result.category, result.transient) == (ErrorCategory.BUSINESS, False)


def test_message_rule_is_case_insensitive_and_searched() -> None:
    """Message regexes are searched anywhere, ignoring case."""
    assert rule(match={"message": r"quota\s+exceeded"}, hint="h").matches(
        RuntimeError("Daily QUOTA   Exceeded!")
    )


def test_rule_describe_lists_every_condition() -> None:
    """describe() says what the rule matches, for the classification's rule field."""
    full = rule(match={"exception": "KeyError", "message": "m", "return_code": 2}, hint="h")
    assert full.describe() == "exception KeyError and message ~ /m/ and return_code 2"


def test_rule_with_everything_parses() -> None:
    """Every field of the recipe form lands on the rule, parsed."""
    parsed = rule(
        match={"exception": "requests.exceptions.HTTPError", "message": "x"},
        category="Security",
        severity="fatal",
        transient=True,
        hint="rotate the key",
    )
    assert (parsed.category, parsed.severity, parsed.transient, parsed.hint) == (
        ErrorCategory.SECURITY,
        ErrorSeverity.FATAL,
        True,
        "rotate the key",
    )
    assert parsed.message is not None
    assert parsed.message.flags & 2  # re.IGNORECASE


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ("not a mapping", (), "must be a mapping"),
        ({"match": {"message": "x"}, "categroy": "x"}, ("categroy",), "unknown key"),
        ({"category": "business"}, ("match",), "must be a mapping"),
        ({"match": "quota", "category": "business"}, ("match",), "must be a mapping"),
        ({"match": {}, "category": "business"}, ("match",), "give one of"),
        ({"match": {"msg": "x"}, "category": "business"}, ("match", "msg"), "unknown key"),
        ({"match": {"message": "x"}}, (), "set one or more of"),
        (
            {"match": {"message": "quota("}, "hint": "h"},
            ("match", "message"),
            "invalid regular expression 'quota('",
        ),
        ({"match": {"message": 3}, "hint": "h"}, ("match", "message"), "must be str"),
        (
            {"match": {"exception": "Connection Error"}, "hint": "h"},
            ("match", "exception"),
            "no error name",
        ),
        ({"match": {"exception": ""}, "hint": "h"}, ("match", "exception"), "no error name"),
        ({"match": {"return_code": "1"}, "hint": "h"}, ("match", "return_code"), "must be int"),
        ({"match": {"return_code": True}, "hint": "h"}, ("match", "return_code"), "must be int"),
        ({"match": {"message": "x"}, "category": "network-ish"}, ("category",), "allowed: SYSTEM"),
        ({"match": {"message": "x"}, "severity": "urgent"}, ("severity",), "allowed: LOW"),
        ({"match": {"message": "x"}, "severity": 3}, ("severity",), "must be str"),
        ({"match": {"message": "x"}, "transient": "no"}, ("transient",), "must be bool"),
        ({"match": {"message": "x"}, "hint": ["a"]}, ("hint",), "must be str"),
    ],
)
def test_bad_rules_are_rejected_with_the_key_named(
    data: Any, path: tuple[str, ...], fragment: str
) -> None:
    """Malformed rules raise a ValueError whose path and message locate the problem."""
    with pytest.raises(ClassificationRuleError, match=re.escape(fragment)) as info:
        ClassificationRule.from_mapping(data)
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, Framework0Error)
    assert error.path == path
    if path:
        assert str(error).startswith(".".join(path) + ": ")


def test_rule_without_conditions_cannot_be_built() -> None:
    """A rule built directly still needs a match condition."""
    with pytest.raises(ClassificationRuleError, match="give one of"):
        ClassificationRule(category=ErrorCategory.BUSINESS)


def test_classify_message_uses_message_only_rules() -> None:
    """Log messages are classified by rules matching on message alone; others are skipped."""
    classifier = Classifier(
        [
            rule(match={"exception": "ValueError", "message": "disk"}, category="validation"),
            rule(match={"return_code": 1}, category="business"),
            rule(match={"message": "disk full"}, category="system", hint="clean up"),
        ]
    )
    base = Classification(ErrorCategory.UNKNOWN, ErrorSeverity.HIGH, False, None, "log ERROR")
    hit = classifier.classify_message("Disk full on /var", base=base)
    assert hit == Classification(
        ErrorCategory.SYSTEM,
        ErrorSeverity.HIGH,
        False,
        "clean up",
        "classification[2] (message ~ /disk full/)",
    )
    assert classifier.classify_message("all fine", base=base) is base


def test_classification_is_cached_per_type_but_decided_per_instance() -> None:
    """Repeated classification of one type stays right when instances differ."""
    classifier = Classifier()
    for _ in range(3):
        assert classifier.classify(OSError(errno.ENOSPC, "full")).category is ErrorCategory.SYSTEM
        assert classifier.classify(OSError(errno.ENOENT, "gone")).category is ErrorCategory.UNKNOWN


# --------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ConnectionError", Selector(name="ConnectionError")),
        (" requests.exceptions.Timeout ", Selector(name="requests.exceptions.Timeout")),
        ("category:NETWORK", Selector(category=NETWORK)),
        ("CATEGORY:network", Selector(category=NETWORK)),
        ("category: Framework ", Selector(category=FRAMEWORK)),
    ],
)
def test_parse_selector(text: str, expected: Selector) -> None:
    """Selectors are error names or case-insensitive categories."""
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("category:NET", "allowed: SYSTEM, NETWORK"),
        ("category:", "unknown error category"),
        ("", "write an error name"),
        ("Connection Error", "write an error name"),
        ("1Error", "write an error name"),
        ("a..b", "write an error name"),
        (None, "write an error name"),
    ],
)
def test_bad_selectors_say_what_is_allowed(text: Any, fragment: str) -> None:
    """A bad selector is a ValueError naming it and what would be valid."""
    with pytest.raises(ValueError, match="bad error selector") as info:
        parse_selector(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("text", ["ConnectionError", "category:NETWORK", "a.b.C"])
def test_selector_text_round_trips(text: str) -> None:
    """str(selector) is its canonical text and parses back to it."""
    assert parse_selector(str(parse_selector(text))) == parse_selector(text)
    assert str(parse_selector(text)) == text


def test_selector_matches_by_name_or_category() -> None:
    """Name selectors test the MRO; category selectors test the classification."""
    classifier = Classifier()
    exc = ConnectionError("x")
    verdict = classifier.classify(exc)
    assert parse_selector("ConnectionError").matches(exc, verdict)
    assert parse_selector(f"{__name__}.ConnectionError").matches(exc, verdict)
    assert not parse_selector("TimeoutError").matches(exc, verdict)
    assert parse_selector("category:network").matches(exc, verdict)
    assert not parse_selector("category:validation").matches(exc, verdict)


@pytest.mark.parametrize("kwargs", [{}, {"name": "X", "category": NETWORK}])
def test_selector_needs_exactly_one_criterion(kwargs: dict[str, Any]) -> None:
    """A selector has a name or a category, not both or neither."""
    with pytest.raises(ValueError, match="exactly one"):
        Selector(**kwargs)
