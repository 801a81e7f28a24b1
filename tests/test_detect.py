"""Tests for detecting errors from what a step logs."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from framework0_errors.categories import ErrorSeverity
from framework0_errors.detect import (
    DetectedLogError,
    LogWatch,
    capture_log_errors,
    severity_for_level,
)


@pytest.fixture
def step_logger() -> Iterator[logging.Logger]:
    """A logger for step code, at DEBUG so every level reaches the handlers."""
    logger = logging.getLogger("tests.detect.step")
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(logging.NOTSET)


def handlers_of(name: str = "") -> list[logging.Handler]:
    """The handlers currently installed on a logger."""
    return list(logging.getLogger(name).handlers)


def test_captures_error_and_critical_records(step_logger: logging.Logger) -> None:
    """ERROR and CRITICAL records count by default; WARNING and below do not."""
    with capture_log_errors() as found:
        step_logger.debug("debug")
        step_logger.warning("warning")
        step_logger.error("upload of %s failed (%d)", "a.csv", 3)
        step_logger.critical("disk gone")
    assert [(d.logger, d.level, d.levelno, d.message, d.pattern) for d in found] == [
        ("tests.detect.step", "ERROR", logging.ERROR, "upload of a.csv failed (3)", None),
        ("tests.detect.step", "CRITICAL", logging.CRITICAL, "disk gone", None),
    ]
    assert found[0].time <= found[1].time


def test_level_is_configurable(step_logger: logging.Logger) -> None:
    """A lower level captures warnings too."""
    with capture_log_errors(level=logging.WARNING) as found:
        step_logger.info("info")
        step_logger.warning("careful")
    assert [d.message for d in found] == ["careful"]


def test_patterns_match_at_any_level(step_logger: logging.Logger) -> None:
    """A record matching a pattern counts at any level; the pattern is reported."""
    with capture_log_errors(patterns=[r"retrying in \d+", "quota"]) as found:
        step_logger.info("all good")
        step_logger.info("Retrying in 5 seconds")
        step_logger.debug("QUOTA almost used")
        step_logger.error("failed; quota exceeded")
        step_logger.error("failed otherwise")
    assert [(d.message, d.pattern) for d in found] == [
        ("Retrying in 5 seconds", r"retrying in \d+"),
        ("QUOTA almost used", "quota"),
        ("failed; quota exceeded", "quota"),
        ("failed otherwise", None),
    ]


def test_invalid_pattern_is_named() -> None:
    """A bad pattern is a ValueError naming it, and installs nothing."""
    before = handlers_of()
    with (
        pytest.raises(ValueError, match=r"invalid log pattern 'err\('"),
        capture_log_errors(patterns=["err("]),
    ):
        pass  # pragma: no cover - never entered
    assert handlers_of() == before


def failing_step(logger: logging.Logger, seen: list[list[DetectedLogError]]) -> None:
    """A step that logs an error, then raises."""
    with capture_log_errors() as found:
        seen.append(found)
        logger.error("about to fail")
        raise RuntimeError("step blew up")


def test_handler_is_removed_on_exit_and_on_error(step_logger: logging.Logger) -> None:
    """The capture leaves the logger's handlers as it found them, even when the step raises."""
    before = handlers_of()
    with capture_log_errors():
        assert len(handlers_of()) == len(before) + 1
    assert handlers_of() == before
    seen: list[list[DetectedLogError]] = []
    with pytest.raises(RuntimeError, match="step blew up"):
        failing_step(step_logger, seen)
    assert handlers_of() == before
    assert [d.message for d in seen[0]] == ["about to fail"]
    step_logger.error("after the capture")
    assert len(seen[0]) == 1


def test_each_thread_sees_only_its_own_records(step_logger: logging.Logger) -> None:
    """Concurrent captures in two threads each see only their own thread's records."""
    before = handlers_of()

    @contextlib.contextmanager
    def capture() -> Iterator[list[DetectedLogError]]:
        with capture_log_errors() as found:
            yield found

    _log_from_two_threads(step_logger, capture)
    assert handlers_of() == before


