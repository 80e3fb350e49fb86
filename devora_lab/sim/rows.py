"""Turning one simulated day (``calls.CallTable``) into an Arrow table of events.

Each event kind gets its own column set, built from numpy arrays and conformed to the
log's Parquet schema; the kinds are then concatenated, sorted by time and given
deterministic ids. Which rows exist, and with which columns, is the contract the demo
notebooks and tests rely on:

* ``llm.call``: every logical call. Cache hits cost 0.0 (``saved_cost_usd`` says what they
  saved) and have NULL ``attempt``/``fallback_index`` since no provider request was made;
  failed calls billed nothing (0.0, or NULL for an unpriced model).
* ``llm.attempt``: every provider request of calls that needed more than one.
* ``cache``: one lookup per call; ``embedding`` and ``retrieval`` before architect calls,
  plus a nightly re-index batch; ``experiment.exposure`` once per user; ``budget`` and
  ``alert`` from thresholds over the generated traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

from devora_lab.events import SCHEMA_VERSION, EventKind
from devora_lab.sim.calls import (
    AGENT_NAMES,
    AGENTS,
    CODER_TEMPLATE_VERSIONS,
    ERRORS,
    EXPERIMENT,
    MODEL_NAMES,
    MODELS,
    REVIEW_TEMPLATE_VERSIONS,
    US,
    USERS,
    VARIANTS,
    CallTable,
    DayPlan,
    Team,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DAILY_USER_BUDGET_USD", "ERROR_RATE_THRESHOLD", "DayState", "day_table"]

DAILY_USER_BUDGET_USD: Final = 4.5
BUDGET_FRACTIONS: Final = ((0.8, "warning"), (1.0, "critical"))
ERROR_RATE_THRESHOLD: Final = 0.12
ALERT_WINDOW_US: Final = 15 * 60 * US
ALERT_MIN_REQUESTS: Final = 40
ALERT_FOR_WINDOWS: Final = 2  # windows in a row above the threshold before firing
EMBEDDING_MODEL: Final = "text-embedding-3-small"
INDEX_NAME: Final = "design-docs"
ARCHITECT_TEMPLATE_VERSION: Final = "1.4"
_DAY_US: Final = 86_400 * US
_WHO: Final = ("request_id", "trace_id", "user_id", "session_id", "agent", "experiment",
               "variant", "template_name", "template_version")

Arr = NDArray[Any]


@dataclass
class DayState:
    """What carries over from one day to the next: exposed users and the alert's state."""

    exposed: set[int] = field(default_factory=set)
    alert_firing: bool = False
    breaching_windows: int = 0


def _when(cond: Arr, values: Any) -> Arr:
    """``values`` where ``cond`` holds, None elsewhere (an object array)."""
    out = np.full(cond.shape, None, dtype=object)
    chosen = np.broadcast_to(np.asarray(values, dtype=object), cond.shape)
    out[cond] = chosen[cond]
    return out


def _names(names: Sequence[str], codes: Arr) -> Arr:
    """Codes to strings as an object array; code -1 becomes None."""
    lookup = np.array([*names, None], dtype=object)
    return np.asarray(lookup[np.where(codes < 0, len(names), codes)])


def _hex(rng: np.random.Generator, n: int, words: int, prefix: str = "") -> Arr:
    draws = rng.integers(0, 2**63 - 1, size=(n, words), dtype=np.int64).tolist()
    return np.array([prefix + "".join(f"{x:016x}" for x in row) for row in draws], dtype=object)


class _Rows:
    """The columns of one kind of event, as numpy arrays or scalars."""

    def __init__(self, kind: EventKind, n: int, **columns: Any) -> None:
        self.n = n
        self.cols: dict[str, Arr] = {"kind": np.full(n, kind.value, dtype=object)}
        for name, value in columns.items():
            self.cols[name] = (np.full(n, value, dtype=object) if np.isscalar(value)
                               else np.asarray(value))

    def table(self) -> pa.Table:
        import pyarrow as pa

        from devora_lab.events.segments import arrow_schema, conform

        schema = arrow_schema()
        arrays = {}
        for name, values in self.cols.items():
            target = schema.field(name).type
            if pa.types.is_timestamp(target):
                arrays[name] = pa.array(values.astype(np.int64), type=target)
            elif values.dtype.kind == "f":
                arrays[name] = pa.array(values, type=target, from_pandas=True)  # NaN -> NULL
            else:
                arrays[name] = pa.array(values.tolist(), type=target)
        return conform(pa.table(arrays))


