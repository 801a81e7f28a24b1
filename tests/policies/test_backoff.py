"""Delay sequences of fixed, linear and exponential backoff, with and without jitter."""

from __future__ import annotations

import itertools
import math

import pytest

from framework0_errors.policies import BackoffSettings, delays, worst_case_total


def first(n: int, it: object) -> list[float]:
    """Return the first ``n`` items of an iterator."""
    return list(itertools.islice(it, n))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        ({"strategy": "fixed"}, [1.0, 1.0, 1.0, 1.0]),
        ({"strategy": "fixed", "initial_delay": 0.25}, [0.25, 0.25, 0.25, 0.25]),
        ({"strategy": "fixed", "initial_delay": 5.0, "max_delay": 3.0}, [3.0, 3.0, 3.0, 3.0]),
        ({"strategy": "linear"}, [1.0, 2.0, 3.0, 4.0]),
        ({"strategy": "linear", "initial_delay": 2.5, "max_delay": 6.0}, [2.5, 5.0, 6.0, 6.0]),
        ({"strategy": "linear", "multiplier": 10.0}, [1.0, 2.0, 3.0, 4.0]),
        ({"strategy": "exponential"}, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
        ({"strategy": "exponential", "initial_delay": 3.0}, [3.0, 6.0, 12.0, 24.0, 48.0, 60.0]),
        (
            {"strategy": "exponential", "initial_delay": 2.0, "multiplier": 1.5, "max_delay": 5},
            [2.0, 3.0, 4.5, 5.0, 5.0],
        ),
        ({"strategy": "exponential", "multiplier": 1.0}, [1.0, 1.0, 1.0]),
        ({"strategy": "exponential", "initial_delay": 0.0}, [0.0, 0.0, 0.0]),
    ],
)
def test_unjittered_sequences(knobs: dict[str, object], expected: list[float]) -> None:
    """Each strategy yields its documented delays, every one capped at max_delay."""
    assert first(len(expected), delays(**knobs)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("multiplier", [2.0, 2, 10.0])
def test_exponential_far_out_stays_at_cap_without_overflow(multiplier: float) -> None:
    """Retry 5000 is still exactly max_delay: huge powers are capped, not an error."""
    settings = BackoffSettings(strategy="exponential", multiplier=multiplier)
    assert settings.delay(5000) == 60.0
    assert first(5000, settings.delays())[-1] == 60.0


@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999999])
@pytest.mark.parametrize("strategy", ["fixed", "linear", "exponential"])
def test_full_jitter_is_uniform_between_zero_and_the_delay(strategy: str, r: float) -> None:
    """Full jitter sleeps random() * d_n, so always within [0, d_n)."""
    plain = first(8, delays(strategy=strategy))  # type: ignore[arg-type]
    jittered = first(8, delays(strategy=strategy, jitter="full", random=lambda: r))  # type: ignore[arg-type]
    assert jittered == [d * r for d in plain]
    assert all(0.0 <= j <= d for j, d in zip(jittered, plain, strict=True))


@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999999])
@pytest.mark.parametrize("strategy", ["fixed", "linear", "exponential"])
def test_equal_jitter_keeps_half_and_randomises_half(strategy: str, r: float) -> None:
    """Equal jitter sleeps d_n/2 + random() * d_n/2, so always within [d_n/2, d_n)."""
    plain = first(8, delays(strategy=strategy))  # type: ignore[arg-type]
    jittered = first(8, delays(strategy=strategy, jitter="equal", random=lambda: r))  # type: ignore[arg-type]
    assert jittered == [d / 2 + d / 2 * r for d in plain]
    assert all(d / 2 <= j <= d for j, d in zip(jittered, plain, strict=True))


def test_random_source_is_called_once_per_delay() -> None:
    """The injected random source drives jitter, one draw per retry, in order."""
    draws = iter([0.1, 0.9, 0.5])
    got = first(3, delays(strategy="exponential", jitter="full", random=lambda: next(draws)))
    assert got == pytest.approx([0.1, 1.8, 2.0])


