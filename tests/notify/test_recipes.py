"""Notifications from real recipe runs, delivered to real servers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from ..conftest import CliResult, Project
from .conftest import HttpSink, MailSink

M = "tests.chain.scriptlets"


def _recipe(hook: str, slack: str, smtp_port: int, extra_step: str = "") -> str:
    return f"""
error_handling:
  on_failure: continue
  notifications:
    flush_timeout: 3
    send_retries: 0
    channels:
      hook:
        type: webhook
        url: "{hook}"
        headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
        timeout: 1
      team:
        type: slack
        webhook_url: "{slack}"
      mail:
        type: email
        host: 127.0.0.1
        port: {smtp_port}
        from: framework0@example.test
        to: [oncall@example.test]
    routes:
      - match: {{min_severity: LOW, outcomes: [failed]}}
        channels: [hook, team, mail]
steps:
  - name: charge
    module: {M}
    function: flaky
    args: {{name: charge, fail_times: 5, password: pa55-w0rd-arg}}
    error_handling:
      retry: {{max_attempts: 2, initial_delay: 0}}
{extra_step}"""


def test_failure_reaches_every_channel_once_without_secrets(
    project: Project,
    run_cli: Callable[..., CliResult],
    http_sink: HttpSink,
    smtp_sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One failing step: one webhook post, one Slack post, one mail; no secret anywhere."""
    monkeypatch.setenv("HOOK_TOKEN", "tok-env-secret-123")
    text = _recipe(http_sink.url("/hook"), http_sink.url("/slack"), smtp_sink.port)
    result = run_cli("run", project.recipe(text), "--report", "report.json")
    assert result.code == 1
    assert http_sink.wait_for(2)
    paths = sorted(r.path for r in http_sink.requests)
    assert paths == ["/hook", "/slack"]
    assert len(smtp_sink.messages) == 1
    hook = next(r for r in http_sink.requests if r.path == "/hook")
    assert hook.headers["Authorization"] == "Bearer tok-env-secret-123"
    body = hook.json
    report = json.loads((project.root / "report.json").read_text())
    flat = json.dumps(body)
    for expected in ("charge", report["run_id"], "ConnectionError", "NETWORK", "failed"):
        assert expected in flat
    slack = next(r for r in http_sink.requests if r.path == "/slack").json
    assert "charge" in slack["text"]
    mail = smtp_sink.messages[0]
    assert "charge" in str(mail["Subject"])
    everything = "\n".join([*http_sink.bodies(), mail.as_string(), json.dumps(report)])
    assert "pa55-w0rd-arg" not in everything
    assert "tok-env-secret-123" not in mail.as_string() + json.dumps(body) + json.dumps(report)
    channels = report["notifications"]["channels"]
    assert {name: c["sent"] for name, c in channels.items()} == {"hook": 1, "team": 1, "mail": 1}


def test_unreachable_webhook_changes_nothing_but_the_report(
    project: Project,
    run_cli: Callable[..., CliResult],
    http_sink: HttpSink,
    smtp_sink: MailSink,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A webhook on a closed port: same exit code, bounded delay, failure in the report."""
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    dead = f"http://127.0.0.1:{closed_port}/hook"
    text = _recipe(dead, http_sink.url("/slack"), smtp_sink.port)
    start = time.monotonic()
    result = run_cli("run", project.recipe(text), "--report", "report.json")
    elapsed = time.monotonic() - start
    assert result.code == 1
    assert elapsed < 3 + 2  # the flush bound, plus the run itself
    report = json.loads((project.root / "report.json").read_text())
    hook = report["notifications"]["channels"]["hook"]
    assert hook["sent"] == 0
    assert hook["failed"] + hook["undelivered"] == 1
    assert report["notifications"]["channels"]["team"]["sent"] == 1


def test_missing_env_var_is_a_validation_error(
    project: Project, run_cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ${VAR} that is not set stops the run before it starts, naming the variable."""
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    text = _recipe("http://127.0.0.1:9/h", "http://127.0.0.1:9/s", 25)
    result = run_cli("run", project.recipe(text))
    assert result.code == 2
    assert "HOOK_TOKEN" in result.err