@dataclass
class _Day:
    """Everything the row builders share for one day."""

    t: CallTable
    plan: DayPlan
    team: Team
    rng: np.random.Generator
    state: DayState
    common: dict[str, Arr]
    key: Arr
    prompt_hash: Arr
    response_id: Arr

    def who(self, rows: Arr, *names: str) -> dict[str, Arr]:
        return {name: self.common[name][rows] for name in names or _WHO}


def day_table(t: CallTable, plan: DayPlan, team: Team, rng: np.random.Generator,
              state: DayState, *, tag: str, seed: int) -> pa.Table:
    """All events of one simulated day, sorted by time, with deterministic event ids."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from devora_lab import __version__

    n = t.n
    sessions = int(t.session.max(initial=-1)) + 1
    reviewer = t.variant >= 0
    coder = t.agent == AGENT_NAMES.index("coder")
    versions = np.where(coder, np.where(t.coder_v2, CODER_TEMPLATE_VERSIONS[1],
                                        CODER_TEMPLATE_VERSIONS[0]), ARCHITECT_TEMPLATE_VERSION)
    common = {
        "request_id": np.array([f"req_{tag}{plan.ordinal:06x}{i:06x}" for i in range(n)],
                               dtype=object),
        "trace_id": _hex(rng, n, 2),
        "session_id": np.array([f"ses_{tag}{plan.ordinal:06x}{i:05x}" for i in range(sessions)],
                               dtype=object)[t.session],
        "user_id": np.array(USERS, dtype=object)[t.user],
        "agent": np.array(AGENT_NAMES, dtype=object)[t.agent],
        "experiment": _when(reviewer, EXPERIMENT),
        "variant": _names(VARIANTS, t.variant),
        "template_name": np.array([a.template for a in AGENTS], dtype=object)[t.agent],
        "template_version": np.where(reviewer, _names(REVIEW_TEMPLATE_VERSIONS, t.variant),
                                     versions.astype(object)),
    }
    prefixes = {"openai": "chatcmpl-", "anthropic": "msg_", "ollama": "ollama-"}
    providers = [MODELS[MODEL_NAMES[m]].provider for m in np.maximum(t.resp_model, 0).tolist()]
    response = np.array([prefixes[p] + r for p, r in zip(providers, _hex(rng, n, 2),
                                                           strict=True)], dtype=object)
    day = _Day(t, plan, team, rng, state, common, key=_hex(rng, n, 2)[t.key_source],
               prompt_hash=_hex(rng, n, 4)[t.key_source],
               response_id=_when(t.ok, response[t.key_source]))
    parts = [_calls(day), _attempts(day), _cache(day), *_retrieval(day), *_reindex(day),
             _exposures(day), _budgets(day), _alerts(day)]
    table = pa.concat_tables(parts)  # all conformed to the one schema, empty ones too
    table = table.take(pc.sort_indices(table, [("ts", "ascending"), ("kind", "ascending")]))
    size = table.num_rows
    attributes = orjson.dumps({"synthetic": True, "seed": seed}).decode()
    constant = {
        "event_id": [f"{tag}{plan.ordinal:06x}{i:08x}" for i in range(size)],
        "schema_version": [SCHEMA_VERSION] * size,
        "host": ["devora-demo"] * size,
        "sdk_version": [__version__] * size,
        "attributes": [a if a is not None else attributes
                       for a in table.column("attributes").to_pylist()],
    }
    for name, values in constant.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.array(values, type=table.schema.field(name).type))
    return table


def _calls(d: _Day) -> pa.Table:
    t = d.t
    answered = np.where(t.ok, t.resp_model, t.req_model)
    failed = t.error >= 0
    http = np.array([e.http_status for e in ERRORS])[np.maximum(t.error, 0)]
    made = ~t.hit  # a cache hit made no provider request
    return _Rows(
        EventKind.LLM_CALL, t.n, ts=t.end_us, started_at=t.start_us, **d.who(np.arange(t.n)),
        operation="chat", provider=_names([MODELS[m].provider for m in MODEL_NAMES], answered),
        request_model=_names(MODEL_NAMES, t.req_model),
        response_model=_names(MODEL_NAMES, t.resp_model), response_id=d.response_id,
        input_tokens=t.input_tokens, output_tokens=t.output_tokens,
        cached_input_tokens=t.cached_tokens, cache_creation_input_tokens=t.creation_tokens,
        temperature=np.array([a.temperature for a in AGENTS])[t.agent],
        max_tokens=np.array([a.max_tokens for a in AGENTS])[t.agent],
        finish_reason=_when(t.ok, np.where(t.truncated, "length", "stop")), streamed=True,
        cost_usd=t.cost, cost_status=np.where(np.isnan(t.cost), "unpriced", "priced"),
        price_book_version=d.team.book.version, latency_ms=t.latency_ms, ttft_ms=t.ttft_ms,
        status=np.where(t.ok, "ok", "error"),
        error_type=_names([e.error_type for e in ERRORS], t.error),
        error_message=_names([e.message for e in ERRORS], t.error),
        http_status=_when(failed & (http > 0), http), attempt=_when(made, t.n_attempts),
        fallback_index=_when(made, t.fallback.astype(np.int64)),
        cache_outcome=np.where(t.hit, "hit", "miss"), cache_key=d.key,
        saved_cost_usd=t.saved_cost, saved_latency_ms=t.saved_latency_ms,
        prompt_hash=d.prompt_hash,
    ).table()


def _attempts(d: _Day) -> pa.Table:
    """One row per provider request of the calls that needed more than one."""
    t = d.t
    rows = np.flatnonzero(~t.hit & (t.n_attempts > 1))
    counts = t.n_attempts[rows]
    call = np.repeat(rows, counts)
    k = np.arange(call.size) - np.repeat(np.cumsum(counts) - counts, counts)
    model = t.att_model[call, k]
    error = t.att_error[call, k]
    ok = error < 0
    http = np.array([e.http_status for e in ERRORS])[np.maximum(error, 0)]
    priced = np.array([d.team.book.price(m) is not None for m in MODEL_NAMES])[model]
    cost = np.where(ok, t.cost[call], np.where(priced, 0.0, np.nan))  # failures bill nothing
    return _Rows(
        EventKind.LLM_ATTEMPT, call.size, ts=t.att_end_us[call, k],
        started_at=t.att_start_us[call, k], **d.who(call), parent_id=d.common["request_id"][call],
        operation="chat", provider=_names([MODELS[m].provider for m in MODEL_NAMES], model),
        request_model=_names(MODEL_NAMES, model),
        response_model=_when(ok, _names(MODEL_NAMES, model)),
        response_id=_when(ok, d.response_id[call]),
        input_tokens=_when(ok, t.input_tokens[call]),
        output_tokens=_when(ok, t.output_tokens[call]),
        cached_input_tokens=_when(ok, t.cached_tokens[call]),
        cache_creation_input_tokens=_when(ok, t.creation_tokens[call]), streamed=True,
        temperature=np.array([a.temperature for a in AGENTS])[t.agent[call]],
        max_tokens=np.array([a.max_tokens for a in AGENTS])[t.agent[call]], cost_usd=cost,
        cost_status=np.where(np.isnan(cost), "unpriced", "priced"),
        price_book_version=d.team.book.version,
        latency_ms=(t.att_end_us[call, k] - t.att_start_us[call, k]) / 1000.0,
        ttft_ms=t.att_ttft_ms[call, k], status=np.where(ok, "ok", "error"),
        error_type=_names([e.error_type for e in ERRORS], error),
        error_message=_names([e.message for e in ERRORS], error),
        http_status=_when(~ok & (http > 0), http), attempt=k + 1,
        fallback_index=(k >= 2).astype(np.int64),
    ).table()


def _cache(d: _Day) -> pa.Table:
    t = d.t
    return _Rows(
        EventKind.CACHE, t.n, ts=t.start_us + (t.lookup_ms * 1000).astype(np.int64),
        started_at=t.start_us, **d.who(np.arange(t.n), *_WHO[:7]),
        parent_id=d.common["request_id"], name="response-cache",
        request_model=_names(MODEL_NAMES, t.req_model),
        cache_outcome=np.where(t.hit, "hit", "miss"), cache_key=d.key,
        saved_cost_usd=t.saved_cost, saved_latency_ms=t.saved_latency_ms,
        latency_ms=t.lookup_ms, status="ok",
    ).table()


def _embedding_cost(d: _Day, tokens: Arr) -> Arr:
    costs = [d.team.book.cost(EMBEDDING_MODEL, x, 0) for x in tokens.tolist()]
    return np.array([np.nan if c is None else c for c in costs], dtype=np.float64)


def _retrieval(d: _Day) -> list[pa.Table]:
    """The architect's query embedding and design-doc retrieval before each call."""
    t = d.t
    rows = np.flatnonzero(t.emb_start_us > 0)
    who = d.who(rows, "trace_id", "user_id", "session_id", "agent")
    tokens = t.emb_tokens[rows]
    embedding = _Rows(
        EventKind.EMBEDDING, rows.size, ts=t.emb_end_us[rows], started_at=t.emb_start_us[rows],
        **who, name=INDEX_NAME, operation="embeddings", provider="openai",
        request_model=EMBEDDING_MODEL, response_model=EMBEDDING_MODEL, input_tokens=tokens,
        item_count=1, cost_usd=_embedding_cost(d, tokens), cost_status="priced",
        price_book_version=d.team.book.version,
        latency_ms=(t.emb_end_us[rows] - t.emb_start_us[rows]) / 1000.0, status="ok",
    ).table()
    retrieval = _Rows(
        EventKind.RETRIEVAL, rows.size, ts=t.retrieval_end_us[rows],
        started_at=t.emb_end_us[rows], **who, name=INDEX_NAME,
        item_count=d.rng.choice([5, 8, 8, 12], rows.size),
        value=np.round(d.rng.beta(8.0, 3.0, rows.size), 4),  # top similarity score
        latency_ms=(t.retrieval_end_us[rows] - t.emb_end_us[rows]) / 1000.0, status="ok",
    ).table()
    return [embedding, retrieval]


