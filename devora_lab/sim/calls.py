"""One day of a team's logical LLM calls, generated column-wise with numpy.

``simulate_day`` returns a ``CallTable``: one row per logical call (what ``llm.call``
records) plus up to four provider attempts per row (what ``llm.attempt`` records). Every
rule that makes the history realistic lives here, as data tables one can tune:

* who: ~25 users with Zipf-skewed activity and per-agent affinity; sessions break after
  25 idle minutes;
* what: token lengths from the fitted traces (``traces.TraceModel``) scaled per agent, a
  per-agent model mix with a small share of ``local-llama``, a model the price book does
  not know;
* how it went: transient faults (429/500/529/timeouts, ~3 % of calls) retried once on the
  same model, then one fallback model; rare non-retryable 400s; an injected overload
  window on one day; a response cache whose hits replay an earlier call's tokens;
* what it cost: provider prompt caching from Mooncake's prefix-reuse figures, priced
  with the shipped ``PriceBook`` (``None`` for unknown models, never $0);
* how long it took: TTFT (plus prefill per input token) + output tokens x time per token,
  both with lognormal noise, plus backoff between attempts.

Timestamps are Unix microseconds (int64); missing numbers are NaN and codes -1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

import numpy as np
from numpy.typing import NDArray

from devora_lab.llm.pricing import PriceBook
from devora_lab.sim.traces import DailyProfile, EmpiricalDistribution, TraceModel, fitted_traces

__all__ = [
    "AGENTS", "AGENT_NAMES", "CODER_TEMPLATE_VERSIONS", "ERRORS", "EXPERIMENT", "MODELS",
    "MODEL_NAMES", "REVIEW_TEMPLATE_VERSIONS", "US", "USERS", "VARIANTS", "AgentSpec",
    "CallTable", "DayPlan", "ErrorSpec", "ModelSpec", "Team", "simulate_day", "variant_for",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]
US: Final = 1_000_000
MAX_ATTEMPTS: Final = 4  # two on the requested model, then two on its fallback


@dataclass(frozen=True)
class ModelSpec:
    """Provider, speed and fallback of one chat model (medians; noise is added)."""

    name: str
    provider: str
    ttft_ms: float
    prefill_ms_per_token: float
    tpot_ms: float
    fallback: str


@dataclass(frozen=True)
class AgentSpec:
    """One agent: its share of calls, token shape, model mix and cache behaviour."""

    name: str
    share: float
    trace: str
    input_scale: float
    output_scale: float
    max_tokens: int
    temperature: float
    template: str
    models: tuple[tuple[str, float], ...]
    cache_hit_rate: float


@dataclass(frozen=True)
class ErrorSpec:
    """One kind of failed provider request and how long it takes to fail."""

    error_type: str
    http_status: int  # 0 for a client-side timeout (logged as NULL)
    message: str
    latency_ms: float


MODELS: Final = {m.name: m for m in (
    ModelSpec("gpt-4o", "openai", 420.0, 0.030, 11.5, "claude-3-5-sonnet-20241022"),
    ModelSpec("gpt-4o-mini", "openai", 320.0, 0.015, 7.5, "claude-3-haiku-20240307"),
    ModelSpec("claude-3-5-sonnet-20241022", "anthropic", 750.0, 0.035, 15.0, "gpt-4o"),
    ModelSpec("claude-3-haiku-20240307", "anthropic", 380.0, 0.012, 6.0, "gpt-4o-mini"),
    ModelSpec("local-llama", "ollama", 180.0, 0.080, 22.0, "gpt-4o-mini"),
)}
MODEL_NAMES: Final = tuple(MODELS)

AGENTS: Final = (
    AgentSpec("coder", 0.47, "azure_code", 1.0, 12.0, 4096, 0.2, "generate-component",
              (("gpt-4o", 0.42), ("claude-3-5-sonnet-20241022", 0.37), ("gpt-4o-mini", 0.17),
               ("local-llama", 0.04)), 0.06),
    AgentSpec("architect", 0.18, "mooncake", 0.35, 4.0, 4096, 0.7, "design-doc",
              (("claude-3-5-sonnet-20241022", 0.60), ("gpt-4o", 0.37), ("local-llama", 0.03)),
              0.04),
    AgentSpec("reviewer", 0.35, "azure_code", 2.0, 10.0, 2048, 0.0, "code-review",
              (("gpt-4o-mini", 0.50), ("claude-3-haiku-20240307", 0.33), ("gpt-4o", 0.14),
               ("local-llama", 0.03)), 0.14),
)
AGENT_NAMES: Final = tuple(a.name for a in AGENTS)

USERS: Final = (
    "amara", "ben", "chen", "dara", "elif", "farid", "greta", "hiro", "ines", "jonas", "kofi",
    "lena", "mateo", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tariq", "uma",
    "viktor", "wen", "yusuf", "zoe",
)
EXPERIMENT: Final = "review-prompt-v2"
VARIANTS: Final = ("control", "treatment")
REVIEW_TEMPLATE_VERSIONS: Final = ("1.3", "2.0")  # control, treatment
CODER_TEMPLATE_VERSIONS: Final = ("3.1", "3.2")  # before and after mid-history

ERRORS: Final = (
    ErrorSpec("RateLimitError", 429, "rate limit exceeded, retry after backoff", 120.0),
    ErrorSpec("InternalServerError", 500, "the server had an error processing the request",
              900.0),
    ErrorSpec("OverloadedError", 529, "overloaded_error: Overloaded", 300.0),
    ErrorSpec("APITimeoutError", 0, "request timed out after 30 s", 30_000.0),
    ErrorSpec("BadRequestError", 400, "invalid_request_error: prompt is too long", 200.0),
)
# Per provider: P(an attempt fails), P(the retry fails too), mix over ERRORS[0..3].
FAULTS: Final = {
    "openai": (0.025, 0.20, (0.55, 0.30, 0.00, 0.15)),
    "anthropic": (0.032, 0.20, (0.30, 0.15, 0.45, 0.10)),
    "ollama": (0.020, 0.20, (0.00, 0.50, 0.00, 0.50)),
}
SPIKE_FAULTS: Final = {
    "openai": (0.06, 0.25, (0.55, 0.30, 0.00, 0.15)),
    "anthropic": (0.45, 0.70, (0.05, 0.12, 0.80, 0.03)),
    "ollama": (0.020, 0.20, (0.00, 0.50, 0.00, 0.50)),
}
BAD_REQUEST_RATE: Final = 0.0015
SESSION_GAP_US: Final = 25 * 60 * US


def variant_for(user_id: str, experiment: str = EXPERIMENT) -> str:
    """The user's sticky variant: a hash of experiment and user, so it never flips."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return VARIANTS[int.from_bytes(digest[:8], "big") % len(VARIANTS)]


