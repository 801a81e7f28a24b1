"""Decide what an exception means: its category, severity, transience and a hint.

Built-in rules (the ``_BUILTINS`` table) match exception classes BY NAME over
the whole MRO, so errors of ``requests``, ``httpx``, ``urllib3``, ``aiohttp``,
``redis`` and database drivers are recognised without those libraries being
installed; the most specific class a rule names wins. Connection, timeout and
database-connection errors are NETWORK and transient; HTTP status errors are
NETWORK but transient only for 408, 425, 429, 500, 502, 503 and 504. Anything
no rule names is UNKNOWN and not transient. Default severity per category:

==========  ========  =====================================================
category    severity  why
==========  ========  =====================================================
NETWORK     MEDIUM    usually transient; retries tend to recover
FRAMEWORK   MEDIUM    breaker open or bulkhead full: protection at work
VALIDATION  HIGH      bad data or args; needs a fix, retrying cannot help
BUSINESS    HIGH      the step itself reported failure
SYSTEM      HIGH      the host is in trouble (``MemoryError``: CRITICAL)
SECURITY    CRITICAL  denied access needs a person
UNKNOWN     HIGH      unexpected errors must not be under-reported
==========  ========  =====================================================

Recipe rules (:class:`ClassificationRule`) are tried first, in order; the
first that matches wins and the fields it omits come from the built-in result.
"""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .categories import ErrorCategory, ErrorSeverity
from .orchestrator.problems import Framework0Error

__all__ = [
    "DEFAULT_SEVERITY",
    "Classification",
    "ClassificationRule",
    "ClassificationRuleError",
    "Classifier",
    "Selector",
    "classify_builtin",
    "error_matches",
    "parse_selector",
    "qualified_name",
]