def _reindex(d: _Day) -> list[pa.Table]:
    """The nightly re-embedding of changed design-doc chunks (around 02:00 UTC)."""
    plan, rng = d.plan, d.rng
    begin = plan.start_us - plan.start_us % _DAY_US + 2 * 3600 * US
    begin += int(rng.integers(0, 600)) * US
    if not plan.start_us <= begin < plan.end_us:
        return []
    chunks = int(rng.integers(120, 600))
    tokens = np.array([chunks * int(rng.integers(300, 420))])
    duration_us = chunks * int(rng.integers(4_000, 8_000))
    return [_Rows(
        EventKind.EMBEDDING, 1, ts=np.array([begin + duration_us]), started_at=np.array([begin]),
        name=INDEX_NAME, operation="embeddings", provider="openai",
        request_model=EMBEDDING_MODEL, response_model=EMBEDDING_MODEL, input_tokens=tokens,
        item_count=chunks, cost_usd=_embedding_cost(d, tokens), cost_status="priced",
        price_book_version=d.team.book.version, latency_ms=duration_us / 1000.0, status="ok",
        attributes=orjson.dumps({"synthetic": True, "job": "reindex"}).decode(),
    ).table()]


def _exposures(d: _Day) -> pa.Table:
    """``experiment.exposure`` at each user's first review call of the whole history."""
    t = d.t
    order = np.flatnonzero(t.variant >= 0)
    order = order[np.argsort(t.start_us[order], kind="stable")]
    first: list[int] = []
    for row in order.tolist():
        user = int(t.user[row])
        if user not in d.state.exposed:
            d.state.exposed.add(user)
            first.append(row)
    rows = np.array(first, dtype=np.int64)
    return _Rows(
        EventKind.EXPERIMENT_EXPOSURE, rows.size, ts=t.start_us[rows],
        **d.who(rows, "trace_id", "user_id", "session_id", "agent", "experiment", "variant"),
        parent_id=d.common["request_id"][rows], name=EXPERIMENT,
    ).table()


