"""The event schema: one wide row per event, every dimension denormalised onto it.

``COLUMNS`` is the single source of truth: the ``Event`` dataclass, the JSON-lines segments,
the Parquet files and the DuckDB ``events`` view are all derived from it, and a test checks
that they agree. LLM fields follow the OpenTelemetry GenAI semantic conventions, with the
``gen_ai.`` prefix and dots dropped (``gen_ai.request.model`` -> ``request_model``).

Adding a column is always safe: readers union files by column name and fill a column an
older file lacks with NULL. Never rename or retype a column; add a new one instead and bump
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import enum
import itertools
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, TypedDict, Unpack

from devora_lab.errors import EventSchemaError

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "SCHEMA_VERSION",
    "Column",
    "Event",
    "EventFields",
    "EventKind",
    "new_id",
    "utc_now",
]

SCHEMA_VERSION: Final = 1


class EventKind(enum.StrEnum):
    """What an event records. Stored as its string value in the ``kind`` column."""

    LLM_CALL = "llm.call"  # one logical call as the caller saw it, after retries and fallback
    LLM_ATTEMPT = "llm.attempt"  # one HTTP request to one provider
    CACHE = "cache"  # a cache lookup and its outcome
    EMBEDDING = "embedding"  # one batch of texts embedded
    RETRIEVAL = "retrieval"  # one RAG query
    EXPERIMENT_EXPOSURE = "experiment.exposure"  # a unit's first exposure to a variant
    BUDGET = "budget"  # a budget threshold crossed or a call refused
    ALERT = "alert"  # an alert fired or resolved


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, DuckDB type, OpenTelemetry attribute (if any) and meaning."""

    name: str
    duckdb_type: str
    description: str
    otel: str | None = None


def _c(name: str, duckdb_type: str, description: str, otel: str | None = None) -> Column:
    return Column(name, duckdb_type, description, otel)


