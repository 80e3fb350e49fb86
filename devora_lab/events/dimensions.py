"""The dimensions every analysis may group or filter the log by.

A user names a dimension (``model``, ``agent``, ``week`` ...); the name maps to a fixed SQL
expression over the ``events`` view, so nothing a user types is ever formatted into SQL. One
table shared by costs, monitoring and the notebooks keeps "by model" meaning the same
everywhere: the model that answered, or the one asked for when nothing answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from devora_lab.errors import ConfigError

__all__ = ["DIMENSIONS", "dimension_sql"]

#: Dimension name → SQL expression over the ``events`` view (UTC calendar periods).
DIMENSIONS: Final[Mapping[str, str]] = {
    "model": "coalesce(response_model, request_model)",
    "requested_model": "request_model",
    "provider": "provider",
    "agent": "agent",
    "user": "user_id",
    "session": "session_id",
    "template": "template_name",
    "template_version": "template_name || '@' || template_version",
    "experiment": "experiment",
    "variant": "experiment || ':' || variant",
    "kind": "kind",
    "status": "status",
    "error_type": "error_type",
    "cache_outcome": "cache_outcome",
    "hour": "date_trunc('hour', ts)",
    "day": "CAST(date_trunc('day', ts AT TIME ZONE 'UTC') AS DATE)",
    "week": "CAST(date_trunc('week', ts AT TIME ZONE 'UTC') AS DATE)",
    "month": "CAST(date_trunc('month', ts AT TIME ZONE 'UTC') AS DATE)",
}


def dimension_sql(name: str) -> str:
    """The SQL expression of dimension ``name``; a ``ConfigError`` listing the valid names
    when it is unknown."""
    try:
        return DIMENSIONS[name]
    except KeyError:
        raise ConfigError(f"unknown dimension {name!r}",
                          fix=f"use one of {', '.join(DIMENSIONS)}") from None
