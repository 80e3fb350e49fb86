"""Ways to spend less, each with an estimated monthly saving and the evidence behind it.

Every rule reads the event log over a window (default the last 30 days) and scales what
it finds to a 30-day month. A rule that lacks evidence says nothing: a cheaper model is
recommended only where an experiment ran both models on the same traffic and the cheaper
one is non-inferior on success rate (one-sided test at a stated margin), never on price
alone. The rules:

* ``cheaper_model`` — experiment variants that used different models;
* ``response_cache`` — exact repeats of a request (same prompt hash and model) that were
  sent to the provider again: what an exact cache would have saved;
* ``prompt_caching`` — long prompts from one template with little provider-side caching:
  what cached-input prices would save on the shared part (an upper bound: the shared
  prefix is at most the shortest prompt of the template);
* ``long_context`` — calls above ``long_context_tokens`` input: what retrieval or
  truncation to ``target_context_tokens`` would save;
* ``top_spenders`` — the users and agents with the largest share, to review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from devora_lab.costs.breakdown import top_spenders
from devora_lab.experiments.stats import noninferiority_proportions

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.llm.pricing import PriceBook

__all__ = ["Recommendation", "recommend"]

_MONTH_DAYS = 30.0
_MIN_TEMPLATE_CALLS = 20
_PROMPT_CACHE_MIN_TOKENS = 1024  # below this, OpenAI and Anthropic do not cache prefixes


@dataclass(frozen=True)
class Recommendation:
    """One suggestion: what to do, what it saves per month, and why we think so."""

    kind: str
    title: str
    monthly_saving_usd: float
    evidence: dict[str, Any] = field(default_factory=dict)
    rationale: str = ""


def _window(store: EventStore, days: float,
            until: datetime | None) -> tuple[datetime, datetime, float]:
    end = until or store.scalar("SELECT max(ts) FROM events") or datetime.now(timezone.utc)
    start = end - timedelta(days=days)
    first = store.scalar("SELECT min(ts) FROM events WHERE ts >= ?", [start]) or start
    covered = max((end - max(first, start)).total_seconds() / 86400, 1.0)
    return start, end, _MONTH_DAYS / covered  # scale to a month from the days with data


def _cheaper_model(store: EventStore, start: datetime, end: datetime, scale: float,
                   margin: float, alpha: float) -> list[Recommendation]:
    """Variants (not single calls: a fallback is not an experiment) that ran one model
    each, compared pairwise against the experiment's most expensive variant."""
    frame = store.df("""
        WITH calls AS (
            SELECT experiment, variant, coalesce(response_model, request_model) AS model,
                   agent, template_name, status, cost_usd
            FROM events WHERE kind = 'llm.call' AND experiment IS NOT NULL
                 AND variant IS NOT NULL AND ts >= ? AND ts <= ? AND cost_status = 'priced')
        SELECT experiment, variant, mode(model) AS model,
               max(n_model) / count(*) AS model_share,
               any_value(agent) AS agent, any_value(template_name) AS template,
               count(*) AS calls, count(*) FILTER (WHERE status = 'ok') AS successes,
               coalesce(sum(cost_usd), 0) AS cost_usd
        FROM (SELECT *, count(*) OVER (PARTITION BY experiment, variant, model) AS n_model
              FROM calls)
        GROUP BY 1, 2 HAVING count(*) >= 30""", [start, end])
    frame = frame[frame["model_share"] >= 0.9]
    found: list[Recommendation] = []
    frame = frame.assign(cost_per_call=frame["cost_usd"] / frame["calls"])
    for experiment, arms in frame.groupby("experiment"):
        control = arms.sort_values("cost_per_call").iloc[-1]
        for _, candidate in arms.iterrows():
            if candidate["model"] != control["model"]:
                found += _compare_arms(str(experiment), control, candidate, arms, scale,
                                       margin, alpha)
    return found