COLUMNS: Final[tuple[Column, ...]] = (
    # identity and time
    _c("event_id", "VARCHAR", "Unique id of this event."),
    _c("kind", "VARCHAR", "What the event records: one of EventKind's values."),
    _c("ts", "TIMESTAMPTZ", "When the event happened (the end of the operation), UTC, µs."),
    _c("started_at", "TIMESTAMPTZ", "When the operation started, UTC, µs; NULL if instant."),
    _c("schema_version", "INTEGER", "Version of this schema the writer used."),
    _c("request_id", "VARCHAR", "Id of the logical call; its attempts and cache lookups share it."),
    _c("trace_id", "VARCHAR", "Id tying together all events of one agent task."),
    _c("parent_id", "VARCHAR", "event_id or request_id of the operation that caused this one."),
    # who and why
    _c("user_id", "VARCHAR", "End user on whose behalf the call was made."),
    _c("session_id", "VARCHAR", "Conversation or session id."),
    _c("agent", "VARCHAR", "Name of the agent that made the call.", "gen_ai.agent.name"),
    _c("experiment", "VARCHAR", "Experiment the call belongs to."),
    _c("variant", "VARCHAR", "Experiment variant applied to the call."),
    _c("template_name", "VARCHAR", "Prompt template the messages were rendered from."),
    _c("template_version", "VARCHAR", "Version of that template."),
    # the model call
    _c("operation", "VARCHAR", "chat, text_completion or embeddings.", "gen_ai.operation.name"),
    _c("provider", "VARCHAR", "openai, anthropic, openrouter, ...", "gen_ai.provider.name"),
    _c("request_model", "VARCHAR", "Model the caller asked for.", "gen_ai.request.model"),
    _c("response_model", "VARCHAR", "Model that answered.", "gen_ai.response.model"),
    _c("response_id", "VARCHAR", "Provider's id of the response.", "gen_ai.response.id"),
    _c(
        "input_tokens",
        "BIGINT",
        "All input tokens, cache reads and writes included.",
        "gen_ai.usage.input_tokens",
    ),
    _c("output_tokens", "BIGINT", "Output tokens.", "gen_ai.usage.output_tokens"),
    _c(
        "cached_input_tokens",
        "BIGINT",
        "Input tokens read from the provider's prompt cache (part of input_tokens).",
        "gen_ai.usage.cache_read.input_tokens",
    ),
    _c(
        "cache_creation_input_tokens",
        "BIGINT",
        "Input tokens written to the provider's prompt cache (part of input_tokens).",
        "gen_ai.usage.cache_creation.input_tokens",
    ),
    _c("temperature", "DOUBLE", "Sampling temperature requested.", "gen_ai.request.temperature"),
    _c("max_tokens", "BIGINT", "Output token limit requested.", "gen_ai.request.max_tokens"),
    _c("finish_reason", "VARCHAR", "Why the model stopped.", "gen_ai.response.finish_reasons"),
    _c("streamed", "BOOLEAN", "Whether the response was streamed."),
    # money
    _c("cost_usd", "DOUBLE", "Cost in US dollars; NULL when the model is not in the price book."),
    _c(
        "cost_status", "VARCHAR", "priced, unpriced (model unknown: never read as $0) or estimated."
    ),
    _c("price_book_version", "VARCHAR", "Version of the price book cost_usd was computed with."),
    # timing
    _c("latency_ms", "DOUBLE", "Duration of the operation in milliseconds."),
    _c("ttft_ms", "DOUBLE", "Time to first token in milliseconds (streams)."),
    # outcome
    _c("status", "VARCHAR", "ok or error."),
    _c("error_type", "VARCHAR", "Class of the error when status is error.", "error.type"),
    _c("error_message", "VARCHAR", "Error text with secrets redacted."),
    _c("http_status", "INTEGER", "HTTP status code of the provider's answer."),
    _c("attempt", "INTEGER", "1-based attempt number within the logical call."),
    _c("fallback_index", "INTEGER", "Position in the fallback chain; 0 is the primary model."),
    # cache
    _c("cache_outcome", "VARCHAR", "hit, miss, semantic_hit, bypass or store."),
    _c("cache_key", "VARCHAR", "Hash of the canonical request."),
    _c("saved_cost_usd", "DOUBLE", "Dollars a cache hit saved."),
    _c("saved_latency_ms", "DOUBLE", "Milliseconds a cache hit saved."),
    # content (stored per the content policy: full, hashed or none)
    _c("prompt_hash", "VARCHAR", "SHA-256 of the canonical prompt."),
    _c("response_hash", "VARCHAR", "SHA-256 of the response text."),
    _c("prompt_text", "VARCHAR", "Prompt text (only with the full content policy, redacted)."),
    _c("response_text", "VARCHAR", "Response text (only with the full content policy, redacted)."),
    # other kinds
    _c("name", "VARCHAR", "Subject of a non-model event: budget, alert rule, index, ..."),
    _c("severity", "VARCHAR", "info, warning, critical, or error for a refused call "
       "(alerts and budgets)."),
    _c("item_count", "BIGINT", "Texts embedded, chunks retrieved, and the like."),
    _c("value", "DOUBLE", "Measured value of a budget or alert event."),
    _c("threshold", "DOUBLE", "Threshold that value was compared with."),
    # provenance
    _c("host", "VARCHAR", "Host name of the writing process."),
    _c("pid", "INTEGER", "Process id of the writing process."),
    _c("sdk_version", "VARCHAR", "devora_lab version that wrote the event."),
    _c("attributes", "JSON", "Any further attributes, as a JSON object."),
)

COLUMN_NAMES: Final[tuple[str, ...]] = tuple(column.name for column in COLUMNS)
_COLUMN_SET: Final[frozenset[str]] = frozenset(COLUMN_NAMES)

_ID_PREFIX = [secrets.token_hex(6)]
_ID_COUNTER = [itertools.count()]


def _reseed_ids() -> None:
    # A forked child must not repeat its parent's ids.
    _ID_PREFIX[0] = secrets.token_hex(6)
    _ID_COUNTER[0] = itertools.count()


os.register_at_fork(after_in_child=_reseed_ids)


def new_id() -> str:
    """A unique id, cheap enough to make per event: a random process prefix and a counter."""
    return f"{_ID_PREFIX[0]}{next(_ID_COUNTER[0]):010x}"


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


class EventFields(TypedDict, total=False):
    """Keyword arguments of ``Event``: one per column, all optional but ``kind``."""

    event_id: str
    kind: EventKind | str
    ts: datetime
    started_at: datetime | None
    schema_version: int
    request_id: str | None
    trace_id: str | None
    parent_id: str | None
    user_id: str | None
    session_id: str | None
    agent: str | None
    experiment: str | None
    variant: str | None
    template_name: str | None
    template_version: str | None
    operation: str | None
    provider: str | None
    request_model: str | None
    response_model: str | None
    response_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cache_creation_input_tokens: int | None
    temperature: float | None
    max_tokens: int | None
    finish_reason: str | None
    streamed: bool | None
    cost_usd: float | None
    cost_status: str | None
    price_book_version: str | None
    latency_ms: float | None
    ttft_ms: float | None
    status: str | None
    error_type: str | None
    error_message: str | None
    http_status: int | None
    attempt: int | None
    fallback_index: int | None
    cache_outcome: str | None
    cache_key: str | None
    saved_cost_usd: float | None
    saved_latency_ms: float | None
    prompt_hash: str | None
    response_hash: str | None
    prompt_text: str | None
    response_text: str | None
    name: str | None
    severity: str | None
    item_count: int | None
    value: float | None
    threshold: float | None
    host: str | None
    pid: int | None
    sdk_version: str | None
    attributes: dict[str, Any]


