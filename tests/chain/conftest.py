"""Fixtures for running recipes with error handling on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from framework0_errors.testing import FakeClock, fake_time


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Every chain built during the test waits on this clock, instantly."""
    with fake_time() as fake:
        yield fake
