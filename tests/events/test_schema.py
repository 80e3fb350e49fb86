"""The event schema: one source of truth, strict types at write time, exact round trips."""

from __future__ import annotations

import ast
import inspect
import tempfile
import types
import typing
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devora_lab.errors import EventSchemaError
from devora_lab.events import COLUMN_NAMES, COLUMNS, Event, EventKind, EventLog
from devora_lab.events.schema import EventFields

if TYPE_CHECKING:
    from conftest import MakeLLMCall

    from devora_lab.events.store import EventStore

_PYTHON_TYPE = {"VARCHAR": str, "JSON": dict, "TIMESTAMPTZ": datetime, "INTEGER": int,
                "BIGINT": int, "DOUBLE": float, "BOOLEAN": bool}


def _declared_event_attributes() -> list[str]:
    """Names annotated in ``Event``'s ``if TYPE_CHECKING:`` block, in source order."""
    tree = ast.parse(inspect.getsource(Event).lstrip())
    block = next(node for node in ast.walk(tree) if isinstance(node, ast.If))
    return [node.target.id for node in block.body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]


# -- one source of truth ------------------------------------------------------------------


def test_column_names_follow_columns() -> None:
    assert tuple(c.name for c in COLUMNS) == COLUMN_NAMES
    assert len(set(COLUMN_NAMES)) == len(COLUMN_NAMES)


def test_event_to_row_has_exactly_the_columns_in_order() -> None:
    assert tuple(Event(kind=EventKind.LLM_CALL).to_row()) == COLUMN_NAMES


def test_event_declares_an_attribute_per_column() -> None:
    assert tuple(_declared_event_attributes()) == COLUMN_NAMES


def test_event_fields_typed_dict_keys_are_the_columns() -> None:
    assert tuple(EventFields.__annotations__) == COLUMN_NAMES
    assert EventFields.__required_keys__ == frozenset()


def test_event_fields_types_match_column_types() -> None:
    hints = typing.get_type_hints(EventFields)
    for column in COLUMNS:
        hint = hints[column.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        origins = {typing.get_origin(arg) or arg for arg in args} - {type(None)}
        assert _PYTHON_TYPE[column.duckdb_type] in origins, column.name


def test_every_column_reads_as_an_attribute() -> None:
    event = Event(kind=EventKind.CACHE, cache_outcome="hit")
    for name in COLUMN_NAMES:
        getattr(event, name)
    assert event.cache_outcome == "hit"
    assert event.input_tokens is None
    assert event.attributes == {}


def test_parquet_files_and_view_carry_the_schema(log: EventLog,
                                                make_llm_call: MakeLLMCall) -> None:
    log.write(make_llm_call())
    log.flush()
    store = log.store()
    (facts,) = store.snapshot.parquet
    assert tuple(pq.read_schema(facts.entry.path).names) == COLUMN_NAMES
    view_columns = store.arrow("SELECT * FROM events LIMIT 0").column_names
    assert tuple(view_columns) == (*COLUMN_NAMES, "date")


# -- construction -------------------------------------------------------------------------


def test_defaults_fill_identity_and_time() -> None:
    before = datetime.now(timezone.utc)
    event = Event(kind=EventKind.ALERT)
    assert event.event_id
    assert event.ts.tzinfo is not None and before <= event.ts <= datetime.now(timezone.utc)
    assert event.schema_version == 1
    assert Event(kind=EventKind.ALERT).event_id != event.event_id


def test_unknown_field_suggests_the_closest_column() -> None:
    with pytest.raises(EventSchemaError, match="did you mean input_tokens"):
        Event(kind=EventKind.LLM_CALL, input_token=12)  # type: ignore[call-arg]


def test_setting_an_unknown_attribute_suggests_the_closest_column() -> None:
    event = Event(kind=EventKind.LLM_CALL)
    with pytest.raises(EventSchemaError, match="did you mean request_model"):
        event.request_modle = "gpt-4o"


def test_reading_an_unknown_attribute_raises_attribute_error_with_suggestion() -> None:
    with pytest.raises(AttributeError, match="did you mean latency_ms"):
        _ = Event(kind=EventKind.LLM_CALL).latency_msec


def test_missing_kind_raises() -> None:
    with pytest.raises(EventSchemaError, match="kind"):
        Event(request_model="gpt-4o")
    with pytest.raises(EventSchemaError, match="kind"):
        Event(kind=None)  # type: ignore[arg-type]


# -- types are checked when an event is written --------------------------------------------

_NAIVE = datetime(2026, 1, 2, 3, 4, 5)

_WRONG_TYPES = [
    pytest.param({"input_tokens": "12"}, id="str-for-bigint"),
    pytest.param({"input_tokens": 12.5}, id="float-for-bigint"),
    pytest.param({"input_tokens": True}, id="bool-for-bigint"),
    pytest.param({"http_status": "200"}, id="str-for-integer"),
    pytest.param({"cost_usd": "0.1"}, id="str-for-double"),
    pytest.param({"streamed": 1}, id="int-for-boolean"),
    pytest.param({"request_model": 4}, id="int-for-varchar"),
    pytest.param({"attributes": ["not", "a", "dict"]}, id="list-for-json"),
    pytest.param({"attributes": {"when": object()}}, id="unserialisable-attribute"),
    pytest.param({"ts": _NAIVE}, id="naive-ts"),
    pytest.param({"ts": "2026-01-02T03:04:05+00:00"}, id="str-ts"),
    pytest.param({"started_at": _NAIVE}, id="naive-started-at"),
    pytest.param({"http_status": 2**31}, id="integer-overflow"),
    pytest.param({"input_tokens": 2**63}, id="bigint-overflow"),
    pytest.param({"input_tokens": -(2**63) - 1}, id="bigint-underflow"),
]


@pytest.mark.parametrize("fields", _WRONG_TYPES)
def test_wrong_type_is_rejected_at_write_and_nothing_is_written(
    log: EventLog, fields: dict[str, Any]
) -> None:
    event = Event(kind=EventKind.LLM_CALL, **fields)
    with pytest.raises(EventSchemaError):
        log.write(event)
    log.flush()
    assert log.store().count() == 0


def test_write_many_with_one_bad_event_writes_none(log: EventLog,
                                                   make_llm_call: MakeLLMCall) -> None:
    events = [make_llm_call(i) for i in range(5)]
    events.append(make_llm_call(5, input_tokens="many"))
    with pytest.raises(EventSchemaError, match="input_tokens"):
        log.writer().write_many(events)
    assert log.store().count() == 0


def test_schema_error_names_the_field_and_expected_type(log: EventLog) -> None:
    with pytest.raises(EventSchemaError, match=r"input_tokens is str .*expected an int"):
        log.write(Event(kind=EventKind.LLM_CALL, input_tokens="12"))


def test_numpy_scalars_are_accepted_and_stored_as_plain_values(log: EventLog) -> None:
    log.write(Event(kind=EventKind.LLM_CALL, input_tokens=np.int64(120),
                    output_tokens=np.uint16(7), http_status=np.int32(200),
                    cost_usd=np.float64(0.125), latency_ms=np.float32(1.5),
                    temperature=np.int8(1), streamed=np.bool_(True),
                    attributes={"scores": np.int64(3), "weight": np.float64(0.5)}))
    row = log.store().rows(
        "SELECT input_tokens, output_tokens, http_status, cost_usd, latency_ms, temperature,"
        " streamed, attributes->>'scores', attributes->>'weight' FROM events")
    assert row == [(120, 7, 200, 0.125, 1.5, 1.0, True, "3", "0.5")]


# -- round trip ---------------------------------------------------------------------------

_json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
_json_objects = st.dictionaries(
    st.text(max_size=10),
    st.recursive(_json_scalars,
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                 max_leaves=8),
    max_size=4,
)
_aware_datetimes = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1),
                                timezones=st.timezones())