def _budgets(d: _Day) -> pa.Table:
    """A warning at 80 % and a critical event at 100 % of a user's daily spend limit."""
    t = d.t
    if t.n == 0:
        return _Rows(EventKind.BUDGET, 0).table()
    order = np.lexsort((t.end_us, t.user))
    spend = np.nan_to_num(t.cost[order])
    users = t.user[order]
    same_user = np.r_[False, users[1:] == users[:-1]]
    starts = np.flatnonzero(~same_user)
    total = np.cumsum(spend)
    running = total - np.repeat(total[starts] - spend[starts], np.diff(np.r_[starts, users.size]))
    rows: list[int] = []
    fractions: list[float] = []
    values: list[float] = []
    for fraction, _ in BUDGET_FRACTIONS:
        crossed = running >= fraction * DAILY_USER_BUDGET_USD
        for i in np.flatnonzero(crossed & ~(np.r_[False, crossed[:-1]] & same_user)).tolist():
            rows.append(int(order[i]))
            fractions.append(fraction)
            values.append(float(running[i]))
    index = np.array(rows, dtype=np.int64)
    severity = dict(BUDGET_FRACTIONS)
    return _Rows(
        EventKind.BUDGET, index.size, ts=t.end_us[index] + 1000,
        **d.who(index, "trace_id", "user_id", "session_id", "agent"),
        parent_id=d.common["request_id"][index], name="daily-user-spend",
        severity=np.array([severity[f] for f in fractions], dtype=object),
        value=np.round(np.array(values, dtype=np.float64), 6),
        threshold=np.array(fractions, dtype=np.float64) * DAILY_USER_BUDGET_USD,
        attributes=np.array([orjson.dumps({"synthetic": True, "limit_usd": DAILY_USER_BUDGET_USD,
                                           "fraction": f, "scope": "user/day"}).decode()
                             for f in fractions], dtype=object),
    ).table()