def test_records_of_other_threads_are_ignored(step_logger: logging.Logger) -> None:
    """A thread without a capture does not feed the capture of another thread."""
    with capture_log_errors() as found:
        worker = threading.Thread(target=step_logger.error, args=("from a worker",))
        worker.start()
        worker.join(timeout=10)
        step_logger.error("from the step")
    assert [d.message for d in found] == ["from the step"]


def test_nested_captures_both_see_records(step_logger: logging.Logger) -> None:
    """An inner capture does not steal records from, or uninstall, an outer one."""
    before = handlers_of()
    with capture_log_errors() as outer:
        step_logger.error("one")
        with capture_log_errors() as inner:
            step_logger.error("two")
        step_logger.error("three")
        assert len(handlers_of()) == len(before) + 1
    assert [d.message for d in outer] == ["one", "two", "three"]
    assert [d.message for d in inner] == ["two"]
    assert handlers_of() == before


def test_named_logger_capture_sees_its_subtree_only(step_logger: logging.Logger) -> None:
    """Capturing on a named logger sees its children, not unrelated loggers."""
    before = handlers_of("tests.detect")
    with capture_log_errors(logger_name="tests.detect") as found:
        step_logger.error("in the subtree")
        logging.getLogger("elsewhere").error("outside")
    assert [d.message for d in found] == ["in the subtree"]
    assert handlers_of("tests.detect") == before


@pytest.mark.parametrize(
    ("name", "exclude", "counted"),
    [
        ("framework0_errors.policies.retry", ("framework0_errors",), False),
        ("framework0_errors", ("framework0_errors",), False),
        ("framework0_errors_extra", ("framework0_errors",), True),
        ("tests.detect.step", ("tests.detect",), False),
        ("framework0_errors.runner", (), True),
    ],
)
def test_excluded_loggers_are_not_counted(
    name: str, exclude: tuple[str, ...], counted: bool, step_logger: logging.Logger
) -> None:
    """The framework's own loggers (and any listed) are not the step's errors."""
    with capture_log_errors(exclude_loggers=exclude) as found:
        logging.getLogger(name).error("about the step")
    assert bool(found) is counted


class Unprintable:
    """An object whose __str__ fails."""

    def __str__(self) -> str:
        raise RuntimeError("no")


def test_bad_format_arguments_keep_the_raw_message() -> None:
    """A record whose %-arguments do not fit (or fail) still counts, with its raw text."""
    logger = logging.getLogger("tests.detect.isolated")
    logger.propagate = False  # keep other handlers from reporting the formatting error
    try:
        with capture_log_errors(logger_name="tests.detect.isolated") as found:
            logger.error("%d files lost", "many")
            logger.error("%s broken", Unprintable())
    finally:
        logger.propagate = True
    assert [d.message for d in found] == ["%d files lost", "%s broken"]


def test_capture_survives_logging_reconfiguration(step_logger: logging.Logger) -> None:
    """If the handlers are reset while a capture is open, the next capture re-installs."""
    root = logging.getLogger()
    before = handlers_of()
    with capture_log_errors() as outer:
        root.handlers = list(before)  # what logging.config would do
        with capture_log_errors() as inner:
            step_logger.error("seen")
    assert [d.message for d in inner] == ["seen"]
    assert [d.message for d in outer] == ["seen"]
    assert handlers_of() == before


@pytest.mark.parametrize(
    ("levelno", "severity"),
    [
        (logging.CRITICAL, ErrorSeverity.CRITICAL),
        (logging.CRITICAL + 5, ErrorSeverity.CRITICAL),
        (logging.ERROR, ErrorSeverity.HIGH),
        (logging.WARNING, ErrorSeverity.MEDIUM),
        (logging.INFO, ErrorSeverity.LOW),
        (logging.DEBUG, ErrorSeverity.LOW),
    ],
)
def test_severity_for_level(levelno: int, severity: ErrorSeverity) -> None:
    """Log levels map to severities: CRITICAL, ERROR→HIGH, WARNING→MEDIUM, else LOW."""
    assert severity_for_level(levelno) is severity