_TRICKY_TEXT = ["", "two\nlines\r\n", 'say "hi"', "back\\slash", "nul\x00byte", "tab\tend",
                "\u2028sep\u2029", "emoji 🙂 and ü", '{"not": "json"}', " "]
_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "VARCHAR": st.text() | st.sampled_from(_TRICKY_TEXT),
    "INTEGER": st.integers(-(2**31), 2**31 - 1),
    "BIGINT": st.integers(-(2**63), 2**63 - 1),
    "DOUBLE": st.floats(allow_nan=False, allow_infinity=False),
    "BOOLEAN": st.booleans(),
    "TIMESTAMPTZ": _aware_datetimes,
    "JSON": _json_objects,
}


def _strategy_for(name: str, duckdb_type: str) -> st.SearchStrategy[Any]:
    if name == "kind":
        return st.sampled_from(list(EventKind)) | st.text(min_size=1, max_size=20)
    return _BY_TYPE[duckdb_type]


# Given explicitly: NULL would read back as the default, and with host the writer keeps pid.
_REQUIRED = {"event_id", "kind", "ts", "schema_version", "host"}
_event_fields = st.fixed_dictionaries(
    {c.name: _strategy_for(c.name, c.duckdb_type) for c in COLUMNS if c.name in _REQUIRED},
    optional={c.name: st.none() | _strategy_for(c.name, c.duckdb_type)
              for c in COLUMNS if c.name not in _REQUIRED},
)


def _as_utc(row: dict[str, Any]) -> dict[str, Any]:
    for stamp in ("ts", "started_at"):
        if row[stamp] is not None:
            row[stamp] = row[stamp].astimezone(timezone.utc)
    return row


def _read_back(store: EventStore) -> dict[str, dict[str, Any]]:
    table = store.arrow("SELECT * FROM events")
    rows = [Event.from_row(row).to_row() for row in table.to_pylist()]
    return {row["event_id"]: _as_utc(row) for row in rows}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_event_fields, min_size=1, max_size=4, unique_by=lambda f: f["event_id"]))
def test_every_column_round_trips_through_spool_and_parquet(
    fields_list: list[dict[str, Any]],
) -> None:
    events = [Event(**fields) for fields in fields_list]
    expected = {e.event_id: _as_utc(e.to_row()) for e in events}
    with tempfile.TemporaryDirectory() as root:
        log = EventLog(root, roll_max_seconds=3600)
        try:
            for event in events:
                log.write(event)
            store = log.store()
            assert _read_back(store) == expected  # from the spool
            log.flush()
            assert _read_back(store) == expected  # from Parquet
            assert store.snapshot.spool == []
        finally:
            log.close()


def test_sub_minute_utc_offsets_keep_the_exact_instant(log: EventLog) -> None:
    # Historic zones (local mean time) have offsets with seconds, e.g. Amsterdam +00:19:32.
    odd_zone = timezone(timedelta(minutes=19, seconds=32))
    ts = datetime(1900, 1, 1, 23, 50, 10, 123456, tzinfo=odd_zone)
    log.write(Event(kind=EventKind.LLM_CALL, ts=ts, started_at=ts))
    expected = ts.astimezone(timezone.utc)
    assert log.store().rows("SELECT ts, started_at FROM events") == [(expected, expected)]
    log.flush()
    assert log.store().rows("SELECT ts, started_at, date FROM events") == [
        (expected, expected, expected.date())]
