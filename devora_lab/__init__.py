"""devora_lab: every LLM call cached, retried, priced, budgeted and logged; a workbench on top.

The names below are the public API. The LLM client is imported on first use, so that
``import devora_lab`` stays fast for code that only writes events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devora_lab.errors import DevoraError
from devora_lab.events import Event, EventKind, EventLog

if TYPE_CHECKING:
    from devora_lab.agents import Agent
    from devora_lab.lab import Lab
    from devora_lab.llm.client import AsyncClient, Client
    from devora_lab.llm.driver import Tags
    from devora_lab.llm.types import Completion, Usage
    from devora_lab.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AsyncClient",
    "Client",
    "Completion",
    "DevoraError",
    "Event",
    "EventKind",
    "EventLog",
    "Lab",
    "Tags",
    "Usage",
    "Workspace",
    "__version__",
]

_LAZY = {
    "Agent": "devora_lab.agents",
    "Lab": "devora_lab.lab",
    "AsyncClient": "devora_lab.llm.client",
    "Client": "devora_lab.llm.client",
    "Tags": "devora_lab.llm.driver",
    "Completion": "devora_lab.llm.types",
    "Usage": "devora_lab.llm.types",
    "Workspace": "devora_lab.workspace",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'devora_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
