"""Print the event schema as a Markdown table (pasted into the README; a test keeps it true)."""

from __future__ import annotations

from devora_lab.events.schema import COLUMNS


def schema_markdown() -> str:
    lines = ["| column | type | OpenTelemetry GenAI attribute | meaning |", "|---|---|---|---|"]
    for column in COLUMNS:
        otel = f"`{column.otel}`" if column.otel else ""
        lines.append(f"| `{column.name}` | {column.duckdb_type} | {otel} | {column.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(schema_markdown())
