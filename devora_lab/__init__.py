"""devora_lab: every LLM call cached, retried, priced, budgeted and logged; a workbench on top.

The names below are the public API. The LLM client is imported on first use, so that
``import devora_lab`` stays fast for code that only writes events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devora_lab._lazy import lazy_exports
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
    "devora_lab.agents": ("Agent",),
    "devora_lab.lab": ("Lab",),
    "devora_lab.llm.client": ("AsyncClient", "Client"),
    "devora_lab.llm.driver": ("Tags",),
    "devora_lab.llm.types": ("Completion", "Usage"),
    "devora_lab.workspace": ("Workspace",),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY, __all__)
