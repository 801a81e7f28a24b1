"""How a step fails when its code raises nothing: a non-zero return, missing keys."""

from __future__ import annotations

from collections.abc import Sequence

from .problems import Framework0Error

__all__ = ["MissingContextKeys", "StepFailure", "StepReturnedNonZero"]


class StepFailure(Framework0Error):
    """A step finished without raising but did not succeed."""

    __module__ = "framework0_errors"


class StepReturnedNonZero(StepFailure):
    """The step's code returned something other than 0 or None."""

    __module__ = "framework0_errors"

    def __init__(self, step: str, return_code: object) -> None:
        self.step = step
        self.return_code = return_code
        what = (
            f"returned {return_code}"
            if isinstance(return_code, int)
            else f"returned {return_code!r} (expected an int, 0 for success)"
        )
        super().__init__(f"step '{step}' {what}")


class MissingContextKeys(StepFailure):
    """The step did not set the Context keys its ``success.ctx_has_keys`` requires."""

    __module__ = "framework0_errors"

    def __init__(self, step: str, keys: Sequence[str]) -> None:
        self.step = step
        self.keys = tuple(keys)
        super().__init__(
            f"step '{step}' did not set required context key(s): {', '.join(self.keys)}"
        )