def _compare_arms(experiment: str, control: pd.Series, candidate: pd.Series,
                  arms: pd.DataFrame, scale: float, margin: float,
                  alpha: float) -> list[Recommendation]:
    test = noninferiority_proportions(int(control["successes"]), int(control["calls"]),
                                      int(candidate["successes"]), int(candidate["calls"]),
                                      margin=margin, alpha=alpha)
    if not test.non_inferior:
        return []
    monthly_calls = float(arms["calls"].sum()) * scale
    saving = (control["cost_per_call"] - candidate["cost_per_call"]) * monthly_calls
    return [Recommendation(
        kind="cheaper_model",
        title=f"Move {candidate['agent'] or candidate['template'] or experiment} from "
              f"{control['model']} to {candidate['model']}",
        monthly_saving_usd=float(saving),
        evidence={"experiment": experiment, "control_model": control["model"],
                  "candidate_model": candidate["model"],
                  "control_success": f"{int(control['successes'])}/{int(control['calls'])}",
                  "candidate_success": f"{int(candidate['successes'])}/"
                                       f"{int(candidate['calls'])}",
                  "difference": test.difference, "lower_bound": test.lower_bound,
                  "margin": margin, "p_value": test.p_value,
                  "cost_per_call": (float(control["cost_per_call"]),
                                    float(candidate["cost_per_call"]))},
        rationale=f"In experiment {experiment}, {candidate['model']} is not worse than "
                  f"{control['model']} on success rate by more than {margin:.0%} "
                  f"(one-sided p = {test.p_value:.3g}, lower bound {test.lower_bound:+.2%})"
                  f" and costs less per call; saving scaled to all of its traffic.")]


def _response_cache(store: EventStore, start: datetime, end: datetime,
                    scale: float) -> list[Recommendation]:
    row = store.df("""
        WITH sent AS (
            SELECT prompt_hash, coalesce(response_model, request_model) AS model, cost_usd,
                   row_number() OVER (PARTITION BY prompt_hash, request_model ORDER BY ts) AS n
            FROM events WHERE kind = 'llm.call' AND status = 'ok' AND prompt_hash IS NOT NULL
                 AND coalesce(cache_outcome NOT IN ('hit', 'semantic_hit'), true)
                 AND ts >= ? AND ts <= ?)
        SELECT count(*) AS calls, count(*) FILTER (WHERE n > 1) AS repeats,
               coalesce(sum(cost_usd) FILTER (WHERE n > 1), 0) AS repeat_cost
        FROM sent""", [start, end]).iloc[0]
    if int(row["repeats"]) == 0:
        return []
    share = int(row["repeats"]) / int(row["calls"])
    return [Recommendation(
        kind="response_cache", title="Serve exact repeats from the response cache",
        monthly_saving_usd=float(row["repeat_cost"]) * scale,
        evidence={"calls_sent": int(row["calls"]), "exact_repeats": int(row["repeats"]),
                  "cacheable_share": share, "repeat_cost_usd": float(row["repeat_cost"])},
        rationale=f"{share:.1%} of the calls sent were exact repeats (same prompt hash and "
                  "model) of an earlier successful call; an exact cache answers those for "
                  "free. `devora-lab cache analyze` compares TTLs and sizes.")]