class Event:
    """One row of the event log. Only ``kind`` is required; every other column defaults to NULL.

    An event keeps just the fields it was given, in one dict: the writer serialises that
    dict as it is, which keeps writing an event to a few microseconds with ~55 columns.
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]

    if TYPE_CHECKING:
        event_id: str
        kind: EventKind | str
        ts: datetime
        started_at: datetime | None
        schema_version: int
        request_id: str | None
        trace_id: str | None
        parent_id: str | None
        user_id: str | None
        session_id: str | None
        agent: str | None
        experiment: str | None
        variant: str | None
        template_name: str | None
        template_version: str | None
        operation: str | None
        provider: str | None
        request_model: str | None
        response_model: str | None
        response_id: str | None
        input_tokens: int | None
        output_tokens: int | None
        cached_input_tokens: int | None
        cache_creation_input_tokens: int | None
        temperature: float | None
        max_tokens: int | None
        finish_reason: str | None
        streamed: bool | None
        cost_usd: float | None
        cost_status: str | None
        price_book_version: str | None
        latency_ms: float | None
        ttft_ms: float | None
        status: str | None
        error_type: str | None
        error_message: str | None
        http_status: int | None
        attempt: int | None
        fallback_index: int | None
        cache_outcome: str | None
        cache_key: str | None
        saved_cost_usd: float | None
        saved_latency_ms: float | None
        prompt_hash: str | None
        response_hash: str | None
        prompt_text: str | None
        response_text: str | None
        name: str | None
        severity: str | None
        item_count: int | None
        value: float | None
        threshold: float | None
        host: str | None
        pid: int | None
        sdk_version: str | None
        attributes: dict[str, Any]

    def __init__(self, **fields: Unpack[EventFields]) -> None:
        data: dict[str, Any] = dict(fields)
        if not data.keys() <= _COLUMN_SET:
            unknown = sorted(data.keys() - _COLUMN_SET)
            raise EventSchemaError(
                f"unknown event field(s) {', '.join(unknown)}",
                fix=f"use a schema column{_suggest(unknown[0])}, or put it in attributes",
            )
        if data.get("kind") is None:
            raise EventSchemaError("an event needs a kind", fix="pass kind=EventKind.<...>")
        if "event_id" not in data:
            data["event_id"] = new_id()
        if data.get("ts") is None:
            if "ts" in data:
                raise EventSchemaError("an event's ts cannot be None",
                                       fix="leave ts out to stamp the current time")
            data["ts"] = datetime.now(timezone.utc)
        if "schema_version" not in data:
            data["schema_version"] = SCHEMA_VERSION
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name == "attributes":
            return self._data.setdefault("attributes", {})
        if name in _COLUMN_SET:
            return self._data.get(name)
        raise AttributeError(f"Event has no field {name!r}{_suggest(name)}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _COLUMN_SET:
            raise EventSchemaError(
                f"unknown event field {name}", fix=f"use a schema column{_suggest(name)}"
            )
        self._data[name] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.to_row() == other.to_row()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._data.items() if v is not None)
        return f"Event({shown})"

    @property
    def fields(self) -> dict[str, Any]:
        """The fields that were set, as the dict the writer stores (do not mutate)."""
        return self._data

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        """Build an event from a row read back from the log (unknown keys are ignored)."""
        known = {
            name: value for name, value in row.items() if name in _COLUMN_SET and value is not None
        }
        attributes = known.get("attributes")
        if isinstance(attributes, (str, bytes)):
            import orjson

            known["attributes"] = orjson.loads(attributes)
        for stamp in ("ts", "started_at"):
            value = known.get(stamp)
            if isinstance(value, datetime):
                known[stamp] = value.astimezone(timezone.utc)
        return cls(**known)

    def to_row(self) -> dict[str, Any]:
        """Every column as a plain dict (NULL columns as None, attributes as a dict)."""
        row = {name: self._data.get(name) for name in COLUMN_NAMES}
        row["attributes"] = dict(row["attributes"] or {})
        return row


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, COLUMN_NAMES, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
