"""Where alert notifications go: the log, a webhook (Slack-compatible), email over SMTP.

A notification must never block or break the code that raised it (an agent crossing a
budget, a cron check): the webhook and email sinks hand each notification to their own
background thread, which retries with backoff and gives up with a log line. ``flush``
waits for the queue to drain (the CLI calls it before exiting); ``close`` stops the thread.

Webhook URLs (Slack's carry the token in the path) and SMTP passwords are secrets: they are
read from the environment, and no log line or error names more than the URL's host.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from devora_lab.errors import AlertRuleError
from devora_lab.monitoring.rules import (
    EmailSinkConfig,
    LogSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
)

__all__ = ["Dispatcher", "EmailSink", "LogSink", "Notification", "Sink", "WebhookSink",
           "build_sinks", "slack_body"]

log = logging.getLogger("devora_lab.alerts")

_QUEUE_SIZE: Final = 1_000
_EMOJI: Final = {"critical": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert state change or budget threshold, as every sink receives it."""

    name: str
    state: str  # "firing" or "resolved"
    severity: str
    summary: str
    source: str = "alert"  # "alert" or "budget"
    group: str | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        where = f" [{self.group}]" if self.group else ""
        return f"{self.state.upper()} {self.severity}: {self.name}{where}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "severity": self.severity,
                "summary": self.summary, "source": self.source, "group": self.group,
                "metric": self.metric, "value": self.value, "threshold": self.threshold,
                "ts": self.ts.isoformat(), "details": dict(self.details)}


def slack_body(note: Notification) -> dict[str, Any]:
    """A body Slack's incoming webhooks accept (``text`` as the fallback, ``blocks`` for the
    layout); Mattermost, Rocket.Chat and Teams' Slack-compatible hooks read ``text``."""
    icon = ":white_check_mark:" if note.state == "resolved" else _EMOJI.get(note.severity, "")
    facts = [f"*{key}*: {value}" for key, value in (
        ("metric", note.metric), ("value", _fmt(note.value)), ("threshold", _fmt(note.threshold)),
        ("group", note.group), ("source", note.source)) if value not in (None, "")]
    return {
        "text": f"{icon} {note.title}: {note.summary}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": f"{icon} *{note.title}*\n{note.summary}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)
                                              or note.source}]},
        ],
    }


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:,.6g}"


class Sink(Protocol):
    """Receives notifications; must return at once and never raise."""

    def send(self, note: Notification) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self) -> None: ...


class LogSink:
    """Writes each notification to the ``devora_lab.alerts`` logger."""

    def __init__(self, level: str = "warning") -> None:
        self.level = getattr(logging, level.upper())

    def send(self, note: Notification) -> None:
        level = logging.INFO if note.state == "resolved" else self.level
        log.log(level, "%s: %s", note.title, note.summary)

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self) -> None:
        return None


class _BackgroundSink:
    """A queue and a daemon thread delivering from it, with retries and backoff."""

    name = "sink"

    def __init__(self, retries: int, backoff_s: float = 0.5) -> None:
        self.retries = retries
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, note: Notification) -> None:
        self._start()
        try:
            self._queue.put_nowait(note)
        except queue.Full:
            self.failed += 1
            log.error("%s: %d notifications waiting; dropped %s", self.name, _QUEUE_SIZE,
                      note.title)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"devora-{self.name}",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            note = self._queue.get()
            try:
                if note is None:
                    return
                self._deliver_with_retries(note)
            finally:
                self._queue.task_done()

    def _deliver_with_retries(self, note: Notification) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._deliver(note)
            except Exception as exc:  # noqa: BLE001 - a sink must never raise into its caller
                if attempt == self.retries or not self._retryable(exc):
                    self.failed += 1
                    log.error("%s: could not deliver %s after %d attempt(s): %s", self.name,
                              note.title, attempt + 1, self._describe(exc))
                    return
                time.sleep(self.backoff_s * 2**attempt)
            else:
                self.delivered += 1
                return

    def _deliver(self, note: Notification) -> None:
        raise NotImplementedError

    def _retryable(self, exc: Exception) -> bool:
        return True

    def _describe(self, exc: Exception) -> str:
        return type(exc).__name__