class Team:
    """The fixed cast of a history: users' activity per agent, trace models, prices."""

    def __init__(self, seed: int, book: PriceBook) -> None:
        rng = np.random.default_rng([seed, 0, 0])
        self.book = book
        rank = rng.permutation(len(USERS)) + 1
        activity = 1.0 / rank.astype(np.float64) ** 1.1
        affinity = rng.lognormal(0.0, 0.6, size=(len(AGENTS), len(USERS)))
        weights = activity * affinity
        self.user_p: F64 = weights / weights.sum(axis=1, keepdims=True)
        fitted = fitted_traces()
        self.traces = {name: TraceModel.from_fitted(name, fitted)
                       for name in ("azure_code", "mooncake")}
        reuse = fitted["traces"]["mooncake"]["prefix_reuse"]["prefix_hit_ratio"]["quantiles"]
        self.prefix_reuse = EmpiricalDistribution.from_quantiles(reuse)
        self.profile = DailyProfile()
        self.variant_of_user = np.array([VARIANTS.index(variant_for(u)) for u in USERS])


@dataclass(frozen=True)
class DayPlan:
    """One chunk of the history (normally one UTC day) and what is special about it."""

    start_us: int
    end_us: int
    ordinal: int  # date.toordinal() of the chunk's UTC day: seeds its random stream
    calls_per_day: float
    trend_origin_us: int
    coder_v2_from_us: int
    spike_us: tuple[int, int] | None = None


