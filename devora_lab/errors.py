"""Every error devora_lab raises, in one tree.

Each error says what was wrong and, in ``fix``, what to do about it; both appear in
``str(error)``. Catch ``DevoraError`` to handle anything the package raises on purpose.

::

    DevoraError
    ├── ConfigError                 a setting is unknown, mistyped or out of range
    │   └── SecretInConfigError     an API key was put in a file instead of the environment
    ├── WorkspaceError              the workspace folder cannot be created, read or written
    ├── EventLogError               the event log cannot be written or read
    │   ├── EventSchemaError        an event or a row does not fit the schema
    │   └── QueryError              a query over the event log failed
    ├── TraceImportError            an external trace file cannot be imported
    └── ExportError                 events cannot be exported to the requested format

Warnings (never exceptions, so that a reader keeps going):

    DevoraWarning
    └── CorruptSegmentWarning       a segment file was skipped because it is damaged
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptSegmentWarning",
    "DevoraError",
    "DevoraWarning",
    "EventLogError",
    "EventSchemaError",
    "ExportError",
    "QueryError",
    "SecretInConfigError",
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


class ConfigError(DevoraError):
    """A setting is unknown, has the wrong type or is out of range."""


class SecretInConfigError(ConfigError):
    """An API key was written into a settings file; keys come from the environment only."""


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


class DevoraWarning(UserWarning):
    """Base of the warnings devora_lab issues."""


class CorruptSegmentWarning(DevoraWarning):
    """A segment of the event log is damaged and was skipped; the others were read."""
