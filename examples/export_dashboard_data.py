"""Export dashboard data: the overview metrics and a raw event query, to CSV and Parquet.

Shows: ``devora_lab.monitoring.metrics.overview`` (totals, per model / provider / agent, a
trend and error types from one scan) written with ``export_frame``, and a raw SQL query
over the ``events`` view written with ``export_query``, which lets DuckDB stream the rows
to the file without building a DataFrame: fine for millions of events. Any BI tool, or
pandas / polars, reads the files.

Run:  python examples/export_dashboard_data.py
      (``devora-lab events export --format parquet --out calls.parquet`` for raw events)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
from _offline import example_workspace

from devora_lab import Lab, Tags
from devora_lab.monitoring.export import export_frame, export_query
from devora_lab.monitoring.metrics import overview

RAW_CALLS = """
    SELECT ts, agent, user_id, request_model, response_model, input_tokens, output_tokens,
           cost_usd, latency_ms, status, cache_outcome
    FROM events WHERE kind = ? AND ts >= ? ORDER BY ts"""

with example_workspace() as workspace, Lab(workspace) as lab:
    for n in range(10):  # some traffic to export
        lab.client.complete([{"role": "user", "content": f"Question {n}: what is a mutex?"}],
                            model="gpt-4o" if n % 4 == 0 else "gpt-4o-mini", max_tokens=200,
                            tags=Tags(agent="coder" if n % 2 else "architect", user_id=f"u-{n}"))

    out = lab.workspace.root / "exports"
    out.mkdir(exist_ok=True)
    with lab.event_log.store() as store:
        dashboard = overview(store, window="24h")
        written = [
            export_frame(dashboard.totals, out / "overview_totals.csv"),
            export_frame(dashboard.by_model, out / "overview_by_model.csv"),
            export_frame(dashboard.trend, out / "overview_trend.parquet"),
        ]
        since = datetime.now(timezone.utc) - timedelta(days=1)
        for name in ("llm_calls.parquet", "llm_calls.csv"):  # the format follows the suffix
            written.append(export_query(store, RAW_CALLS, out / name,
                                        params=["llm.call", since]))

    for path in written:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        print(f"{path.name:26} {path.stat().st_size:>7,} bytes  {len(frame):>3} rows  "
              f"{len(frame.columns):>2} columns")
    print(f"\nwritten to {out} (a temporary workspace is deleted at exit: set "
          "DEVORA_WORKSPACE to keep them); overview_by_model.csv:")
    by_model = pd.read_csv(out / "overview_by_model.csv")
    print(by_model[["model", "requests", "latency_p95_ms", "cost_usd"]].to_string(index=False))
