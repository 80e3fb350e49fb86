"""Notification sinks against real local servers: a webhook that fails, stalls or refuses,
and an SMTP server; budget thresholds reach the same sinks as alert rules.

A sink runs in its own thread: ``send`` must return at once whatever the endpoint does, and
nothing it logs may name a webhook's path (Slack's carries the token) or a password.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from devora_lab.costs.budgets import Budget, CallScope
from devora_lab.costs.wiring import budget_guard, budget_registry
from devora_lab.monitoring.rules import EmailSinkConfig, parse_alert_config
from devora_lab.monitoring.sinks import (
    Dispatcher,
    EmailSink,
    LogSink,
    Notification,
    WebhookSink,
    build_sinks,
    slack_body,
)
from devora_lab.workspace import Workspace

from .helpers import HookServer, Recorder, SMTPServer, free_port

SECRET_PATH = "/services/T000/B000/SECRETTOKEN"
NOTE = Notification(name="error rate", state="firing", severity="critical",
                    summary="error_rate over 15m = 0.3 (> 0.05)", group="gpt-4o",
                    metric="error_rate", value=0.3, threshold=0.05)


def _webhook(url: str, *, retries: int, timeout_s: float = 5.0) -> WebhookSink:
    return WebhookSink(url, retries=retries, timeout_s=timeout_s, backoff_s=0.01)


def test_slack_body_has_text_and_blocks() -> None:
    body = slack_body(NOTE)
    assert body["text"] == (":red_circle: FIRING critical: error rate [gpt-4o]: "
                            "error_rate over 15m = 0.3 (> 0.05)")
    section, context = body["blocks"]
    assert section["type"] == "section" and "*FIRING critical: error rate [gpt-4o]*" in \
        section["text"]["text"]
    facts = context["elements"][0]["text"]
    assert "*metric*: error_rate" in facts and "*threshold*: 0.05" in facts
    resolved = slack_body(Notification(name="x", state="resolved", severity="warning",
                                       summary="back"))
    assert resolved["text"].startswith(":white_check_mark: RESOLVED warning: x")


def test_webhook_retries_server_errors_then_delivers_once() -> None:
    with HookServer(statuses=[500, 503]) as hook:
        sink = _webhook(hook.url(SECRET_PATH), retries=3)
        sink.send(NOTE)
        assert sink.flush(timeout=10)
        sink.close()
    assert hook.attempts == 3 and sink.delivered == 1 and sink.failed == 0
    (body,) = hook.bodies()
    assert body == slack_body(NOTE)
    assert hook.posts[0].path == SECRET_PATH


def test_webhook_gives_up_without_naming_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and ours, at every level
    with HookServer(default=500) as hook:
        sink = _webhook(hook.url(SECRET_PATH), retries=2)
        sink.send(NOTE)
        assert sink.flush(timeout=10)
        sink.close()
    assert hook.attempts == 3 and sink.failed == 1 and sink.delivered == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["webhook 127.0.0.1: could not deliver FIRING critical: error rate "
                      "[gpt-4o] after 3 attempt(s): HTTP 500"]
    assert "SECRETTOKEN" not in caplog.text and "/services/" not in caplog.text


def test_webhook_does_not_retry_a_client_error() -> None:
    with HookServer(default=404) as hook:
        sink = _webhook(hook.url(), retries=3)
        sink.send(NOTE)
        assert sink.flush(timeout=10)
        sink.close()
    assert hook.attempts == 1 and sink.failed == 1


def test_webhook_retries_429() -> None:
    with HookServer(statuses=[429]) as hook:
        sink = _webhook(hook.url(), retries=1)
        sink.send(NOTE)
        assert sink.flush(timeout=10)
        sink.close()
    assert hook.attempts == 2 and sink.delivered == 1


def test_a_stalled_endpoint_never_blocks_the_sender(caplog: pytest.LogCaptureFixture) -> None:
    with HookServer(hang=True) as hook:
        sink = _webhook(hook.url(SECRET_PATH), retries=0, timeout_s=0.3)
        started = time.perf_counter()
        sink.send(NOTE)
        assert time.perf_counter() - started < 0.05  # handed to the thread, not sent here
        assert not sink.flush(timeout=0.05)  # still waiting for the answer
        waited = time.perf_counter()
        assert sink.flush(timeout=5)
        assert time.perf_counter() - waited < 3  # the 0.3 s timeout, not the server's 10 s
        sink.close()
    assert hook.attempts == 1 and sink.failed == 1
    assert "ReadTimeout" in caplog.text and "SECRETTOKEN" not in caplog.text


def test_connection_refused_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    sink = _webhook(f"http://127.0.0.1:{free_port()}{SECRET_PATH}", retries=2)
    sink.send(NOTE)
    assert sink.flush(timeout=10)
    sink.close()
    assert sink.failed == 1 and sink.delivered == 0
    assert "after 3 attempt(s): ConnectError" in caplog.text
    assert "SECRETTOKEN" not in caplog.text


def test_json_format_posts_the_notification() -> None:
    with HookServer() as hook:
        sink = WebhookSink(hook.url(), format="json")
        for state in ("firing", "resolved"):
            sink.send(Notification(name="n", state=state, severity="info", summary="s"))
        assert sink.flush(timeout=10)
        sink.close()
    assert [(b["name"], b["state"], b["source"]) for b in hook.bodies()] == [
        ("n", "firing", "alert"), ("n", "resolved", "alert")]
    assert sink.delivered == 2


def test_the_dispatcher_survives_a_broken_sink(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Recorder):
        def send(self, note: Notification) -> None:
            raise RuntimeError("boom")

    recorder = Recorder()
    dispatcher = Dispatcher([Broken(), recorder])
    dispatcher.send(NOTE)
    assert recorder.notes == [NOTE] and "alert sink Broken failed" in caplog.text
    assert dispatcher.flush(timeout=1)
    dispatcher.close()


def test_dispatcher_flush_waits_for_every_sink() -> None:
    class Slow(Recorder):
        def flush(self, timeout: float = 10.0) -> bool:
            return False

    with HookServer() as hook:
        webhook = WebhookSink(hook.url())
        dispatcher = Dispatcher([Slow(), webhook])
        dispatcher.send(NOTE)
        assert dispatcher.flush(timeout=5) is False  # the slow sink timed out...
        assert webhook.delivered == 1  # ...and the webhook was still waited for
        dispatcher.close()


def test_log_sink_writes_to_the_alerts_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devora_lab.alerts")
    sink = LogSink("error")
    sink.send(NOTE)
    sink.send(Notification(name="error rate", state="resolved", severity="critical",
                           summary="back to normal"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "FIRING critical: error rate [gpt-4o]: error_rate over 15m = 0.3 "
                        "(> 0.05)"),
        (logging.INFO, "RESOLVED critical: error rate: back to normal")]


# -- email ---------------------------------------------------------------------------------


def _email(port: int, **fields: object) -> EmailSinkConfig:
    return EmailSinkConfig.model_validate({
        "type": "email", "host": "127.0.0.1", "port": port, "from_addr": "alerts@example.com",
        "to": ["oncall@example.com", "team@example.com"], "timeout_s": 5, **fields})


def test_email_is_delivered_over_smtp(caplog: pytest.LogCaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    password = "pw-7f3a9c-never-logged"
    monkeypatch.setenv("TEST_SMTP_PASSWORD", password)
    with SMTPServer() as smtp:
        config = parse_alert_config({"sink": [_email(smtp.port, username="alerts",
                                                     password_env="TEST_SMTP_PASSWORD")
                                              .model_dump()]})
        (sink,) = build_sinks(config.sinks)
        sink.send(NOTE)
        assert sink.flush(timeout=10)
        sink.close()
    (message,) = smtp.messages
    assert message["Subject"] == "[devora-lab] FIRING critical: error rate [gpt-4o]"
    assert message["To"] == "oncall@example.com, team@example.com"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes) and b"error_rate over 15m = 0.3" in body
    assert smtp.logins == [("alerts", password)]
    assert password not in caplog.text


def test_email_login_refused_is_final_and_quiet(caplog: pytest.LogCaptureFixture) -> None:
    password = "pw-0d2e-never-logged"
    with SMTPServer(accept_login=False) as smtp:
        sink = EmailSink(_email(smtp.port, username="alerts"), password=password,
                         retries=2, backoff_s=0.01)
        sink.send(NOTE)
        assert sink.flush(timeout=10)
        sink.close()
    assert smtp.auth_attempts == 1 and smtp.messages == [] and sink.failed == 1
    assert "SMTPAuthenticationError" in caplog.text and password not in caplog.text


def test_email_to_a_closed_port_is_retried_then_given_up() -> None:
    sink = EmailSink(_email(free_port()), retries=1, backoff_s=0.01)
    started = time.perf_counter()
    sink.send(NOTE)
    assert time.perf_counter() - started < 0.05
    assert sink.flush(timeout=10)
    sink.close()
    assert sink.failed == 1 and sink.delivered == 0


# -- budgets through the same sinks -------------------------------------------------------


def test_budget_thresholds_reach_the_alert_sinks(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path).ensure()
    budget_registry(workspace).set(Budget(name="daily", limit_usd=1.0))
    with HookServer() as hook:
        (tmp_path / "alerts.toml").write_text(
            f'[[sink]]\ntype = "webhook"\nurl = "{hook.url()}"\nformat = "json"\n'
            '[[sink]]\ntype = "log"\n')
        log = workspace.event_log()
        guard = budget_guard(workspace, log)
        assert guard is not None and isinstance(guard.on_alert, Dispatcher)
        hold = guard.reserve(CallScope(user_id="ann"), max_cost_usd=0.5)
        assert guard.settle(hold, actual_cost_usd=0.5) == []  # 50 %: nothing
        hold = guard.reserve(CallScope(user_id="ann"), max_cost_usd=0.4)
        (alert,) = guard.settle(hold, actual_cost_usd=0.35)  # 85 %: the 80 % threshold
        assert guard.on_alert.flush(timeout=10)
        guard.on_alert.close()
        log.close()
    assert alert.threshold == 0.8
    (body,) = hook.bodies()
    assert body["source"] == "budget" and body["name"] == "budget daily"
    assert body["state"] == "firing" and body["severity"] == "warning"
    assert body["group"] == "global" and body["value"] == pytest.approx(0.85)
    assert body["threshold"] == pytest.approx(0.8)
    assert "$0.85 spent of the $1.00 daily budget (85%), crossing 80%" in body["summary"]


def test_a_workspace_without_sinks_keeps_budget_alerts_in_the_log(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path).ensure()
    budget_registry(workspace).set(Budget(name="daily", limit_usd=1.0))
    (tmp_path / "alerts.toml").write_text(
        '[[rule]]\nname = "r"\nmetric = "errors"\nop = ">"\nthreshold = 1\n')
    guard = budget_guard(workspace, None)
    assert guard is not None and guard.on_alert is None
