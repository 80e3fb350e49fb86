"""Prometheus metrics over LLM calls: computed from the event log, or kept live by a client.

Two sources expose the same series, so one dashboard (``dashboards/grafana/devora_lab.json``)
reads either:

- ``EventLogCollector`` computes every metric at scrape time from the log's ``llm.call``
  events in one DuckDB scan, and remembers the result while the log's files are unchanged,
  so a Prometheus scraping every few seconds costs a directory listing, not a scan. It is
  what ``devora-lab serve-metrics`` serves: one exporter for all the agents writing a log.
- ``ClientMetrics`` observes events as a client writes them (``Client(observers=[...])``)
  and updates prometheus_client instruments, for an agent that serves its own ``/metrics``
  without reading the log.

``serve_metrics`` serves either over HTTP and returns a handle with the bound port.

Per-call series are labelled ``model`` (as requested), ``provider``, ``agent`` and
``status`` (ok, error, cancelled); a missing value reads ``unknown``.

- ``devora_llm_calls_total``; ``devora_llm_cost_usd_total`` (recorded dollars; an unpriced
  call adds none and counts in ``devora_llm_unpriced_calls_total``, never passed off as $0)
- ``devora_llm_tokens_total`` (label ``type``: input, output): tokens providers processed,
  so cache hits are left out, as in ``gen_ai_client_token_usage`` (``gen_ai_token_type``)
- ``devora_llm_retries_total`` (requests after a call's first, fallback models included),
  ``devora_llm_fallbacks_total`` (calls that ended past the first model of their chain)
- ``devora_llm_cache_lookups_total``, ``devora_llm_cache_hits_total`` and the gauge
  ``devora_llm_cache_hit_ratio`` (labels model, provider, agent; a lookup is a hit,
  semantic hit or miss, a bypass is none)
- histograms named after the OpenTelemetry GenAI metrics, with the spec's buckets:
  ``gen_ai_client_operation_duration_seconds``, ``gen_ai_client_token_usage`` and
  ``gen_ai_server_time_to_first_token_seconds`` (streamed calls)
- with a budget guard, gauges ``devora_budget_used_ratio``, ``devora_budget_spent_usd`` and
  ``devora_budget_limit_usd`` (labels budget, key, period) for the current periods
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from devora_lab.errors import ConfigError, DevoraError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.events.store import EventStore

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    import pandas as pd

__all__ = ["METRIC_NAMES", "BudgetCollector", "BudgetStatus", "ClientMetrics",
           "EventLogCollector", "MetricsServer", "serve_metrics"]

log = logging.getLogger("devora_lab.monitoring")

# ExplicitBucketBoundaries the OpenTelemetry semantic conventions for GenAI metrics say each
# histogram SHOULD use (open-telemetry/semantic-conventions-genai, docs/gen-ai/gen-ai-metrics.md;
# https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/).
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                           20.48, 40.96, 81.92)  # gen_ai.client.operation.duration
TOKEN_BUCKETS: Final = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0,
                        1048576.0, 4194304.0, 16777216.0, 67108864.0)  # gen_ai.client.token.usage
TTFT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                       2.5, 5.0, 7.5, 10.0)  # gen_ai.server.time_to_first_token

UNKNOWN: Final = "unknown"
CALL_LABELS: Final = ("model", "provider", "agent", "status")
CACHE_LABELS: Final = ("model", "provider", "agent")
BUDGET_LABELS: Final = ("budget", "key", "period")
_HIT_OUTCOMES: Final = ("hit", "semantic_hit")
_LOOKUP_OUTCOMES: Final = (*_HIT_OUTCOMES, "miss")

_go_float: Callable[[float], str] = floatToGoString  # le values exactly as Histogram writes them


@dataclass(frozen=True, slots=True)
class _Spec:
    """One metric: its name (counters without ``_total``), help text, labels and buckets."""

    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


CALLS = _Spec("devora_llm_calls", "LLM calls, after retries and fallback.", CALL_LABELS)
COST = _Spec("devora_llm_cost_usd", "Recorded cost of LLM calls in US dollars.", CALL_LABELS)
UNPRICED = _Spec("devora_llm_unpriced_calls", "LLM calls whose model has no price.", CALL_LABELS)
TOKENS = _Spec("devora_llm_tokens", "Tokens sent to and received from providers.",
               (*CALL_LABELS, "type"))
RETRIES = _Spec("devora_llm_retries", "Requests sent after the first of a call.", CALL_LABELS)
FALLBACKS = _Spec("devora_llm_fallbacks", "Calls that ended past their first model.",
                  CALL_LABELS)
LOOKUPS = _Spec("devora_llm_cache_lookups", "Response-cache lookups.", CACHE_LABELS)
HITS = _Spec("devora_llm_cache_hits", "Response-cache hits, semantic ones included.",
             CACHE_LABELS)
HIT_RATIO = _Spec("devora_llm_cache_hit_ratio", "Cache hits over lookups so far.", CACHE_LABELS)
DURATION = _Spec("gen_ai_client_operation_duration_seconds", "GenAI operation duration.",
                 CALL_LABELS, DURATION_BUCKETS)
TOKEN_USAGE = _Spec("gen_ai_client_token_usage", "Input and output tokens used per call.",
                    (*CALL_LABELS, "gen_ai_token_type"), TOKEN_BUCKETS)
TTFT = _Spec("gen_ai_server_time_to_first_token_seconds",
             "Time to the first token of streamed calls.", CALL_LABELS, TTFT_BUCKETS)
BUDGET_USED = _Spec("devora_budget_used_ratio", "Share of the budget spent this period.",
                    BUDGET_LABELS)
BUDGET_SPENT = _Spec("devora_budget_spent_usd", "Dollars spent this period.", BUDGET_LABELS)
BUDGET_LIMIT = _Spec("devora_budget_limit_usd", "The budget's limit in dollars.", BUDGET_LABELS)

_CALL_COUNTERS: Final = (CALLS, COST, UNPRICED, TOKENS, RETRIES, FALLBACKS)
_COUNTERS: Final = (*_CALL_COUNTERS, LOOKUPS, HITS)
_HISTOGRAMS: Final = (DURATION, TOKEN_USAGE, TTFT)
_GAUGES: Final = (HIT_RATIO, BUDGET_USED, BUDGET_SPENT, BUDGET_LIMIT)
METRIC_NAMES: Final[tuple[str, ...]] = (
    *(f"{spec.name}_total" for spec in _COUNTERS),
    *(spec.name for spec in (*_HISTOGRAMS, *_GAUGES)),
)

# -- the log's metrics in one scan -----------------------------------------------------------

# Histogram series: SQL prefix, column of the ``calls`` CTE, metric, extra label values.
_SERIES: Final = (("d", "duration", DURATION, ()), ("t", "ttft", TTFT, ()),
                  ("i", "tokens_in", TOKEN_USAGE, ("input",)),
                  ("o", "tokens_out", TOKEN_USAGE, ("output",)))
# Counters read straight from a column of the grouped rows.
_COUNTER_COLUMNS: Final = ((CALLS, "calls"), (COST, "cost"), (UNPRICED, "unpriced"),
                           (RETRIES, "retries"), (FALLBACKS, "fallbacks"))

_SQL_TEMPLATE: Final = """
WITH calls AS (
    SELECT coalesce(nullif(request_model, ''), $unknown) AS model,
           coalesce(nullif(provider, ''), $unknown) AS provider,
           coalesce(nullif(agent, ''), $unknown) AS agent,
           coalesce(nullif(status, ''), $unknown) AS status,
           coalesce(list_contains($hits, cache_outcome), false) AS hit,
           coalesce(list_contains($lookups, cache_outcome), false) AS lookup,
           cost_usd, cost_status, attempt, fallback_index,
           latency_ms / 1000.0 AS duration, ttft_ms / 1000.0 AS ttft,
           input_tokens, output_tokens
    FROM events WHERE kind = $kind
), counted AS (
    SELECT *, CASE WHEN hit THEN NULL ELSE input_tokens END AS tokens_in,
           CASE WHEN hit THEN NULL ELSE output_tokens END AS tokens_out
    FROM calls
)
SELECT model, provider, agent, status, count(*) AS calls,
       coalesce(sum(cost_usd), 0.0) AS cost,
       count(*) FILTER (WHERE cost_status = $unpriced) AS unpriced,
       coalesce(sum(greatest(attempt - 1, 0)), 0) AS retries,
       count(*) FILTER (WHERE fallback_index > 0) AS fallbacks,
       count(*) FILTER (WHERE lookup) AS lookups, count(*) FILTER (WHERE hit) AS hits,
       {histograms}