def _prompt_caching(store: EventStore, book: PriceBook, start: datetime, end: datetime,
                    scale: float) -> list[Recommendation]:
    frame = store.df(f"""
        SELECT template_name AS template, coalesce(response_model, request_model) AS model,
               count(*) AS calls, min(input_tokens) AS shortest,
               coalesce(sum(cached_input_tokens), 0) / nullif(sum(input_tokens), 0) AS cached
        FROM events WHERE kind = 'llm.call' AND template_name IS NOT NULL AND status = 'ok'
             AND ts >= ? AND ts <= ?
        GROUP BY 1, 2 HAVING count(*) >= {_MIN_TEMPLATE_CALLS}
             AND min(input_tokens) >= {_PROMPT_CACHE_MIN_TOKENS}""", [start, end])
    found: list[Recommendation] = []
    for _, row in frame.iterrows():
        price = book.price(str(row["model"]))
        if price is None or price.cached_input is None or (row["cached"] or 0) > 0.5:
            continue
        saving = (int(row["shortest"]) * int(row["calls"]) * (1 - float(row["cached"] or 0))
                  * (price.input - price.cached_input) / 1e6 * scale)
        found.append(Recommendation(
            kind="prompt_caching",
            title=f"Enable provider prompt caching for template {row['template']} on "
                  f"{row['model']}",
            monthly_saving_usd=float(saving),
            evidence={"template": row["template"], "model": row["model"],
                      "calls": int(row["calls"]), "shortest_prompt_tokens": int(row["shortest"]),
                      "cached_share_now": float(row["cached"] or 0),
                      "input_price": price.input, "cached_input_price": price.cached_input},
            rationale="Every prompt of this template is long and little of it is cached now; "
                      "put the fixed part first and mark it cacheable. An upper bound: the "
                      "shared prefix is at most the shortest prompt."))
    return found


def _long_context(store: EventStore, book: PriceBook, start: datetime, end: datetime,
                  scale: float, long_tokens: int, target_tokens: int) -> list[Recommendation]:
    frame = store.df("""
        SELECT coalesce(response_model, request_model) AS model, count(*) AS calls,
               sum(input_tokens - ?) AS excess
        FROM events WHERE kind = 'llm.call' AND input_tokens > ? AND ts >= ? AND ts <= ?
        GROUP BY 1""", [target_tokens, long_tokens, start, end])
    found: list[Recommendation] = []
    for _, row in frame.iterrows():
        price = book.price(str(row["model"]))
        if price is None:
            continue
        saving = float(row["excess"]) * price.input / 1e6 * scale
        found.append(Recommendation(
            kind="long_context",
            title=f"Retrieve or truncate the {int(row['calls']):,} very long prompts to "
                  f"{row['model']}",
            monthly_saving_usd=saving,
            evidence={"model": row["model"], "calls": int(row["calls"]),
                      "threshold_tokens": long_tokens, "target_tokens": target_tokens,
                      "excess_input_tokens": int(row["excess"])},
            rationale=f"These calls sent more than {long_tokens:,} input tokens; RAG "
                      f"(retrieving the relevant {target_tokens:,} tokens) or truncation "
                      "would send the rest no more. Check answer quality on a sample."))
    return found


def _top_spenders(store: EventStore, start: datetime, end: datetime) -> list[Recommendation]:
    found: list[Recommendation] = []
    for dimension in ("user", "agent"):
        top = top_spenders(store, dimension, 3, since=start, until=end)
        if top.empty or float(top["share"].iloc[0]) < 0.25:
            continue
        lead = top.iloc[0]
        found.append(Recommendation(
            kind="top_spenders", title=f"Review {dimension} {lead[dimension]}: "
                                       f"{float(lead['share']):.0%} of spend",
            monthly_saving_usd=0.0,
            evidence={"dimension": dimension, "top": top.to_dict("records")},
            rationale="No saving is claimed: a large share is worth a look (a loop, a "
                      "verbose prompt, a model choice), not necessarily a fault."))
    return found


def recommend(store: EventStore, book: PriceBook, *, days: float = 30.0,
              until: datetime | None = None, margin: float = 0.02, alpha: float = 0.05,
              long_context_tokens: int = 32_000,
              target_context_tokens: int = 8_000) -> list[Recommendation]:
    """All recommendations over the last ``days`` before ``until``, biggest saving first."""
    if store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call'") == 0:
        return []
    start, end, scale = _window(store, days, until)
    found = [*_cheaper_model(store, start, end, scale, margin, alpha),
             *_response_cache(store, start, end, scale),
             *_prompt_caching(store, book, start, end, scale),
             *_long_context(store, book, start, end, scale, long_context_tokens,
                            target_context_tokens),
             *_top_spenders(store, start, end)]
    return sorted(found, key=lambda r: -r.monthly_saving_usd)
