"""The Python API: the policies of an ``error_handling:`` block, for plain functions.

``@resilient(retry={"max_attempts": 3}, circuit_breaker={"name": "payments"})``
means exactly what the same keys mean in a recipe: the settings are
validated by the same JSON Schema and models (and rejected with the same
messages), and calls go through the same :class:`~framework0_errors.pipeline.Pipeline`.

Breaker and bulkhead state lives in a store. Unless ``store=`` is given, it
is the store of the process-wide default :class:`ErrorHandler`
(``get_error_handler()``), so breakers and bulkheads are shared by name
within the process, as they are across the steps of a run. Waits use the
current clocks at call time, so ``fake_time()`` applies to functions
decorated before it was entered.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from .attempt import Abandon
from .classify import Classification, Classifier
from .config import PATTERN_HELP, RetryConfig, StepErrorHandling, error_handling_schema
from .orchestrator import Framework0Error, Locator, format_path, non_finite_problems
from .orchestrator.schema_check import schema_problems
from .pipeline import Pipeline
from .stores.base import BreakerStore, BulkheadStore
from .stores.memory import MemoryStore
from .testing import Timing, timing

__all__ = [
    "ErrorHandler",
    "ResilienceConfigError",
    "ResilienceStore",
    "UnknownStrategyError",
    "get_error_handler",
    "reset_error_handlers",
    "resilient",
    "validate_block",
]

P = ParamSpec("P")
R = TypeVar("R")
_UNSET: Any = object()
_WHERE = "<python>"


class ResilienceConfigError(Framework0Error, ValueError):
    """Settings given in code are invalid; ``problems`` lists them as ``path: message``."""

    __module__ = "framework0_errors"

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid error handling settings:\n  " + "\n  ".join(self.problems))


class UnknownStrategyError(Framework0Error, KeyError):
    """No retry strategy of that name is registered with the handler."""

    __module__ = "framework0_errors"

    def __str__(self) -> str:
        return str(self.args[0])


class ResilienceStore(BreakerStore, BulkheadStore, Protocol):
    """A store of both breaker and bulkhead state (every shipped store is one)."""


def validate_block(settings: Mapping[str, Any]) -> StepErrorHandling:
    """Validate a step-level ``error_handling`` mapping exactly as a recipe's would be.

    Raises:
        ResilienceConfigError: listing every problem as ``path: message``, with
            the messages ``framework0 validate`` prints for the same block.
    """
    data = _plain(settings)
    where = Locator(_WHERE)
    located = schema_problems(_validator(), data, where, pattern_help=PATTERN_HELP)
    located += non_finite_problems(data, (), where)
    if located:
        raise ResilienceConfigError([_line(p.path, p.message) for p in located])
    try:
        return StepErrorHandling.model_validate(data)
    except ValidationError as exc:
        raise ResilienceConfigError(_pydantic_problems(exc, data)) from None


def resilient(
    *,
    retry: Mapping[str, Any] | RetryConfig | None = None,
    circuit_breaker: Mapping[str, Any] | BaseModel | None = None,
    timeout: float | Mapping[str, Any] | BaseModel | None = None,
    bulkhead: Mapping[str, Any] | BaseModel | None = None,
    fallback: Any = _UNSET,
    fallback_on: list[str] | None = None,
    name: str | None = None,
    store: ResilienceStore | None = None,
    classifier: Classifier | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a function through ``fallback → retry → circuit_breaker → bulkhead → timeout``.

    Each setting takes the keys of the same recipe block (``timeout`` may be
    a number of seconds). ``fallback`` is a callable, called with the
    function's own arguments, or a value to return; ``fallback_on`` selects
    the errors it applies to (default: any). ``name`` names the breaker and
    the bulkhead when their blocks do not (default: ``module.qualname``).
    Exhausted retries re-raise the last error unchanged; a failed fallback
    raises :class:`~framework0_errors.FallbackFailedError`.

    Raises:
        ResilienceConfigError: when the settings are invalid (at decoration time).
        TypeError: for ``fallback_on`` without ``fallback``, or an async function.
    """
    default = get_error_handler()
    return _decorator(
        _block(
            retry=retry,
            circuit_breaker=circuit_breaker,
            timeout=timeout,
            bulkhead=bulkhead,
            fallback=fallback,
            on=fallback_on,
        ),
        fallback=fallback,
        name=name,
        store=store if store is not None else default.store,
        classify=(classifier or default.classifier).classify,
    )