_C, _S = ErrorCategory, ErrorSeverity
DEFAULT_SEVERITY: Mapping[ErrorCategory, ErrorSeverity] = {
    _C.NETWORK: _S.MEDIUM,
    _C.FRAMEWORK: _S.MEDIUM,
    _C.VALIDATION: _S.HIGH,
    _C.BUSINESS: _S.HIGH,
    _C.SYSTEM: _S.HIGH,
    _C.SECURITY: _S.CRITICAL,
    _C.UNKNOWN: _S.HIGH,
}
_T = TypeVar("_T")
_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def qualified_name(cls: type) -> str:
    """Return ``module.QualName`` for a class, or just ``QualName`` for builtins."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.lru_cache(maxsize=4096)
def _own_names(cls: type) -> frozenset[str]:
    # The names that select this class: every dotted suffix of module.QualName
    # (``ConnectionError``, ``exceptions.ConnectionError``, ...), __name__, and
    # ``pkg.QualName`` for every package above the module, because libraries
    # re-export (``httpx.ConnectTimeout`` is defined in ``httpx._exceptions``).
    module = cls.__module__.split(".")
    parts = [*module, cls.__qualname__]
    names = {".".join(parts[i:]) for i in range(len(parts))}
    names.update(".".join([*module[:i], cls.__qualname__]) for i in range(1, len(module)))
    names.add(cls.__name__)
    return frozenset(names)


@functools.lru_cache(maxsize=4096)
def _mro_names(cls: type) -> frozenset[str]:
    return frozenset().union(*(_own_names(k) for k in cls.__mro__))


def error_matches(exc: BaseException | type[BaseException], name: str) -> bool:
    """Whether an exception (or exception class) is selected by the error name ``name``.

    True when a class in its MRO has ``__qualname__`` or ``__name__`` equal to
    ``name``, or ``module.QualName`` equal to it or ending with ``"." + name``,
    or ``name`` is ``pkg.QualName`` for a package ``pkg`` above the class's
    module. So ``ConnectionError`` selects every class of that simple name,
    builtin or not; ``requests.exceptions.ConnectionError`` and
    ``requests.ConnectionError`` only the one of ``requests``.
    """
    cls: type = exc if isinstance(exc, type) else type(exc)
    return name in _mro_names(cls)


@dataclass(frozen=True, slots=True)
class Classification:
    """What an error is; ``rule`` says which rule decided, for reports and ``explain``."""

    category: ErrorCategory
    severity: ErrorSeverity
    transient: bool
    hint: str | None = None
    rule: str = "default"


_UNCLASSIFIED = Classification(_C.UNKNOWN, DEFAULT_SEVERITY[_C.UNKNOWN], transient=False)

# --------------------------------------------------------------------------- built-in rules

_DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


def _retryable_status(exc: BaseException) -> bool:
    # urllib's HTTPError has .code; requests' and httpx's carry .response.status_code.
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "code", "status"):
            status = getattr(holder, attr, None)
            if isinstance(status, int) and not isinstance(status, bool):
                return status in {408, 425, 429, 500, 502, 503, 504}
    return True


@dataclass(frozen=True, slots=True)
class _Builtin:
    label: str
    names: frozenset[str]
    category: ErrorCategory
    hint: str
    transient: bool | Callable[[BaseException], bool] = False
    severity: ErrorSeverity | None = None
    applies: Callable[[BaseException], bool] | None = None

    def classify(self, exc: BaseException, matched: str) -> Classification:
        transient = self.transient if isinstance(self.transient, bool) else self.transient(exc)
        return Classification(
            self.category,
            self.severity or DEFAULT_SEVERITY[self.category],
            transient,
            self.hint,
            f"builtin {self.label} ({matched})",
        )


_BUILTINS: tuple[_Builtin, ...] = (
    _Builtin("http-status", frozenset({"urllib.error.HTTPError", "requests.exceptions.HTTPError",
             "HTTPStatusError"}), _C.NETWORK, transient=_retryable_status,
             hint="the server answered with an error status; 408, 429 and 5xx are worth retrying"),
    _Builtin("network", frozenset({"ConnectionError", "TimeoutError", "socket.timeout", "gaierror",
             "herror", "Timeout", "ConnectTimeout", "ReadTimeout", "TransportError",
             "TimeoutException", "NetworkError", "NewConnectionError", "MaxRetryError",
             "ProtocolError", "URLError", "ClientConnectionError"}), _C.NETWORK,
             transient=True, hint="check that the service is reachable; retry with backoff"),
    _Builtin("database", frozenset({"OperationalError", "InterfaceError"}), _C.NETWORK,
             transient=True, hint="check that the database is reachable; retry with backoff"),
    _Builtin("step-timeout", frozenset({"StepTimeoutError"}), _C.NETWORK, transient=True,
             hint="the attempt ran out of time; retry, or raise timeout.seconds"),
    _Builtin("circuit-open", frozenset({"CircuitOpenError"}), _C.FRAMEWORK, transient=True,
             hint="the circuit breaker is open; wait for it to half-open or add a fallback"),
    _Builtin("bulkhead-full", frozenset({"BulkheadFullError"}), _C.FRAMEWORK, transient=True,
             hint="no bulkhead slot was free; raise max_concurrent or max_wait"),
    _Builtin("permission", frozenset({"PermissionError"}), _C.SECURITY,
             hint="check credentials and access rights"),
    _Builtin("memory", frozenset({"MemoryError"}), _C.SYSTEM, severity=_S.CRITICAL,
             hint="process less data at once or give the process more memory"),
    _Builtin("disk-full", frozenset({"OSError"}), _C.SYSTEM,
             applies=lambda e: getattr(e, "errno", None) in _DISK_FULL,
             hint="free disk space or raise the quota"),
    _Builtin("missing-context-keys", frozenset({"MissingContextKeys"}), _C.VALIDATION,
             hint="the step did not set every key of success.ctx_has_keys"),
    _Builtin("validation", frozenset({"ValueError", "KeyError", "TypeError"}), _C.VALIDATION,
             hint="check the step's input data and args"),
    _Builtin("nonzero-return", frozenset({"StepReturnedNonZero"}), _C.BUSINESS,
             hint="the step reported failure through its return code; see its output"),
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _builtin_candidates(cls: type) -> tuple[tuple[_Builtin, str], ...]:
    # Most specific class first; a rule with a predicate may still decline.
    return tuple(
        (rule, qualified_name(klass))
        for klass in cls.__mro__
        for rule in _BUILTINS
        if rule.names & _own_names(klass)
    )


def classify_builtin(exc: BaseException) -> Classification:
    """Classify ``exc`` by the built-in rules alone."""
    cls: type = type(exc)
    for rule, matched in _builtin_candidates(cls):
        if rule.applies is None or rule.applies(exc):
            return rule.classify(exc, matched)
    return _UNCLASSIFIED


# --------------------------------------------------------------------------- recipe rules

_MATCH_KEYS = ("exception", "message", "return_code")
_OUTCOME_KEYS = ("category", "severity", "transient", "hint")


class ClassificationRuleError(Framework0Error, ValueError):
    """A recipe ``classification`` rule is malformed; ``path`` locates the bad key."""

    __module__ = "framework0_errors"

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        self.path = path
        super().__init__(f"{'.'.join(path)}: {message}" if path else message)


def _return_code(exc: BaseException) -> int | None:
    value = getattr(exc, "return_code", None)
    return value if type(value) is int else None


@dataclass(frozen=True, slots=True)
class ClassificationRule:
    """One recipe rule: when every given ``match`` condition holds, set these fields.

    ``exception`` is an error name (see :func:`error_matches`); ``message`` a
    regular expression searched case-insensitively in ``str(exc)``;
    ``return_code`` matches exceptions with an ``int`` attribute ``return_code``
    equal to it. Outcome fields left ``None`` keep the built-in value.
    """

    exception: str | None = None
    message: re.Pattern[str] | None = None
    return_code: int | None = None
    category: ErrorCategory | None = None
    severity: ErrorSeverity | None = None
    transient: bool | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.exception is None and self.message is None and self.return_code is None:
            raise ClassificationRuleError(("match",), "give one of " + ", ".join(_MATCH_KEYS))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ClassificationRule:
        """Build a rule from its recipe form, checking every key.

        Raises:
            ClassificationRuleError: (a ``ValueError``) naming the bad key and why,
                including the compiler's complaint for a bad ``message`` regex.
        """
        rule = _mapping(data, ("match", *_OUTCOME_KEYS), ())
        match = _mapping(rule.get("match"), _MATCH_KEYS, ("match",))
        if not any(k in rule for k in _OUTCOME_KEYS):
            raise ClassificationRuleError((), "set one or more of " + ", ".join(_OUTCOME_KEYS))
        exception = _get(match, "exception", str, ("match",))
        if exception is not None and not _NAME.fullmatch(exception):
            raise ClassificationRuleError(("match", "exception"), f"no error name: {exception!r}")
        pattern = _get(match, "message", str, ("match",))
        try:
            message = None if pattern is None else re.compile(pattern, re.IGNORECASE)
        except re.error as err:
            raise ClassificationRuleError(
                ("match", "message"), f"invalid regular expression {pattern!r}: {err}"
            ) from None
        return cls(
            exception=exception,
            message=message,
            return_code=_get(match, "return_code", int, ("match",)),
            category=_parse(rule, "category", ErrorCategory.parse),
            severity=_parse(rule, "severity", ErrorSeverity.parse),
            transient=_get(rule, "transient", bool, ()),
            hint=_get(rule, "hint", str, ()),
        )

    def describe(self) -> str:
        """Say what the rule matches, e.g. ``message ~ /quota exceeded/``."""
        parts = [
            f"exception {self.exception}" if self.exception is not None else "",
            f"message ~ /{self.message.pattern}/" if self.message is not None else "",
            f"return_code {self.return_code}" if self.return_code is not None else "",
        ]
        return " and ".join(p for p in parts if p)

    def matches(self, exc: BaseException) -> bool:
        """Whether every condition of the rule holds for ``exc``."""
        if self.exception is not None and not error_matches(exc, self.exception):
            return False
        if self.return_code is not None and _return_code(exc) != self.return_code:
            return False
        return self.message is None or self.matches_text(str(exc))

    def matches_text(self, text: str) -> bool:
        """Whether the ``message`` regex, if any, is found in ``text``."""
        return self.message is None or self.message.search(text) is not None

    def apply(self, base: Classification, rule: str) -> Classification:
        """Overlay the rule's fields on ``base``; omitted fields keep ``base``'s.

        Except the hint: ``base``'s hint explains ``base``'s verdict, so a rule
        that changes the category or the transience and gives no hint of its
        own leaves none (a "retry with backoff" hint on an error the rule made
        permanent would mislead).
        """
        category = base.category if self.category is None else self.category
        transient = base.transient if self.transient is None else self.transient
        same = category is base.category and transient == base.transient
        return Classification(
            category=category,
            severity=base.severity if self.severity is None else self.severity,
            transient=transient,
            hint=self.hint if self.hint is not None else base.hint if same else None,
            rule=rule,
        )


def _mapping(data: object, allowed: Sequence[str], path: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ClassificationRuleError(path, f"must be a mapping with {', '.join(allowed)}")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ClassificationRuleError((*path, unknown[0]), "unknown key; use " + ", ".join(allowed))
    return data


def _get(data: Mapping[str, Any], key: str, kind: type[_T], path: tuple[str, ...]) -> _T | None:
    value = data.get(key)
    # bool is an int subclass, but ``return_code: true`` is a mistake, not 1
    if value is not None and (
        not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))
    ):
        raise ClassificationRuleError((*path, key), f"must be {kind.__name__}, not {value!r}")
    return value


def _parse(data: Mapping[str, Any], key: str, parse: Callable[[str], _T]) -> _T | None:
    text = _get(data, key, str, ())
    try:
        return None if text is None else parse(text)
    except ValueError as err:
        raise ClassificationRuleError((key,), str(err)) from None


# --------------------------------------------------------------------------- classifier


class Classifier:
    """Classifies exceptions and log messages by recipe rules, then built-in rules.

    Thread-safe and cheap per call: built-in matches and name lookups are cached
    per exception type; recipe regexes are compiled once, when rules are built.

    Args:
        rules: Recipe rules, tried in order before the built-in ones.
    """

    __slots__ = ("_labelled", "_rules")

    def __init__(self, rules: Sequence[ClassificationRule] = ()) -> None:
        self._rules = tuple(rules)
        self._labelled = tuple(
            (f"classification[{i}] ({r.describe()})", r) for i, r in enumerate(self._rules)
        )

    @property
    def rules(self) -> tuple[ClassificationRule, ...]:
        """The recipe rules, in evaluation order."""
        return self._rules

    def classify(self, exc: BaseException) -> Classification:
        """Return the category, severity, transience and hint of ``exc``."""
        base = classify_builtin(exc)
        for label, rule in self._labelled:
            if rule.matches(exc):
                return rule.apply(base, label)
        return base

    def classify_message(self, message: str, *, base: Classification) -> Classification:
        """Classify a text with no exception behind it (a logged error).

        Only rules that match on ``message`` alone can apply; the first that
        does is overlaid on ``base``, which is returned unchanged otherwise.
        """
        for label, rule in self._labelled:
            if rule.exception is None and rule.return_code is None and rule.matches_text(message):
                return rule.apply(base, label)
        return base


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class Selector:
    """Picks errors by name or by category, as ``retry_on`` and ``give_up_on`` list them.

    Exactly one of ``name`` (see :func:`error_matches`) and ``category`` is set;
    ``str(selector)`` is its canonical text.
    """

    name: str | None = None
    category: ErrorCategory | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.category is None):
            raise ValueError("a selector has exactly one of name and category")

    def matches(self, exc: BaseException, classification: Classification) -> bool:
        """Whether ``exc``, classified as ``classification``, is selected."""
        if self.category is not None:
            return classification.category is self.category
        return error_matches(exc, str(self.name))

    def __str__(self) -> str:
        return f"category:{self.category}" if self.category is not None else str(self.name)


def parse_selector(text: str) -> Selector:
    """Parse ``ConnectionError``, ``requests.exceptions.Timeout`` or ``category:NETWORK``.

    The ``category:`` prefix and the category are case-insensitive; names are not.

    Raises:
        ValueError: Neither an error name nor a known category; says what is allowed.
    """
    stripped = text.strip() if isinstance(text, str) else ""
    if stripped.lower().startswith("category:"):
        try:
            return Selector(category=ErrorCategory.parse(stripped.partition(":")[2]))
        except ValueError as err:
            raise ValueError(f"bad error selector {text!r}: {err}") from None
    if not _NAME.fullmatch(stripped):
        raise ValueError(
            f"bad error selector {text!r}: write an error name (ConnectionError, "
            "requests.exceptions.Timeout) or a category (category:NETWORK)"
        )
    return Selector(name=stripped)