def _alerts(d: _Day) -> pa.Table:
    """Fire and resolve an alert on the provider error rate per 15-minute window.

    Like a Prometheus rule with ``for: 30m``: it fires after ``ALERT_FOR_WINDOWS`` windows
    in a row above the threshold (with enough requests to judge) and resolves at the first
    window below it, so ordinary fault noise in quiet hours pages nobody.
    """
    t, plan, state = d.t, d.plan, d.state
    made = np.arange(t.att_model.shape[1])[None, :] < np.where(t.hit, 0, t.n_attempts)[:, None]
    size = int((plan.end_us - plan.start_us + ALERT_WINDOW_US - 1) // ALERT_WINDOW_US)
    window = np.clip((t.att_start_us[made] - plan.start_us) // ALERT_WINDOW_US, 0, size - 1)
    requests = np.bincount(window, minlength=size)
    failures = np.bincount(window, weights=t.att_error[made] >= 0, minlength=size)
    stamps: list[int] = []
    states: list[str] = []
    rates: list[float] = []
    counts: list[int] = []
    for w in range(size):
        rate = float(failures[w] / requests[w]) if requests[w] else 0.0
        breaching = rate > ERROR_RATE_THRESHOLD and requests[w] >= ALERT_MIN_REQUESTS
        state.breaching_windows = state.breaching_windows + 1 if breaching else 0
        firing = state.breaching_windows >= ALERT_FOR_WINDOWS or (state.alert_firing and breaching)
        if firing != state.alert_firing:
            state.alert_firing = firing
            stamps.append(min(plan.start_us + (w + 1) * ALERT_WINDOW_US, plan.end_us - 1))
            states.append("firing" if firing else "resolved")
            rates.append(rate)
            counts.append(int(requests[w]))
    return _Rows(
        EventKind.ALERT, len(stamps), ts=np.array(stamps, dtype=np.int64),
        name="provider-error-rate",
        severity=np.array(["critical" if s == "firing" else "info" for s in states], dtype=object),
        value=np.round(np.array(rates, dtype=np.float64), 6),
        threshold=np.full(len(stamps), ERROR_RATE_THRESHOLD), item_count=np.array(counts),
        attributes=np.array([orjson.dumps({"synthetic": True, "state": s,
                                           "window_minutes": 15}).decode() for s in states],
                            dtype=object),
    ).table()