FROM counted GROUP BY model, provider, agent, status ORDER BY model, provider, agent, status
"""


def _build_query() -> tuple[str, dict[str, Any]]:
    """The scan's SQL (cumulative bucket counts, as Prometheus wants them) and its
    parameters: every value, bucket boundaries included, is bound, not written in."""
    params: dict[str, Any] = {"unknown": UNKNOWN, "hits": list(_HIT_OUTCOMES),
                              "lookups": list(_LOOKUP_OUTCOMES), "kind": str(EventKind.LLM_CALL),
                              "unpriced": "unpriced"}
    parts: list[str] = []
    for prefix, column, spec, _ in _SERIES:
        parts += [f"count({column}) AS {prefix}_n", f"coalesce(sum({column}), 0) AS {prefix}_sum"]
        for i, bound in enumerate(spec.buckets):
            params[f"{prefix}{i}"] = bound
            parts.append(f"count(*) FILTER (WHERE {column} <= ${prefix}{i}) AS {prefix}_{i}")
    return _SQL_TEMPLATE.format(histograms=",\n       ".join(parts)), params


_SQL, _PARAMS = _build_query()


def _families(rows: list[dict[str, Any]]) -> list[Metric]:
    """Metric families from the grouped rows of the scan (empty families for no rows)."""
    counters = {s.name: CounterMetricFamily(s.name, s.help, labels=s.labels)
                for s in _CALL_COUNTERS}
    histograms = {s.name: HistogramMetricFamily(s.name, s.help, labels=s.labels)
                  for s in _HISTOGRAMS}
    cache: dict[tuple[str, ...], list[int]] = {}
    for row in rows:
        key = [str(row[label]) for label in CALL_LABELS]
        for spec, column in _COUNTER_COLUMNS:
            counters[spec.name].add_metric(key, row[column])
        counters[TOKENS.name].add_metric([*key, "input"], row["i_sum"])
        counters[TOKENS.name].add_metric([*key, "output"], row["o_sum"])
        for prefix, _, spec, extra in _SERIES:
            if row[f"{prefix}_n"]:
                buckets = [(_go_float(b), row[f"{prefix}_{i}"]) for i, b in enumerate(spec.buckets)]
                buckets.append(("+Inf", row[f"{prefix}_n"]))
                histograms[spec.name].add_metric([*key, *extra], buckets, row[f"{prefix}_sum"])
        tally = cache.setdefault(tuple(key[:3]), [0, 0])
        tally[0] += row["lookups"]
        tally[1] += row["hits"]
    return [*counters.values(), *histograms.values(), *_cache_families(cache)]


def _cache_families(cache: dict[tuple[str, ...], list[int]]) -> list[Metric]:
    lookups = CounterMetricFamily(LOOKUPS.name, LOOKUPS.help, labels=LOOKUPS.labels)
    hits = CounterMetricFamily(HITS.name, HITS.help, labels=HITS.labels)
    ratio = GaugeMetricFamily(HIT_RATIO.name, HIT_RATIO.help, labels=HIT_RATIO.labels)
    for key, (looked, hit) in cache.items():
        lookups.add_metric(key, looked)
        hits.add_metric(key, hit)
        if looked:
            ratio.add_metric(key, hit / looked)
    return [lookups, hits, ratio]


def _log_state(store: EventStore) -> tuple[object, ...]:
    """What identifies the rows of the log, found by listing alone.

    Parquet files never change once in place (compaction writes new ones) and spool
    segments only grow, so equal paths, sizes and times mean equal rows. The state is taken
    before the query: a write that lands meanwhile changes it for good, so its result is
    computed once more at the next scrape, never kept stale.
    """
    spool: list[tuple[str, int, int]] = []
    for entry in store.layout.list_spool():
        try:
            stat = entry.path.stat()
        except FileNotFoundError:  # rolled meanwhile: its Parquet file is listed next
            spool.append((str(entry.path), -1, -1))
        else:
            spool.append((str(entry.path), stat.st_size, stat.st_mtime_ns))
    parquet = tuple((e.path, e.size, e.mtime_ns) for e in store.layout.list_parquet())
    return parquet, tuple(spool)


class EventLogCollector:
    """A prometheus_client collector computing the call metrics from an event log.

    ``source`` is an ``EventLog`` (a reader is opened, and closed by ``close()``) or an open
    ``EventStore``. ``budget_guard``, if given, adds the budget gauges. ``scans`` counts the
    scans made: scrapes of an unchanged log reuse the last one.
    """

    def __init__(self, source: EventLog | EventStore, *,
                 budget_guard: BudgetStatus | None = None) -> None:
        self._owns_store = not isinstance(source, EventStore)
        self._store = (source if isinstance(source, EventStore)
                       else EventStore(source.layout, auto_refresh=False))
        self._budgets = BudgetCollector(budget_guard) if budget_guard is not None else None
        self._lock = threading.Lock()  # scrapes run in threads; a DuckDB connection is not shared
        self._state: tuple[object, ...] | None = None
        self._families: list[Metric] = []
        self.scans = 0

    def describe(self) -> list[Metric]:
        """The families this collector yields (lets a registry detect name clashes)."""
        budgets = self._budgets.describe() if self._budgets is not None else []
        return [*_families([]), *budgets]

    def collect(self) -> Iterator[Metric]:
        yield from self._log_families()
        if self._budgets is not None:
            yield from self._budgets.collect()

    def _log_families(self) -> list[Metric]:
        with self._lock:
            state = _log_state(self._store)
            if state != self._state:
                if not self._store.auto_refresh:
                    self._store.refresh()
                self._families = _families(self._store.arrow(_SQL, _PARAMS).to_pylist())
                self._state = state
                self.scans += 1
            return self._families

    def close(self) -> None:
        """Close the reader this collector opened (not a store it was given)."""
        if self._owns_store:
            self._store.close()


# -- budgets -----------------------------------------------------------------------------------


class BudgetStatus(Protocol):
    """What the budget gauges need: ``costs.budgets.BudgetGuard`` is one."""

    def status(self) -> pd.DataFrame: ...


def _budget_families() -> tuple[GaugeMetricFamily, ...]:
    return tuple(GaugeMetricFamily(s.name, s.help, labels=s.labels)
                 for s in (BUDGET_USED, BUDGET_SPENT, BUDGET_LIMIT))


class BudgetCollector:
    """Budget gauges from a guard's ``status()``, read at every scrape (a period may end
    between two scrapes). If the status cannot be read (say Redis is down) the gauges are
    left out of that scrape and a warning is logged: the call metrics are still served."""

    def __init__(self, source: BudgetStatus) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return list(_budget_families())

    def collect(self) -> list[Metric]:
        try:
            frame = self.source.status()
        except (DevoraError, OSError):
            log.warning("budget status could not be read; budget metrics are left out of "
                        "this scrape", exc_info=True)
            return []
        used, spent, limit = families = _budget_families()
        for row in frame.to_dict("records"):
            labels = [str(row["budget"]), str(row["key"]), str(row["period"])]
            used.add_metric(labels, float(row["share_used"]))
            spent.add_metric(labels, float(row["spent_usd"]))
            limit.add_metric(labels, float(row["limit_usd"]))
        return list(families)


# -- in-process metrics for agents ---------------------------------------------------------------


def _label(value: object) -> str:
    return UNKNOWN if value is None or value == "" else str(value)


class ClientMetrics:
    """The same metrics kept live in one process: pass it as a client observer.

    >>> metrics = ClientMetrics()
    >>> client = Client(observers=[metrics])                         # doctest: +SKIP
    >>> serve_metrics(metrics, port=9464)                            # doctest: +SKIP

    ``registry`` defaults to a fresh one (pass ``prometheus_client.REGISTRY`` to share the
    process's default registry); ``budget_guard`` adds the budget gauges.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 budget_guard: BudgetStatus | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._counters = {s.name: Counter(s.name, s.help, s.labels, registry=self.registry)
                          for s in _COUNTERS}
        self._histograms = {s.name: Histogram(s.name, s.help, s.labels, registry=self.registry,
                                              buckets=s.buckets) for s in _HISTOGRAMS}
        self._ratio = Gauge(HIT_RATIO.name, HIT_RATIO.help, HIT_RATIO.labels,
                            registry=self.registry)
        self._cache: dict[tuple[str, ...], list[int]] = {}
        self._lock = threading.Lock()
        if budget_guard is not None:
            self.registry.register(BudgetCollector(budget_guard))

    def __call__(self, event: Event) -> None:
        self.observe(event)

    def observe(self, event: Event) -> None:
        """Count one event (only ``llm.call`` events carry the call metrics)."""
        if event.kind != EventKind.LLM_CALL:
            return
        key = (_label(event.request_model), _label(event.provider), _label(event.agent),
               _label(event.status))
        self._count(key, event)
        hit = event.cache_outcome in _HIT_OUTCOMES
        for kind, tokens in (("input", event.input_tokens), ("output", event.output_tokens)):
            counted = None if hit else tokens
            self._counters[TOKENS.name].labels(*key, kind).inc(counted or 0)
            if counted is not None:
                self._histograms[TOKEN_USAGE.name].labels(*key, kind).observe(counted)
        if event.latency_ms is not None:
            self._histograms[DURATION.name].labels(*key).observe(event.latency_ms / 1000.0)
        if event.ttft_ms is not None:
            self._histograms[TTFT.name].labels(*key).observe(event.ttft_ms / 1000.0)
        self._count_cache(key[:3], event.cache_outcome)

    def _count(self, key: tuple[str, ...], event: Event) -> None:
        counters = self._counters
        counters[CALLS.name].labels(*key).inc()
        counters[COST.name].labels(*key).inc(event.cost_usd or 0.0)
        counters[UNPRICED.name].labels(*key).inc(int(event.cost_status == "unpriced"))
        counters[RETRIES.name].labels(*key).inc(max((event.attempt or 0) - 1, 0))
        counters[FALLBACKS.name].labels(*key).inc(int((event.fallback_index or 0) > 0))

    def _count_cache(self, key: tuple[str, ...], outcome: str | None) -> None:
        looked, hit = outcome in _LOOKUP_OUTCOMES, outcome in _HIT_OUTCOMES
        self._counters[LOOKUPS.name].labels(*key).inc(int(looked))
        self._counters[HITS.name].labels(*key).inc(int(hit))
        with self._lock:
            tally = self._cache.setdefault(key, [0, 0])
            tally[0] += looked
            tally[1] += hit
            if tally[0]:
                self._ratio.labels(*key).set(tally[1] / tally[0])


# -- serving -------------------------------------------------------------------------------------


class MetricsServer:
    """A running ``/metrics`` endpoint (a daemon thread); ``close()`` stops it."""

    def __init__(self, host: str, port: int, httpd: WSGIServer, thread: threading.Thread) -> None:
        self.host = host
        self.port = port
        self._httpd = httpd
        self._thread = thread
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (a no-op the second time)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(source: Collector | ClientMetrics, host: str = "127.0.0.1",
                  port: int = 9464) -> MetricsServer:
    """Serve ``source`` (a collector, a registry or a ``ClientMetrics``) on
    ``http://host:port/metrics``; port 0 picks a free port (see ``.port``)."""
    from prometheus_client import start_http_server

    if isinstance(source, ClientMetrics):
        registry = source.registry
    elif isinstance(source, CollectorRegistry):
        registry = source
    else:
        registry = CollectorRegistry()
        registry.register(source)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                          fix="choose another port (--port), or stop what listens there") from exc
    return MetricsServer(host, int(httpd.server_port), httpd, thread)