@dataclass
class CallTable:
    """One day's logical calls (rows) and their provider attempts (``att_*``, n x 4)."""

    arrival_us: I64
    start_us: I64
    end_us: I64
    agent: I64
    user: I64
    session: I64  # index into session_ids
    session_ids: list[str]
    variant: I64  # -1 outside the experiment
    coder_v2: B
    req_model: I64
    resp_model: I64  # -1 when no model answered
    input_tokens: I64
    output_tokens: I64
    cached_tokens: I64
    creation_tokens: I64
    truncated: B
    ok: B
    error: I64  # index into ERRORS of the final error, -1 if ok
    fallback: B
    n_attempts: I64  # provider requests made (0 for cache hits)
    att_model: I64
    att_error: I64  # -1 where the attempt succeeded
    att_start_us: I64
    att_end_us: I64
    att_ttft_ms: F64
    latency_ms: F64
    ttft_ms: F64
    cost: F64  # NaN where unpriced
    hit: B
    lookup_ms: F64
    saved_cost: F64
    saved_latency_ms: F64
    key_source: I64  # row whose prompt this row repeats (itself unless a cache hit)
    emb_start_us: I64  # architect prelude: query embedding then retrieval; 0 elsewhere
    emb_end_us: I64
    retrieval_end_us: I64
    emb_tokens: I64

    @property
    def n(self) -> int:
        return int(self.agent.size)


def _codes(rng: np.random.Generator, n: int, p: F64) -> I64:
    """``n`` category codes drawn with (unnormalised) probabilities ``p``."""
    return np.asarray(np.searchsorted(np.cumsum(p), rng.random(n) * p.sum(), side="right"),
                      dtype=np.int64)


def _sessions(t: I64, agent: I64, user: I64) -> I64:
    key = user * len(AGENTS) + agent
    order = np.lexsort((t, key))
    new = np.ones(t.size, dtype=bool)
    new[1:] = (np.diff(key[order]) != 0) | (np.diff(t[order]) > SESSION_GAP_US)
    session = np.empty(t.size, dtype=np.int64)
    session[order] = np.cumsum(new) - 1
    return session


def _prompt_cache(rng: np.random.Generator, team: Team, provider: NDArray[np.str_],
                  inputs: I64) -> tuple[I64, I64]:
    """Provider prompt-cache reads and writes, from Mooncake's prefix-hit ratios."""
    ratio = team.prefix_reuse.sample(rng, inputs.size)
    eligible = inputs >= 1024
    openai = (provider == "openai") & eligible
    anthropic = (provider == "anthropic") & eligible
    cached = np.zeros_like(inputs)
    cached[openai] = (np.floor(inputs[openai] * ratio[openai] / 128) * 128).astype(np.int64)
    cached[anthropic] = np.floor(inputs[anthropic] * ratio[anthropic]).astype(np.int64)
    writes = anthropic & (cached == 0) & (rng.random(inputs.size) < 0.35)
    creation = np.zeros_like(inputs)
    creation[writes] = np.floor(inputs[writes] * rng.uniform(0.3, 0.7, int(writes.sum())))
    return np.minimum(cached, inputs), creation.astype(np.int64)


def _faults(rng: np.random.Generator, providers: NDArray[np.str_], in_spike: B
            ) -> tuple[B, I64, F64]:
    """Per attempt: did it fail, with which error, P(the retry fails)."""
    n = providers.size
    p_fail = np.zeros(n)
    p_repeat = np.zeros(n)
    error = np.full(n, -1, dtype=np.int64)
    u = rng.random(n)
    for table, mask in ((FAULTS, ~in_spike), (SPIKE_FAULTS, in_spike)):
        for provider, (fail, repeat, mix) in table.items():
            rows = mask & (providers == provider)
            p_fail[rows], p_repeat[rows] = fail, repeat
            error[rows] = np.searchsorted(np.cumsum(mix), u[rows] * sum(mix), side="right")
    return rng.random(n) < p_fail, error, p_repeat


@dataclass
class _Attempts:
    """The provider requests of each call: up to four, on the model then its fallback."""

    model: I64  # n x 4
    failed: B  # n x 4
    error: I64  # n x 4, -1 where the attempt succeeded
    count: I64
    ok: B
    last: I64
    fallback: B