@pytest.fixture
def watch() -> Iterator[LogWatch]:
    """A LogWatch on the root logger, closed after the test."""
    log_watch = LogWatch()
    yield log_watch
    log_watch.close()


def test_log_watch_captures_between_start_and_stop(
    watch: LogWatch, step_logger: logging.Logger
) -> None:
    """A LogWatch capture sees what the thread logs between start and stop only."""
    step_logger.error("before")
    found = watch.start()
    step_logger.warning("a warning")
    step_logger.error("during")
    watch.stop(found)
    step_logger.error("after")
    assert [d.message for d in found] == ["during"]
    again = watch.start()
    step_logger.error("second attempt")
    watch.stop(again)
    assert [d.message for d in again] == ["second attempt"]
    assert [d.message for d in found] == ["during"]


@pytest.mark.parametrize("nested", [False, True])
def test_log_watch_call_captures_the_call_only_even_when_it_raises(
    nested: bool, watch: LogWatch, step_logger: logging.Logger
) -> None:
    """call() captures what fn logs, also when fn raises; an open capture sees it too."""
    outer = watch.start() if nested else []

    def work(message: str) -> None:
        step_logger.error(message)
        raise ConnectionError(message)

    found: list[DetectedLogError] = []
    with pytest.raises(ConnectionError):
        watch.call(work, "inside", found)
    step_logger.error("after")
    watch.stop(outer)
    assert [d.message for d in found] == ["inside"]
    assert [d.message for d in outer] == (["inside", "after"] if nested else [])
    again: list[DetectedLogError] = []
    watch.call(step_logger.error, "second", again)
    assert [d.message for d in again] == ["second"]


@pytest.mark.parametrize("inner_first", [True, False])
def test_log_watch_nested_captures(
    inner_first: bool, watch: LogWatch, step_logger: logging.Logger
) -> None:
    """Nested captures of one thread both see its records, whichever stops first."""
    outer = watch.start()
    step_logger.error("one")
    inner = watch.start()
    step_logger.error("two")
    first, second = (inner, outer) if inner_first else (outer, inner)
    watch.stop(first)
    step_logger.error("three")
    watch.stop(second)
    step_logger.error("four")
    assert [d.message for d in outer] == ["one", "two"] + (["three"] if inner_first else [])
    assert [d.message for d in inner] == ["two"] + ([] if inner_first else ["three"])


def test_log_watch_three_deep_then_single_again(
    watch: LogWatch, step_logger: logging.Logger
) -> None:
    """After nesting unwinds, a lone capture of the thread works as before."""
    a, b, c = watch.start(), watch.start(), watch.start()
    step_logger.error("all three")
    watch.stop(b)
    step_logger.error("a and c")
    watch.stop(c)
    watch.stop(a)
    alone = watch.start()
    step_logger.error("alone")
    watch.stop(alone)
    assert [d.message for d in a] == ["all three", "a and c"]
    assert [d.message for d in b] == ["all three"]
    assert [d.message for d in c] == ["all three", "a and c"]
    assert [d.message for d in alone] == ["alone"]


def test_log_watch_stop_of_an_unknown_list_changes_nothing(
    watch: LogWatch, step_logger: logging.Logger
) -> None:
    """stop() with a list no open capture owns, or twice, leaves open captures alone."""
    watch.stop([])  # nothing open in this thread
    found = watch.start()
    watch.stop([])  # an equal but different list
    step_logger.error("still captured")
    watch.stop(found)
    watch.stop(found)  # already stopped
    outer, inner = watch.start(), watch.start()
    watch.stop([])
    step_logger.error("both")
    watch.stop(inner)
    watch.stop(outer)
    assert [d.message for d in found] == ["still captured"]
    assert [d.message for d in outer] == ["both"]
    assert [d.message for d in inner] == ["both"]


