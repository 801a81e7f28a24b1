"""docs/recovery.md shows the real saga recipe and the real validation message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framework0_errors.api import ResilienceConfigError, resilient

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "recovery.md").read_text(encoding="utf-8")


def test_worked_example_is_the_saga_recipe() -> None:
    """The first YAML block of the page is recipes/saga.yaml, byte for byte."""
    block = re.findall(r"```yaml\n(.*?)```", DOC, re.S)[0]
    assert block == (ROOT / "recipes" / "saga.yaml").read_text(encoding="utf-8")


def test_documented_validation_message_is_the_real_one() -> None:
    """The ResilienceConfigError shown in the page is what the call raises."""
    with pytest.raises(ResilienceConfigError) as caught:
        resilient(retry={"max_attempts": -1, "backof_strategy": "fixed"})
    assert f"framework0_errors.ResilienceConfigError: {caught.value}\n" in DOC
