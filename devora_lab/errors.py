"""Every error devora_lab raises, in one tree.

Each error says what was wrong and, in ``fix``, what to do about it; both appear in
``str(error)``. Catch ``DevoraError`` to handle anything the package raises on purpose.

::

    DevoraError
    ├── ConfigError                 a setting is unknown, mistyped or out of range
    │   ├── SecretInConfigError     an API key was put in a file instead of the environment
    │   ├── PriceBookError          a price book file is unreadable or malformed
    │   └── AlertRuleError          an alert rule or sink is malformed
    ├── WorkspaceError              the workspace folder cannot be created, read or written
    ├── EventLogError               the event log cannot be written or read
    │   ├── EventSchemaError        an event or a row does not fit the schema
    │   └── QueryError              a query over the event log failed
    ├── TraceImportError            an external trace file cannot be imported
    ├── ExportError                 events cannot be exported to the requested format
    ├── ReportError                 a report notebook failed to run (cell, error, kept output)
    ├── ModelRoutingError           no provider is configured for a model
    ├── CacheUnavailableError       the cache store cannot be reached to delete or clear
    ├── ProviderError               a provider failed to answer (status, retryable, retry_after)
    │   ├── ProviderConnectionError connection refused, reset or closed early
    │   ├── ProviderTimeoutError    no answer within the timeout
    │   ├── RateLimitError          429: too many requests or tokens
    │   ├── ProviderOverloadedError 5xx and Anthropic's 529: the provider is struggling
    │   ├── AuthenticationError     401/403: the key is missing, wrong or not allowed
    │   ├── BadRequestError         4xx: the request itself is wrong (not retried)
    │   │   └── ContextWindowError  the prompt does not fit the model's context window
    │   ├── MalformedResponseError  the answer could not be parsed
    │   └── StreamInterruptedError  a stream broke after text arrived (carries partial_text)
    ├── AllModelsFailedError        every model in the fallback chain failed (carries errors)
    └── BudgetExceededError         a hard budget refused a call before it was sent

Warnings (never exceptions, so that a reader keeps going):

    DevoraWarning
    └── CorruptSegmentWarning       a segment file was skipped because it is damaged
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AlertRuleError",
    "AllModelsFailedError",
    "BudgetExceededError",
    "AuthenticationError",
    "BadRequestError",
    "CacheUnavailableError",
    "ConfigError",
    "ContextWindowError",
    "CorruptSegmentWarning",
    "DevoraError",
    "DevoraWarning",
    "EventLogError",
    "EventSchemaError",
    "ExportError",
    "MalformedResponseError",
    "ModelRoutingError",
    "PriceBookError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderOverloadedError",
    "ProviderTimeoutError",
    "QueryError",
    "RateLimitError",
    "ReportError",
    "SecretInConfigError",
    "StreamInterruptedError",
    "TraceImportError",
    "WorkspaceError",
]


class DevoraError(Exception):
    """Base of every error devora_lab raises on purpose.

    ``message`` says what was wrong; ``fix`` says how to put it right.
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        if self.fix:
            return f"{self.message} (fix: {self.fix})"
        return self.message


class ConfigError(DevoraError, ValueError):
    """A setting is unknown, has the wrong type or is out of range (also a ``ValueError``)."""


class SecretInConfigError(ConfigError):
    """An API key was written into a settings file; keys come from the environment only."""


class PriceBookError(ConfigError):
    """A price book (ours, an override, or LiteLLM's map) is unreadable or malformed."""


class AlertRuleError(ConfigError):
    """An alert rule or notification sink is malformed (names the rule and the field)."""


class WorkspaceError(DevoraError):
    """The workspace folder cannot be created, read or written."""


class EventLogError(DevoraError):
    """The event log cannot be written or read."""


class EventSchemaError(EventLogError):
    """An event, or a row being imported, does not fit the event schema."""


class QueryError(EventLogError):
    """A query over the event log failed."""


class TraceImportError(DevoraError):
    """An external trace file cannot be imported."""


class ExportError(DevoraError):
    """Events cannot be exported in the requested format or place."""


class ReportError(DevoraError):
    """A report notebook could not be found, run or exported.

    When a cell failed, ``cell_index`` (0-based, in the source notebook), ``ename`` and
    ``evalue`` say which and why, and ``notebook``/``html`` point at the executed notebook
    kept as the failure report, so the traceback can be read where it happened.
    """

    def __init__(self, message: str, *, report: str | None = None, cell_index: int | None = None,
                 ename: str | None = None, evalue: str | None = None,
                 notebook: Path | None = None, html: Path | None = None,
                 fix: str | None = None) -> None:
        self.report = report
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.notebook = notebook
        self.html = html
        super().__init__(message, fix=fix)


class CacheUnavailableError(DevoraError):
    """The cache store (Redis, the SQLite file) cannot be reached for a delete or clear.

    Lookups and stores never raise this: an unreachable cache is a miss, and the call goes
    to the provider. Invalidation must not fail silently, or stale answers would be served.
    """


class ModelRoutingError(DevoraError):
    """No provider is configured for the requested model."""


class ProviderError(DevoraError):
    """A provider failed to answer.

    ``retryable`` says whether the same request may succeed later; ``retry_after`` is the
    wait in seconds the provider asked for, if any. Messages never contain API keys.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        super().__init__(message, fix=fix)


class ProviderConnectionError(ProviderError):
    """The connection was refused, reset or closed before a full answer."""

    default_retryable = True


class ProviderTimeoutError(ProviderError):
    """No answer arrived within the timeout."""

    default_retryable = True


class RateLimitError(ProviderError):
    """HTTP 429: the provider asks us to slow down."""

    default_retryable = True


class ProviderOverloadedError(ProviderError):
    """HTTP 5xx or 529: the provider is failing or overloaded."""

    default_retryable = True


class AuthenticationError(ProviderError):
    """HTTP 401/403: the API key is missing, wrong, or lacks access to the model."""


class BadRequestError(ProviderError):
    """HTTP 4xx: the request is wrong and repeating it will not help."""


class ContextWindowError(BadRequestError):
    """The prompt does not fit the model's context window."""


class MalformedResponseError(ProviderError):
    """The provider's answer could not be parsed."""

    default_retryable = True


class StreamInterruptedError(ProviderError):
    """A stream broke after some text was received; ``partial_text`` holds that text."""

    default_retryable = False

    def __init__(self, message: str, *, partial_text: str, **context: Any) -> None:
        self.partial_text = partial_text
        super().__init__(message, **context)


class AllModelsFailedError(DevoraError):
    """Every model of the fallback chain failed; ``errors`` holds the last error of each."""

    def __init__(self, message: str, *, errors: list[ProviderError],
                 fix: str | None = None) -> None:
        self.errors = errors
        super().__init__(message, fix=fix)


class BudgetExceededError(DevoraError):
    """A hard budget refused a call before it was sent: its worst-case cost
    (``reserved_usd``) would have taken ``budget`` past its limit for the period."""

    def __init__(self, message: str, *, budget: str, limit_usd: float, spent_usd: float,
                 reserved_usd: float, fix: str | None = None) -> None:
        self.budget = budget
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        super().__init__(message, fix=fix)


class DevoraWarning(UserWarning):
    """Base of the warnings devora_lab issues."""


class CorruptSegmentWarning(DevoraWarning):
    """A segment of the event log is damaged and was skipped; the others were read."""
