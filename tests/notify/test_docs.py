"""The configuration example in docs/notifications.md is valid and builds a notifier."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from framework0_errors.config.models import NotificationsConfig, StepErrorHandling
from framework0_errors.notify import Notifier

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def test_documented_example_builds() -> None:
    """The YAML example validates, and every channel and route in it can be built."""
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    data: Any = YAML(typ="safe").load(io.StringIO(block))
    config = NotificationsConfig.model_validate(data["error_handling"]["notifications"])
    StepErrorHandling.model_validate(data["steps"][0]["error_handling"])
    assert {c.type for c in config.channels.values()} == {"log", "webhook", "slack", "email"}

    environ = dict.fromkeys(
        ["HOOK_ID", "HOOK_TOKEN", "SMTP_USER", "SMTP_PASSWORD"], "value-1234"
    ) | {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"}
    with Notifier.from_config(config, environ=environ) as notifier:
        assert notifier.channels == ("audit_log", "incident_hook", "ops_slack", "ops_email")