class WebhookSink(_BackgroundSink):
    """POSTs a Slack-compatible (or plain JSON) body; retries connection errors, timeouts,
    429 and 5xx answers; other 4xx answers are final (the hook is wrong, not busy)."""

    def __init__(self, url: str, *, format: str = "slack", timeout_s: float = 5.0,
                 retries: int = 3, backoff_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(retries, backoff_s)
        self._url = url
        self.format = format
        self.name = f"webhook {urlsplit(url).hostname or '?'}"
        self._timeout = httpx.Timeout(timeout_s)
        # The transport, not an httpx.Client: the client logs every request's full URL at
        # INFO, and a Slack webhook's path is its secret.
        self._transport = transport or httpx.HTTPTransport()

    def _deliver(self, note: Notification) -> None:
        body = slack_body(note) if self.format == "slack" else note.as_dict()
        request = httpx.Request("POST", self._url, json=body,
                                extensions={"timeout": self._timeout.as_dict()})
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        if response.status_code >= 300:
            raise _HTTPStatusError(response.status_code)

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, _HTTPStatusError):
            return exc.status == 429 or exc.status >= 500
        return isinstance(exc, httpx.TransportError)

    def _describe(self, exc: Exception) -> str:
        # httpx's messages can quote the URL, whose path is Slack's secret: name the type only
        return f"HTTP {exc.status}" if isinstance(exc, _HTTPStatusError) else type(exc).__name__

    def close(self) -> None:
        super().close()
        self._transport.close()


class _HTTPStatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class EmailSink(_BackgroundSink):
    """Sends one plain-text email per notification over SMTP (STARTTLS and login optional;
    the password comes from the environment variable the config names)."""

    def __init__(self, config: EmailSinkConfig, *, password: str | None = None,
                 retries: int = 2, backoff_s: float = 1.0) -> None:
        super().__init__(retries, backoff_s)
        self.config = config
        self._password = password
        self.name = f"email {config.host}:{config.port}"

    def _deliver(self, note: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = f"[devora-lab] {note.title}"
        message["From"] = self.config.from_addr
        message["To"] = ", ".join(self.config.to)
        lines = [note.summary, ""] + [f"{k}: {v}" for k, v in note.as_dict().items()
                                      if v not in (None, "", {}) and k != "summary"]
        message.set_content("\n".join(lines))
        with smtplib.SMTP(self.config.host, self.config.port,
                          timeout=self.config.timeout_s) as smtp:
            if self.config.starttls:
                smtp.starttls()
            if self.config.username and self._password is not None:
                smtp.login(self.config.username, self._password)
            smtp.send_message(message)

    def _retryable(self, exc: Exception) -> bool:
        return not isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPRecipientsRefused)


def build_sinks(configs: Iterable[SinkConfig],
                env: Mapping[str, str] | None = None) -> list[Sink]:
    """Sinks for ``configs``; secrets are read from ``env`` (default: the environment)."""
    import os

    source = os.environ if env is None else env
    sinks: list[Sink] = []
    for config in configs:
        if isinstance(config, LogSinkConfig):
            sinks.append(LogSink(config.level))
        elif isinstance(config, WebhookSinkConfig):
            sinks.append(WebhookSink(config.resolved_url(source), format=config.format,
                                     timeout_s=config.timeout_s, retries=config.retries))
        else:
            password = source.get(config.password_env) if config.password_env else None
            if config.password_env and not password:
                raise AlertRuleError(
                    f"the email sink's password is missing (${config.password_env} is empty)",
                    fix=f"set ${config.password_env} to the SMTP password")
            sinks.append(EmailSink(config, password=password))
    return sinks


class Dispatcher:
    """Fans each notification out to every sink; one failing sink never stops the others.

    Also the ``on_alert`` callback of a ``BudgetGuard``: budget thresholds reach the same
    sinks as the alert rules."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)

    def send(self, note: Notification) -> None:
        for sink in self.sinks:
            try:
                sink.send(note)
            except Exception:  # one broken sink must not silence the rest
                log.exception("alert sink %s failed", type(sink).__name__)

    def budget_alert(self, alert: Any) -> None:
        """Forward a ``devora_lab.costs.budgets.BudgetAlert``."""
        share = alert.spent_usd / alert.limit_usd if alert.limit_usd else 0.0
        self.send(Notification(
            name=f"budget {alert.budget}", state="firing", severity=alert.severity,
            source="budget", group=alert.key or None, metric="cost_usd", value=alert.spent_usd,
            threshold=alert.threshold * alert.limit_usd,
            summary=(f"${alert.spent_usd:,.2f} spent of the ${alert.limit_usd:,.2f} "
                     f"{alert.period} budget ({share:.0%}), crossing {alert.threshold:.0%}"),
            details={"period_start": alert.period_start.isoformat(),
                     "period_end": alert.period_end.isoformat()}))

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        # every sink gets its turn: one slow sink must not stop the others being waited for
        done = [sink.flush(max(0.0, deadline - time.monotonic())) for sink in self.sinks]
        return all(done)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __call__(self, alert: Any) -> None:
        self.budget_alert(alert)