def test_log_watch_and_capture_block_nest_in_one_thread(
    watch: LogWatch, step_logger: logging.Logger
) -> None:
    """A capture_log_errors block inside a LogWatch capture (and around one) sees the same."""
    outer = watch.start()
    with capture_log_errors(level=logging.WARNING) as block:
        step_logger.warning("warned")
        inner = watch.start()
        step_logger.error("failed")
        watch.stop(inner)
    step_logger.error("after the block")
    watch.stop(outer)
    assert [d.message for d in outer] == ["failed", "after the block"]
    assert [d.message for d in block] == ["warned", "failed"]
    assert [d.message for d in inner] == ["failed"]


def test_log_watch_attributes_records_per_thread(
    watch: LogWatch, step_logger: logging.Logger
) -> None:
    """Captures of one LogWatch in two threads each see only their own thread's records."""

    @contextlib.contextmanager
    def capture() -> Iterator[list[DetectedLogError]]:
        found = watch.start()
        try:
            yield found
        finally:
            watch.stop(found)

    _log_from_two_threads(step_logger, capture)


def _log_from_two_threads(
    step_logger: logging.Logger,
    capture: Callable[[], contextlib.AbstractContextManager[list[DetectedLogError]]],
) -> None:
    """Two threads log 50 errors each inside their own capture; each sees only its own."""
    barrier = threading.Barrier(2, timeout=10)
    results: dict[str, list[str]] = {}

    def step(name: str) -> None:
        with capture() as found:
            barrier.wait()  # both captures are open before anyone logs
            for i in range(50):
                step_logger.error("%s error %d", name, i)
            barrier.wait()  # both have logged before anyone closes
        results[name] = [d.message for d in found]

    threads = [threading.Thread(target=step, args=(n,)) for n in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results["left"] == [f"left error {i}" for i in range(50)]
    assert results["right"] == [f"right error {i}" for i in range(50)]


def test_log_watch_keeps_the_handler_until_closed() -> None:
    """The dispatcher stays while a watch is open, and goes once nothing needs it."""
    before = handlers_of()
    watch = LogWatch()
    assert len(handlers_of()) == len(before) + 1
    watch.stop(watch.start())
    assert len(handlers_of()) == len(before) + 1  # no capture open, but the watch is
    with capture_log_errors():
        watch.close()
        watch.close()  # idempotent
        assert len(handlers_of()) == len(before) + 1  # the block still needs it
    assert handlers_of() == before


def test_a_close_interrupted_as_it_begins_can_be_done_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C as close() takes the lock: the watch is still open, and closing again releases it."""
    from framework0_errors import detect

    real = detect._dispatchers_lock

    class InterruptedOnce:
        interrupted = False

        def __enter__(self) -> None:
            if not self.interrupted:
                self.interrupted = True
                raise KeyboardInterrupt
            real.__enter__()

        def __exit__(self, *exc: object) -> None:
            real.__exit__(*exc)

    before = handlers_of()
    watch = LogWatch()
    monkeypatch.setattr(detect, "_dispatchers_lock", InterruptedOnce())
    with pytest.raises(KeyboardInterrupt):
        watch.close()
    watch.close()
    assert handlers_of() == before


def test_log_watch_with_patterns_and_excluded_loggers(step_logger: logging.Logger) -> None:
    """A LogWatch applies its level, patterns and excluded loggers like capture_log_errors."""
    watch = LogWatch(level=logging.CRITICAL, patterns=["quota"], exclude_loggers=["noisy"])
    try:
        found = watch.start()
        step_logger.error("plain error")
        step_logger.info("quota low")
        logging.getLogger("noisy.child").critical("quota gone")
        step_logger.critical("down")
        watch.stop(found)
    finally:
        watch.close()
    assert [(d.message, d.pattern) for d in found] == [("quota low", "quota"), ("down", None)]


def test_log_watch_invalid_pattern_installs_nothing() -> None:
    """A bad pattern is a ValueError before any handler is installed."""
    before = handlers_of()
    with pytest.raises(ValueError, match=r"invalid log pattern '\['"):
        LogWatch(patterns=["["])
    assert handlers_of() == before
