"""devora_lab: every LLM call cached, retried, priced, budgeted and logged; a workbench on top."""

from __future__ import annotations

from devora_lab.errors import DevoraError
from devora_lab.events import Event, EventKind, EventLog

__version__ = "0.1.0"

__all__ = ["DevoraError", "Event", "EventKind", "EventLog", "__version__"]