def test_default_random_source_stays_within_bounds() -> None:
    """Without an injected source, full jitter still stays within [0, d_n]."""
    plain = first(50, delays(strategy="exponential"))
    jittered = first(50, delays(strategy="exponential", jitter="full"))
    assert all(0.0 <= j <= d for j, d in zip(jittered, plain, strict=True))


@pytest.mark.parametrize(
    ("retries", "knobs", "expected"),
    [
        (0, {"strategy": "exponential"}, 0.0),
        (2, {"strategy": "exponential"}, 3.0),
        (5, {"strategy": "exponential"}, 31.0),
        (8, {"strategy": "exponential"}, 1 + 2 + 4 + 8 + 16 + 32 + 60 + 60),
        (3, {"strategy": "fixed", "initial_delay": 2.0}, 6.0),
        (4, {"strategy": "linear", "initial_delay": 1.0, "max_delay": 3.0}, 1 + 2 + 3 + 3),
        (3, {"strategy": "linear", "initial_delay": 0.0}, 0.0),
        (1000, {"strategy": "exponential", "max_delay": 10.0}, 1 + 2 + 4 + 8 + 10 * 996),
    ],
)
def test_worst_case_total(retries: int, knobs: dict[str, object], expected: float) -> None:
    """worst_case_total is the sum of the first k capped, unjittered delays."""
    assert worst_case_total(retries, **knobs) == expected  # type: ignore[arg-type]


def test_worst_case_total_ignores_jitter() -> None:
    """Jitter only shortens waits, so the worst case is the unjittered sum."""
    settings = BackoffSettings(strategy="exponential", jitter="full")
    assert settings.worst_case_total(3) == 7.0


def test_defaults_are_exponential_one_two_sixty_no_jitter() -> None:
    """BackoffSettings() is exponential from 1 s, doubling, capped at 60 s, no jitter."""
    assert BackoffSettings() == BackoffSettings(
        strategy="exponential", initial_delay=1.0, multiplier=2.0, max_delay=60.0, jitter="none"
    )


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"strategy": "random"}, "backoff strategy must be one of fixed, linear, exponential"),
        ({"strategy": "fixed", "jitter": "some"}, "jitter must be one of none, full, equal"),
        ({"strategy": "fixed", "initial_delay": -1.0}, "initial_delay must be"),
        ({"strategy": "fixed", "initial_delay": math.nan}, "initial_delay must be"),
        ({"strategy": "fixed", "max_delay": math.inf}, "max_delay must be"),
        ({"strategy": "fixed", "max_delay": -0.5}, "max_delay must be"),
        ({"strategy": "exponential", "multiplier": 0.5}, "multiplier must be"),
        ({"strategy": "exponential", "multiplier": math.inf}, "multiplier must be"),
    ],
)
def test_invalid_knobs_raise_value_error_at_once(knobs: dict[str, object], message: str) -> None:
    """Bad knobs raise ValueError when delays() is called, before any delay is drawn."""
    with pytest.raises(ValueError, match=message):
        delays(**knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -3])
def test_delay_numbers_start_at_one(n: int) -> None:
    """Retry numbers are 1-based; asking for retry 0 is a programming error."""
    with pytest.raises(ValueError, match="retry number must be >= 1"):
        BackoffSettings().delay(n)


def test_negative_retry_count_is_rejected() -> None:
    """worst_case_total of a negative number of retries is an error, not zero."""
    with pytest.raises(ValueError, match="retries must be >= 0"):
        worst_case_total(-1, strategy="fixed")


def test_settings_are_frozen() -> None:
    """BackoffSettings cannot be changed after validation."""
    settings = BackoffSettings()
    with pytest.raises(AttributeError):
        settings.max_delay = 1.0  # type: ignore[misc]
