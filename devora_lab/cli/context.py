"""Shared helpers of the CLI commands: opening the workspace, parsing times, a console."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from devora_lab.config import load_settings
from devora_lab.errors import ConfigError
from devora_lab.workspace import Workspace

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "open_workspace", "parse_time"]


def open_workspace(args: argparse.Namespace, *, create: bool = True) -> Workspace:
    settings = load_settings(
        getattr(args, "workspace", None), config_file=getattr(args, "config", None)
    )
    workspace = Workspace(settings=settings)
    return workspace.ensure() if create else workspace


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 date or time; naive values are taken as UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not an ISO 8601 date or time",
            fix="write e.g. 2026-11-23 or 2026-11-23T14:00:00Z",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def console() -> Console:
    import sys

    from rich.console import Console

    # Pipes and CI logs get a width that fits the tables instead of the 80-column default.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)