def simulate_day(team: Team, plan: DayPlan, rng: np.random.Generator) -> CallTable:
    """Every logical call of one day, with attempts, cache hits, latency and cost."""
    arrival = _arrivals(team, plan, rng)
    n = arrival.size
    agent, user, req_model, inputs, outputs, variant, truncated = _population(team, rng, n)
    architect = agent == AGENT_NAMES.index("architect")
    start, emb_end, retrieval_end, emb_tokens = _prelude(rng, arrival, architect)
    spike = np.zeros(n, dtype=bool)
    if plan.spike_us is not None:
        spike = (start >= plan.spike_us[0]) & (start < plan.spike_us[1])
    att = _attempt_plan(rng, req_model, spike)
    rows = np.arange(n)
    resp_model = np.where(att.ok, att.model[rows, att.last], -1)
    answered = np.where(att.ok, resp_model, req_model)
    provider_of = np.array([MODELS[m].provider for m in MODEL_NAMES])
    cached, creation = _prompt_cache(rng, team, provider_of[answered], inputs)
    timing = _timing(rng, att, answered, uncached=inputs - cached, outputs=outputs,
                     start=start)
    att_start, att_end, att_ttft, ttft, lookup_ms = timing
    end = att_end[rows, att.last]
    ok = att.ok
    billed = [np.where(ok, x, 0) for x in (inputs, outputs, cached, creation)]
    cost = _costs(team.book, answered, *billed)
    table = CallTable(
        arrival_us=arrival, start_us=start, end_us=end, agent=agent, user=user,
        session=np.zeros(n, dtype=np.int64), session_ids=[], variant=variant,
        coder_v2=start >= plan.coder_v2_from_us, req_model=req_model, resp_model=resp_model,
        input_tokens=billed[0], output_tokens=billed[1], cached_tokens=billed[2],
        creation_tokens=billed[3], truncated=truncated & ok, ok=ok,
        error=np.where(ok, -1, att.error[rows, att.last]), fallback=att.fallback,
        n_attempts=att.count, att_model=att.model, att_error=att.error,
        att_start_us=att_start, att_end_us=att_end, att_ttft_ms=att_ttft,
        latency_ms=(end - start) / 1000.0,
        ttft_ms=np.where(ok, (att_start[rows, att.last] - start) / 1000.0 + ttft, np.nan),
        cost=cost, hit=np.zeros(n, dtype=bool), lookup_ms=lookup_ms,
        saved_cost=np.full(n, np.nan), saved_latency_ms=np.full(n, np.nan),
        key_source=rows.astype(np.int64), emb_start_us=np.where(architect, arrival, 0),
        emb_end_us=np.where(architect, emb_end, 0),
        retrieval_end_us=np.where(architect, retrieval_end, 0), emb_tokens=emb_tokens)
    _cache_hits(rng, table)
    table.session = _sessions(table.start_us, agent, user)
    return table


def _arrivals(team: Team, plan: DayPlan, rng: np.random.Generator) -> I64:
    """Call start times: the Azure trace's burstiness on the team's daily profile."""
    def at(us: int) -> datetime:
        return datetime.fromtimestamp(us / US, tz=timezone.utc)

    profile = DailyProfile(trend_origin=at(plan.trend_origin_us))
    return team.traces["azure_code"].sample_arrivals(
        rng, at(plan.start_us), at(plan.end_us), profile, per_day=plan.calls_per_day)


def _population(team: Team, rng: np.random.Generator, n: int
                ) -> tuple[I64, I64, I64, I64, I64, I64, B]:
    """Agent, user, requested model, tokens, experiment variant and truncation per call."""
    agent = _codes(rng, n, np.array([a.share for a in AGENTS]))
    user = np.zeros(n, dtype=np.int64)
    req_model = np.zeros(n, dtype=np.int64)
    inputs = np.zeros(n, dtype=np.int64)
    outputs = np.zeros(n, dtype=np.int64)
    for code, spec in enumerate(AGENTS):
        rows = np.flatnonzero(agent == code)
        user[rows] = _codes(rng, rows.size, team.user_p[code])
        mix = np.array([w for _, w in spec.models])
        names = np.array([MODEL_NAMES.index(m) for m, _ in spec.models])
        req_model[rows] = names[_codes(rng, rows.size, mix)]
        inputs[rows], outputs[rows] = team.traces[spec.trace].sample_tokens(
            rng, rows.size, input_scale=spec.input_scale, output_scale=spec.output_scale)
    reviewer = agent == AGENT_NAMES.index("reviewer")
    variant = np.where(reviewer, team.variant_of_user[user], -1).astype(np.int64)
    treated = variant == 1  # the v2 prompt: a longer checklist, terser reviews
    inputs[treated] = np.rint(inputs[treated] * 1.12).astype(np.int64)
    outputs[treated] = np.maximum(np.rint(outputs[treated] * 0.85), 1).astype(np.int64)
    max_tokens = np.array([a.max_tokens for a in AGENTS])[agent]
    truncated = outputs >= max_tokens
    return agent, user, req_model, inputs, np.minimum(outputs, max_tokens), variant, truncated


