"""Exports of metric tables and raw queries: every format read back equals what was written,
parameters are bound, and a failed export leaves the earlier file and no debris."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from devora_lab.errors import ExportError
from devora_lab.events import EventLog
from devora_lab.events.store import EventStore
from devora_lab.monitoring.export import FORMATS, export_frame, export_query
from devora_lab.monitoring.metrics import metrics

from .helpers import MINUTE, T0, calls, write

QUOTED = "o'brien \"the\" user"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    log = EventLog(tmp_path / "events")
    write(log, calls(6, T0 - 30 * MINUTE, T0, model="gpt-4o", user=QUOTED, cost=0.25))
    write(log, calls(4, T0 - 30 * MINUTE, T0, model="claude-sonnet-4", status="error",
                     cost=0.5))
    log.close()
    with log.store() as opened:
        yield opened


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "json":
        return pd.read_json(path, orient="records")
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    frame: pd.DataFrame = pq.read_table(path).to_pandas()
    return frame


def _same(read: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(read.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_metric_table_round_trips(store: EventStore, tmp_path: Path, fmt: str) -> None:
    frame = metrics(store, ["requests", "errors", "error_rate", "cost_usd", "latency_p95_ms"],
                    by=["model"], window="all")
    path = export_frame(frame, tmp_path / f"metrics.{FORMATS[fmt][0].lstrip('.')}")
    assert path == tmp_path / f"metrics{FORMATS[fmt][0]}"
    _same(_read(path, fmt), frame)
    assert list(_read(path, fmt)["model"]) == ["gpt-4o", "claude-sonnet-4"]


def test_parquet_keeps_the_types(store: EventStore, tmp_path: Path) -> None:
    frame = metrics(store, ["requests", "cost_usd"], by=["model"], window="all")
    read = pd.read_parquet(export_frame(frame, tmp_path / "m.pq"))
    assert read["requests"].dtype.kind == "i" and read["cost_usd"].dtype.kind == "f"
    _same(read, frame)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_query_round_trips_with_bound_parameters(store: EventStore, tmp_path: Path,
                                                   fmt: str) -> None:
    sql = ("SELECT user_id, request_model, cost_usd, status FROM events "
           "WHERE kind = 'llm.call' AND user_id = ? ORDER BY ts")
    path = export_query(store, sql, tmp_path / "rows.out", params=[QUOTED], fmt=fmt)
    expected = store.df(sql, [QUOTED])
    assert len(expected) == 6 and set(expected["user_id"]) == {QUOTED}
    _same(_read(path, fmt), expected)


def test_the_suffix_names_the_format(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    export_frame(frame, tmp_path / "x.ndjson")
    assert (tmp_path / "x.ndjson").read_text().splitlines() == ['{"a":1}', '{"a":2}']
    export_frame(frame, tmp_path / "x.PARQUET")
    assert pd.read_parquet(tmp_path / "x.PARQUET")["a"].tolist() == [1, 2]


def test_unknown_formats_and_folders_are_refused(store: EventStore, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(ExportError, match=r"cannot tell the format of x\.xlsx") as caught:
        export_frame(frame, tmp_path / "x.xlsx")
    assert ".parquet" in (caught.value.fix or "")
    with pytest.raises(ExportError, match="unknown export format 'xml'"):
        export_query(store, "SELECT 1", tmp_path / "x.csv", fmt="xml")
    with pytest.raises(ExportError, match="does not exist"):
        export_frame(frame, tmp_path / "missing" / "x.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ExportError, match="cannot write"):
        export_frame(frame, tmp_path / "folder.csv")
    assert os.listdir(tmp_path / "folder.csv") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events", "folder.csv"]


def test_a_failed_export_keeps_the_earlier_file(store: EventStore, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    export_query(store, "SELECT count(*) AS n FROM events", target)
    before = target.read_bytes()
    with pytest.raises(ExportError, match=r"cannot export to out\.csv") as caught:
        export_query(store, "SELECT no_such_column FROM events", target)
    assert "no_such_column" in caught.value.message
    with pytest.raises(ExportError):  # one parameter too few
        export_query(store, "SELECT * FROM events WHERE user_id = ?", target)
    assert target.read_bytes() == before == b"n\n10\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events", "out.csv"]


def test_a_trailing_semicolon_is_accepted(store: EventStore, tmp_path: Path) -> None:
    path = export_query(store, "SELECT count(*) AS n FROM events ;\n", tmp_path / "n.json")
    assert pd.read_json(path)["n"].tolist() == [10]