class ErrorHandler:
    """Named retry strategies and fallbacks over one store, for code that is not a recipe.

    Args:
        name: The handler's name (``get_error_handler`` keeps one per name).
        store: Breaker and bulkhead state; default: a fresh in-process store.
        classifier: Decides which errors are transient; default: built-in rules.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        store: ResilienceStore | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        self.name = name
        self.store: ResilienceStore = store if store is not None else MemoryStore()
        self.classifier = classifier or Classifier()
        self._lock = threading.Lock()
        self._strategies: dict[str, Pipeline[Any]] = {}
        self._fallbacks: dict[str, Callable[..., Any]] = {}

    @property
    def strategies(self) -> tuple[str, ...]:
        """The names of the registered retry strategies, sorted."""
        with self._lock:
            return tuple(sorted(self._strategies))

    def register_retry_strategy(
        self, name: str, *, max_attempts: int, backoff: str = "exponential", **retry_keys: Any
    ) -> RetryConfig:
        """Register (or replace) the retry strategy ``name``; keys as in a recipe's ``retry:``.

        ``backoff`` is ``backoff_strategy``; other keys (``initial_delay``,
        ``retry_on``, ``deadline``…) pass through. Without ``retry_on``, only
        transient errors are retried, as in a recipe.

        Raises:
            ResilienceConfigError: when the settings are invalid.
        """
        if "backoff_strategy" in retry_keys:
            raise TypeError("give the backoff strategy as backoff=, not backoff_strategy=")
        settings = {"max_attempts": max_attempts, "backoff_strategy": backoff, **retry_keys}
        block = validate_block({"retry": settings})
        pipeline: Pipeline[Any] = self._pipeline(block, name)
        with self._lock:
            self._strategies[name] = pipeline
        assert block.retry is not None
        return block.retry

    def register_fallback(self, name: str, fallback: Callable[..., Any]) -> None:
        """Call ``fallback`` with the same arguments when strategy ``name`` gives up."""
        if not callable(fallback):
            raise TypeError(
                f"fallback for '{name}' must be callable, not {type(fallback).__name__}"
            )
        with self._lock:
            self._fallbacks[name] = fallback

    def call(self, strategy: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the strategy (and its fallback, if any).

        Raises:
            UnknownStrategyError: when no strategy ``strategy`` is registered.
        """
        with self._lock:
            pipeline = self._strategies.get(strategy)
            fallback = self._fallbacks.get(strategy)
        if pipeline is None:
            known = ", ".join(self.strategies) or "none"
            raise UnknownStrategyError(
                f"no retry strategy '{strategy}' in error handler '{self.name}' (known: {known})"
            )
        result: R = _call(pipeline, fn, args, kwargs, fallback=fallback)
        return result

    def wrap(self, strategy: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Return a decorator that calls the function through :meth:`call`."""

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            _check_sync(fn)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                return self.call(strategy, fn, *args, **kwargs)

            return wrapper

        return decorate

    def resilient(self, **settings: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Like the module's :func:`resilient`, over this handler's store and classifier."""
        settings.setdefault("store", self.store)
        settings.setdefault("classifier", self.classifier)
        return resilient(**settings)

    def _pipeline(self, block: StepErrorHandling, name: str) -> Pipeline[Any]:
        return Pipeline(
            block,
            name=name,
            breaker_store=self.store,
            bulkhead_store=self.store,
            timing=_LIVE,
            classify=self.classifier.classify,
        )


_handlers: dict[str, ErrorHandler] = {}
_handlers_lock = threading.Lock()


def get_error_handler(name: str = "default") -> ErrorHandler:
    """Return the process-wide handler called ``name``, creating it on first use."""
    with _handlers_lock:
        handler = _handlers.get(name)
        if handler is None:
            handler = _handlers[name] = ErrorHandler(name)
        return handler


def reset_error_handlers() -> None:
    """Forget every handler from :func:`get_error_handler` (for tests)."""
    with _handlers_lock:
        _handlers.clear()


# ------------------------------------------------------------------ internals

# Resolved at every use, so the fake_time() switch reaches pipelines built before it.
_LIVE = Timing(
    monotonic=lambda: timing().monotonic(),
    wall=lambda: timing().wall(),
    sleep=lambda seconds: timing().sleep(seconds),
)


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(error_handling_schema())


def _plain(value: Any) -> Any:
    # What YAML would have given: models as mappings, tuples as lists.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _pydantic_problems(exc: ValidationError, data: Any) -> list[str]:
    # Only reached for what the schema cannot say (values JSON cannot hold).
    lines = (
        _line(format_path(_data_path(data, error["loc"])), error["msg"])
        for error in exc.errors(include_url=False)
    )
    return list(dict.fromkeys(lines))


def _data_path(data: Any, loc: tuple[str | int, ...]) -> list[str | int]:
    # loc parts that are not in the data are union-branch tags: dropped, so
    # paths read as they would in a recipe.
    path: list[str | int] = []
    node = data
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_list or (isinstance(node, Mapping) and part in node):
            node = node[part]
            path.append(part)
    return path


def _line(path: str, message: str) -> str:
    message = message.removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def _block(
    *, retry: Any, circuit_breaker: Any, timeout: Any, bulkhead: Any, fallback: Any, on: Any
) -> StepErrorHandling:
    if on is not None and fallback is _UNSET:
        raise TypeError("fallback_on needs a fallback")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        timeout = {"seconds": timeout}
    given = {
        "retry": retry,
        "circuit_breaker": circuit_breaker,
        "timeout": timeout,
        "bulkhead": bulkhead,
    }
    settings: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if fallback is not _UNSET:
        # The code or value lives in Python; the block only carries `on`.
        settings["fallback"] = {"value": {}, **({"on": on} if on is not None else {})}
    return validate_block(settings)


def _decorator(
    block: StepErrorHandling,
    *,
    fallback: Any,
    name: str | None,
    store: ResilienceStore,
    classify: Callable[[BaseException], Classification],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        _check_sync(fn)
        pipeline: Pipeline[R] = Pipeline(
            block,
            name=name or f"{fn.__module__}.{fn.__qualname__}",
            breaker_store=store,
            bulkhead_store=store,
            timing=_LIVE,
            classify=classify,
        )
        alternative = None
        if fallback is not _UNSET:
            alternative = fallback if callable(fallback) else (lambda *a, **k: fallback)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return _call(pipeline, fn, args, kwargs, fallback=alternative)

        return wrapper

    return decorate


def _call(
    pipeline: Pipeline[R],
    fn: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    fallback: Callable[..., R] | None,
) -> R:
    def attempt(number: int, abandon: Abandon) -> R:
        return fn(*args, **kwargs)

    if fallback is None:
        return pipeline.run(attempt)
    alternative = fallback

    def use_fallback(exc: BaseException) -> R:
        return alternative(*args, **kwargs)

    return pipeline.run(attempt, fallback=use_fallback)


def _check_sync(fn: Callable[..., Any]) -> None:
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"{fn.__qualname__} is async; resilient() wraps sync functions only")