def _prelude(rng: np.random.Generator, arrival: I64, architect: B) -> tuple[I64, I64, I64, I64]:
    """Architect tasks embed the query and retrieve design docs before the model call."""
    n = arrival.size
    emb_end = arrival + (rng.lognormal(np.log(110.0), 0.35, n) * 1000).astype(np.int64)
    retrieval_end = emb_end + (rng.lognormal(np.log(35.0), 0.4, n) * 1000).astype(np.int64)
    tokens = np.where(architect, np.rint(rng.lognormal(np.log(45.0), 0.6, n)) + 4, 0)
    start = np.where(architect, retrieval_end + 1000, arrival)
    return start, emb_end, retrieval_end, tokens.astype(np.int64)


def _attempt_plan(rng: np.random.Generator, req_model: I64, spike: B) -> _Attempts:
    """Which provider requests fail: retry once on the model, then two tries on its fallback.

    A first failure happens with the provider's fault rate; each retry fails again with
    ``P(repeat)`` (faults cluster), the fallback's first try with its own fault rate. A
    rare 400 fails at once without retry.
    """
    n = req_model.size
    fallback_of = np.array([MODEL_NAMES.index(MODELS[m].fallback) for m in MODEL_NAMES])
    model = np.repeat(req_model[:, None], MAX_ATTEMPTS, axis=1)
    model[:, 2:] = fallback_of[req_model][:, None]
    providers = np.array([MODELS[m].provider for m in MODEL_NAMES])[model]
    draw, error, p_repeat = _faults(rng, providers.ravel(), np.repeat(spike, MAX_ATTEMPTS))
    draw, error = draw.reshape(n, MAX_ATTEMPTS), error.reshape(n, MAX_ATTEMPTS)
    repeat = rng.random((n, MAX_ATTEMPTS)) < p_repeat.reshape(n, MAX_ATTEMPTS)
    failed = np.zeros((n, MAX_ATTEMPTS), dtype=bool)
    failed[:, 0] = draw[:, 0]
    failed[:, 1] = failed[:, 0] & repeat[:, 1]
    failed[:, 2] = failed[:, 1] & draw[:, 2]
    failed[:, 3] = failed[:, 2] & repeat[:, 3]
    bad_request = rng.random(n) < BAD_REQUEST_RATE
    failed[bad_request] = [True, False, False, False]
    error[bad_request, 0] = len(ERRORS) - 1
    count = np.where(bad_request, 1, 1 + failed[:, :3].sum(axis=1)).astype(np.int64)
    return _Attempts(model=model, failed=failed, error=np.where(failed, error, -1),
                     count=count, ok=~(failed[:, 3] | bad_request), last=count - 1,
                     fallback=failed[:, 1] & ~bad_request)


