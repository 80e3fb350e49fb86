"""Serving the metrics over HTTP: the handle, the ``serve-metrics`` command as a real process,
and a real Prometheus scraping the exporter and answering queries over what it scraped."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from devora_lab.costs.budgets import Budget
from devora_lab.costs.wiring import budget_registry
from devora_lab.errors import ConfigError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.monitoring.prometheus import EventLogCollector, MetricsServer, serve_metrics
from devora_lab.workspace import Workspace

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "grafana" / "devora_lab.json"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], T | None], seconds: float, what: str) -> T:
    """Poll ``check`` until it returns something, or fail saying ``what`` never happened."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds} s")


def fill(root: Path) -> EventLog:
    """Six calls: gpt-4o by the coder, 300 ms each, four ok (one streamed) and two errors."""
    event_log = EventLog(root, roll_max_events=4)
    for i in range(6):
        event_log.write(Event(kind=EventKind.LLM_CALL, request_model="gpt-4o",
                              provider="openai", agent="coder",
                              status="error" if i >= 4 else "ok", latency_ms=300.0,
                              ttft_ms=40.0 if i == 0 else None, input_tokens=100,
                              output_tokens=10, cost_usd=0.5, cost_status="priced",
                              attempt=1))
    return event_log


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[MetricsServer]:
    event_log = fill(tmp_path / "events")
    collector = EventLogCollector(event_log)
    with serve_metrics(collector, port=0) as server:
        yield server
    collector.close()
    event_log.close()


def test_serves_on_a_free_port_and_closes(exporter: MetricsServer) -> None:
    assert exporter.port > 0 and exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
    response = httpx.get(exporter.url)
    assert response.status_code == 200
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert "devora_llm_calls" in names and "gen_ai_client_operation_duration_seconds" in names
    exporter.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(exporter.url, timeout=2)


def test_a_taken_port_is_a_config_error(exporter: MetricsServer) -> None:
    with pytest.raises(ConfigError, match="cannot serve metrics") as info:
        serve_metrics(CollectorRegistry(), port=exporter.port)
    assert info.value.fix and "--port" in info.value.fix


def test_serve_metrics_command_runs_until_interrupted(tmp_path: Path) -> None:
    fill(tmp_path / "events").close()
    budget_registry(Workspace(tmp_path)).set(Budget(name="cap", limit_usd=4.0))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devora_lab.cli", "serve-metrics", "--workspace",
         str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/metrics" in line, process.stderr.read()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'devora_llm_calls_total{agent="coder",model="gpt-4o",provider="openai",' \
               'status="ok"} 4.0' in text
        # Six calls at $0.50 today: the guard seeds from the log at each scrape.
        assert 'devora_budget_used_ratio{budget="cap",key="global",period="daily"} 0.75' in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# -- a real Prometheus ------------------------------------------------------------------------

_NO_PROMETHEUS = ("the prometheus binary is not installed: run scripts/setup.sh, or "
                  "`sudo apt-get install prometheus`, to run the end-to-end scrape test")


@pytest.fixture
def prometheus(tmp_path: Path, exporter: MetricsServer) -> Iterator[str]:
    """A Prometheus scraping ``exporter`` every second; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(_NO_PROMETHEUS)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: devora\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter.port}']\n")
    port = free_port()
    output = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()}")
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200 or None
            except httpx.TransportError:
                return None

        wait_for(ready, 15, "prometheus did not become ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        output.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_the_exporter_and_answers_queries(prometheus: str) -> None:
    def scraped() -> list[dict[str, Any]] | None:
        return query(prometheus, "devora_llm_calls_total") or None

    series = wait_for(scraped, 10, "no devora_llm_calls_total series was scraped")
    by_status = {s["metric"]["status"]: float(s["value"][1]) for s in series}
    assert by_status == {"ok": 4.0, "error": 2.0}
    labels = series[0]["metric"]
    assert (labels["model"], labels["provider"], labels["agent"], labels["job"]) == \
        ("gpt-4o", "openai", "coder", "devora")
    # All six calls took 300 ms, in the (0.16, 0.32] bucket: Prometheus interpolates linearly.
    p50 = query(prometheus, "histogram_quantile(0.5, sum by (le) "
                            "(gen_ai_client_operation_duration_seconds_bucket))")
    assert float(p50[0]["value"][1]) == pytest.approx(0.16 + 0.16 * 0.5)
    cost = query(prometheus, "sum(devora_llm_cost_usd_total)")
    assert float(cost[0]["value"][1]) == 3.0


def test_every_dashboard_query_is_valid_promql(prometheus: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for expr in exprs:
        concrete = (expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
                    .replace("$model", ".*").replace("$agent", ".*"))
        query(prometheus, concrete)  # asserts Prometheus parsed and ran it