def _timing(rng: np.random.Generator, att: _Attempts, answered: I64, *, uncached: I64,
            outputs: I64, start: I64) -> tuple[I64, I64, F64, F64, F64]:
    """Attempt start/end times, TTFT of successful attempts, the call's TTFT, lookup time.

    A call first looks up the response cache (a few ms), then runs its attempts one after
    another with backoff after failures (plus a retry-after on 429s, none before the
    fallback). A successful attempt streams: TTFT (base + prefill of the uncached input)
    then output tokens at the model's time per token, each with lognormal noise.
    """
    n = answered.size
    specs = [MODELS[m] for m in MODEL_NAMES]
    ttft0 = np.array([s.ttft_ms for s in specs])[answered]
    prefill = np.array([s.prefill_ms_per_token for s in specs])[answered]
    tpot = np.array([s.tpot_ms for s in specs])[answered]
    ttft = (ttft0 + prefill * uncached) * rng.lognormal(0.0, 0.35, n)
    stream_ms = ttft + outputs * tpot * rng.lognormal(0.0, 0.18, n)
    err_ms = np.array([e.latency_ms for e in ERRORS])[np.maximum(att.error, 0)]
    noise = np.where(err_ms >= 30_000, 1.0, rng.lognormal(0.0, 0.4, (n, MAX_ATTEMPTS)))
    backoff_ms = np.array([700.0, 5.0, 1400.0, 0.0]) * rng.uniform(0.5, 1.5, (n, MAX_ATTEMPTS))
    backoff_ms = np.where(att.error == 0, backoff_ms + 1500.0, backoff_ms)  # retry-after
    lookup_ms = rng.uniform(1.5, 9.0, n)
    final = np.arange(MAX_ATTEMPTS)[None, :] == att.last[:, None]
    att_ms = np.where(att.failed, err_ms * noise, np.where(final, stream_ms[:, None], 0.0))
    exists = np.arange(MAX_ATTEMPTS)[None, :] < att.count[:, None]
    step_ms = np.where(exists, att_ms + np.where(att.failed, backoff_ms, 0.0), 0.0)
    before_ms = np.cumsum(step_ms, axis=1) - step_ms
    att_start = start[:, None] + ((lookup_ms[:, None] + before_ms) * 1000).astype(np.int64)
    att_end = att_start + (att_ms * 1000).astype(np.int64)
    att_ttft = np.where(exists & ~att.failed, ttft[:, None], np.nan)
    return att_start, att_end, att_ttft, ttft, lookup_ms


def _costs(book: PriceBook, model: I64, *tokens: I64) -> F64:
    """PriceBook.cost per row (exactly what a live client would log), NaN if unpriced."""
    inputs, outputs, cached, creation = (x.tolist() for x in tokens)
    names = [MODEL_NAMES[m] for m in model.tolist()]
    costs = [book.cost(name, i, o, c, w) for name, i, o, c, w in
             zip(names, inputs, outputs, cached, creation, strict=True)]
    return np.array([np.nan if c is None else c for c in costs], dtype=np.float64)


def _cache_hits(rng: np.random.Generator, t: CallTable) -> None:
    """Turn some calls into response-cache hits that replay an earlier call's response.

    A hit repeats the prompt of an earlier successful call of the same agent and model
    that day which had finished by then: it copies that call's tokens, costs nothing,
    answers in milliseconds and records what it saved. ``local-llama`` is never cached
    (it is served locally).
    """
    rate = np.array([a.cache_hit_rate for a in AGENTS])[t.agent]
    want = (rng.random(t.n) < rate) & (t.req_model != MODEL_NAMES.index("local-llama"))
    source = np.arange(t.n, dtype=np.int64)
    group = t.agent * len(MODEL_NAMES) + t.req_model
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)  # in time order: arrivals are sorted
        back = 1 + rng.geometric(0.08, rows.size)
        pos = np.arange(rows.size) - back
        valid = pos >= 0
        source[rows[valid]] = rows[pos[valid]]
        want[rows[~valid]] = False
    source = np.where(want, source, np.arange(t.n))
    while True:  # follow chains of hits back to the call that really ran
        chained = want[source] & (source != np.arange(t.n))
        if not chained.any():
            break
        source = np.where(chained, source[source], source)
    # The earlier call must have finished (and succeeded) before this lookup.
    hit = want & t.ok[source] & (t.end_us[source] < t.start_us)
    src = source[hit]
    t.hit = hit
    t.key_source = np.where(hit, source, np.arange(t.n))
    for name in ("input_tokens", "output_tokens", "cached_tokens", "creation_tokens"):
        getattr(t, name)[hit] = getattr(t, name)[src]
    t.truncated[hit] = t.truncated[src]
    t.resp_model[hit] = t.resp_model[src]
    t.ok[hit], t.error[hit], t.fallback[hit], t.n_attempts[hit] = True, -1, False, 0
    t.saved_cost[hit] = t.cost[src]
    t.saved_latency_ms[hit] = t.latency_ms[src]
    t.cost[hit] = 0.0
    serve_ms = t.lookup_ms[hit] + rng.uniform(2.0, 8.0, int(hit.sum()))
    t.latency_ms[hit] = serve_ms
    t.ttft_ms[hit] = serve_ms
    t.end_us[hit] = t.start_us[hit] + (serve_ms * 1000).astype(np.int64)
