"""What would caching have saved? Counterfactual replays of the event log.

* Response cache: ``replay`` runs the ``llm.call`` events in time order through a simulated
  cache (exact key or semantic, TTL, LRU byte bound, deterministic-only or not) and adds up
  the cost and latency of its hits, so a team picks a policy from its own traffic instead
  of guessing; ``compare_policies`` sets policies side by side.
* Provider prompt caching: ``prefix_reuse`` finds each request's longest prefix of 512-token
  block ids (imported Mooncake traces carry them) that an earlier request sent, which is
  what an OpenAI- or Anthropic-style prompt cache serves; ``prefix_savings`` prices it.

The analysis is pure over DataFrames and arrays; the ``load_*`` helpers run one query each.
A logged hit of a real cache costs $0, so its ``saved_cost_usd``/``saved_latency_ms`` are
used: the replay starts from what every request would have cost with no cache at all.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.llm.pricing import PriceBook

__all__ = [
    "DEFAULT_PREFIX_MODELS", "CacheAnalysis", "Policy", "PolicyResult", "PrefixBlocks",
    "PrefixReuse", "analyze_workspace", "compare_policies", "default_policies", "embed_texts",
    "load_prefix_blocks", "load_requests", "prefix_reuse", "prefix_savings", "replay",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DEFAULT_PREFIX_MODELS: Final = ("gpt-4o", "claude-3-5-sonnet-20241022")
BYTES_PER_TOKEN: Final = 4  # an approximate cached entry: request and answer, ~4 bytes a token
_MIB: Final = 1 << 20
_PER_MILLION: Final = 1_000_000.0
_NO_KEYS: Final = "no cache keys in the log (events imported from traces carry none)"
_NO_TEXT: Final = 'no prompt text in the log: semantic analysis needs content_policy = "full"'


def _where(kinds: Sequence[str], since: datetime | None,
           until: datetime | None) -> tuple[str, list[Any]]:
    """A WHERE clause and its parameters for kinds and ``since <= ts < until``."""
    clauses = ["list_contains(CAST(? AS VARCHAR[]), kind)"]
    params: list[Any] = [list(kinds)]
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            if bound.tzinfo is None:
                raise ValueError(f"{bound.isoformat()} has no time zone; pass an aware datetime")
            clauses.append(f"ts {op} ?")
            params.append(bound)
    return " AND ".join(clauses), params


def load_requests(store: EventStore, *, since: datetime | None = None,
                  until: datetime | None = None,
                  kinds: Sequence[str] = ("llm.call",)) -> pd.DataFrame:
    """The calls to replay, in time order, with what each would have cost uncached.

    ``deterministic`` is the client's attribute, else temperature 0 (older logs);
    ``storable`` is false for failed calls, which no cache keeps; ``entry_bytes`` is
    (input + output tokens) x 4, an approximate cached entry.
    """
    where, params = _where(kinds, since, until)
    uncached = ", ".join(f"CASE WHEN cache_outcome IN ('hit', 'semantic_hit') THEN "
                         f"coalesce(saved_{name}, {name}) ELSE {name} END AS {name}"
                         for name in ("cost_usd", "latency_ms"))
    return store.df(
        f"SELECT ts, cache_key, request_model, provider, {uncached}, "
        "coalesce(TRY_CAST(attributes->>'deterministic' AS BOOLEAN), temperature = 0, false) "
        "AS deterministic, coalesce(status, 'ok') <> 'error' AS storable, prompt_text, "
        f"(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) * {BYTES_PER_TOKEN} "
        f"AS entry_bytes FROM events WHERE {where} ORDER BY ts, event_id",
        params,
    )


@dataclass(frozen=True, slots=True)
class Policy:
    """One response-cache configuration to replay.

    ``ttl_seconds`` None keeps entries forever; ``max_bytes`` None is unbounded, else the
    least recently used entries are evicted by approximate size. ``threshold`` is the
    cosine similarity a semantic hit needs.
    """

    name: str
    ttl_seconds: float | None = None
    max_bytes: int | None = None
    deterministic_only: bool = True
    mode: Literal["exact", "semantic"] = "exact"
    threshold: float = 0.95

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "semantic"):
            raise ValueError(f"mode must be 'exact' or 'semantic', not {self.mode!r}")
        if self.ttl_seconds is not None and self.ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive (None: forever)")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive (None: unbounded)")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """What one policy would have done: ``lookups`` eligible requests, ``hits`` answered
    from the cache, ``bypassed`` not eligible. ``unavailable`` says why nothing could be
    replayed (then every request counts as bypassed)."""

    policy: Policy
    requests: int
    lookups: int
    hits: int
    bypassed: int
    dollars_saved: float
    latency_saved_ms: float
    total_cost_usd: float
    evictions: int = 0
    unavailable: str | None = None

    @property
    def hit_rate(self) -> float:
        return _share(self.hits, self.lookups)

    @property
    def spend_saved_share(self) -> float:
        """Share of all the requests' spend (bypassed ones included) the hits saved."""
        return _share(self.dollars_saved, self.total_cost_usd)


def default_policies() -> list[Policy]:
    """TTL 1h/24h/forever x deterministic-only/all x 64 MiB/unbounded, plus semantic 0.95."""
    policies = []
    for ttl, age in ((3600.0, "1h"), (86_400.0, "24h"), (None, "forever")):
        for only in (True, False):
            for bound in (64 * _MIB, None):
                name = (f"exact {age} {'deterministic' if only else 'all'} "
                        f"{'64 MiB' if bound else 'unbounded'}")
                policies.append(Policy(name, ttl, bound, only))
    policies.append(Policy("semantic 0.95 24h deterministic", 86_400.0, None, True,
                           "semantic", 0.95))
    return policies


@dataclass(slots=True)
class _Requests:
    """The request columns as arrays in time order, shared by every policy replayed."""

    t: FloatArray
    codes: IntArray  # cache_key as an integer, -1 where there is none
    deterministic: BoolArray
    storable: BoolArray
    size: IntArray
    cost: FloatArray
    latency: FloatArray
    models: IntArray
    texts: list[str | None]
    n: int
    neighbours: dict[float, dict[int, list[int]]] = field(default_factory=dict)


def _column(frame: pd.DataFrame, name: str, default: Any) -> pd.Series:
    return frame[name] if name in frame else pd.Series(default, index=frame.index)


def _numbers(values: pd.Series) -> FloatArray:
    """Floats with NULL (an unpriced call, an unknown latency) as 0: nothing to save."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


def _prepare(requests: pd.DataFrame) -> _Requests:
    ts = requests["ts"]  # datetimes, or seconds for frames built by hand
    if not pd.api.types.is_numeric_dtype(ts):
        ts = (pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    t = np.asarray(ts, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    frame = requests.iloc[order]
    codes, _ = pd.factorize(_column(frame, "cache_key", None))
    models, _ = pd.factorize(_column(frame, "request_model", "").fillna(""))
    texts = _column(frame, "prompt_text", None)
    return _Requests(
        t=t[order],
        codes=np.asarray(codes, dtype=np.int64),
        deterministic=_column(frame, "deterministic", False).fillna(False).to_numpy(bool),
        storable=_column(frame, "storable", True).fillna(True).to_numpy(bool),
        size=_column(frame, "entry_bytes", 0).fillna(0).to_numpy(np.int64),
        cost=_numbers(_column(frame, "cost_usd", 0.0)),
        latency=_numbers(_column(frame, "latency_ms", 0.0)),
        models=np.asarray(models, dtype=np.int64),
        texts=[text if isinstance(text, str) else None for text in texts.tolist()],
        n=int(t.size),
    )


class _Cache:
    """Entries by id in LRU order, each expiring ``ttl`` seconds after it was stored, the
    least recently used evicted while their approximate bytes exceed ``max_bytes``.

    Expired entries are dropped as time passes (like ``cachetools.TTLCache``), so they never
    take room from live ones; hits do not extend a TTL.
    """

    def __init__(self, ttl: float | None, max_bytes: int | None) -> None:
        self.ttl, self.max_bytes = ttl, max_bytes
        self.entries: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self.expiry: deque[tuple[float, int]] = deque()
        self.used = self.evictions = 0

    def expire(self, now: float) -> None:
        ttl, expiry, entries = self.ttl, self.expiry, self.entries
        while ttl is not None and expiry and now - expiry[0][0] >= ttl:
            stored, key = expiry.popleft()
            entry = entries.get(key)
            if entry is not None and entry[0] == stored:
                del entries[key]
                self.used -= entry[1]

    def touch(self, key: int) -> bool:
        if key not in self.entries:
            return False
        if self.max_bytes is not None:
            self.entries.move_to_end(key)
        return True

    def store(self, key: int, now: float, size: int) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            return  # larger than the whole cache: never kept
        self.entries[key] = (now, size)
        self.used += size
        if self.ttl is not None:
            self.expiry.append((now, key))
        while self.max_bytes is not None and self.used > self.max_bytes:
            _, (_, freed) = self.entries.popitem(last=False)
            self.used -= freed
            self.evictions += 1


def _first_store_hits(req: _Requests, eligible: BoolArray) -> BoolArray:
    """Hits of a cache that keeps everything forever: any lookup after its key's first store."""
    stores = np.flatnonzero(eligible & req.storable)
    first = np.full(int(req.codes.max(initial=-1)) + 1, req.n, dtype=np.int64)
    keys, at = np.unique(req.codes[stores], return_index=True)
    first[keys] = stores[at]
    hit = np.zeros(req.n, dtype=bool)
    rows = np.flatnonzero(eligible)
    hit[rows] = rows > first[req.codes[rows]]
    return hit


def _exact_hits(req: _Requests, eligible: BoolArray, policy: Policy) -> tuple[BoolArray, int]:
    if policy.ttl_seconds is None and policy.max_bytes is None:
        return _first_store_hits(req, eligible), 0
    cache = _Cache(policy.ttl_seconds, policy.max_bytes)
    hit = np.zeros(req.n, dtype=bool)
    t, codes, size, storable = (req.t.tolist(), req.codes.tolist(), req.size.tolist(),
                                req.storable.tolist())
    expire, touch, store = cache.expire, cache.touch, cache.store
    for i in np.flatnonzero(eligible).tolist():
        expire(t[i])
        if touch(codes[i]):
            hit[i] = True
        elif storable[i]:
            store(codes[i], t[i], size[i])
    return hit, cache.evictions


def _semantic_hits(req: _Requests, eligible: BoolArray, policy: Policy) -> tuple[BoolArray, int]:
    """Hit when a live stored request of the same model is similar enough (best first)."""
    if policy.threshold not in req.neighbours:
        req.neighbours[policy.threshold] = _neighbours(req, policy.threshold)
    neighbours = req.neighbours[policy.threshold]
    cache = _Cache(policy.ttl_seconds, policy.max_bytes)
    hit = np.zeros(req.n, dtype=bool)
    for i in np.flatnonzero(eligible).tolist():
        cache.expire(float(req.t[i]))
        hit[i] = any(cache.touch(j) for j in neighbours.get(i, ()))
        if not hit[i] and req.storable[i]:
            cache.store(i, float(req.t[i]), int(req.size[i]))
    return hit, cache.evictions


def _neighbours(req: _Requests, threshold: float, block: int = 1024) -> dict[int, list[int]]:
    """For each request with text, the earlier ones of its model at cosine >= threshold,
    most similar first (blocked matrix products: memory stays at ``block`` rows)."""
    found: dict[int, list[int]] = {}
    with_text = np.array([text is not None for text in req.texts], dtype=bool)
    for model in np.unique(req.models[with_text]).tolist():
        rows = np.flatnonzero(with_text & (req.models == model))
        vectors = embed_texts([req.texts[i] or "" for i in rows.tolist()])
        for start in range(0, rows.size, block):
            stop = min(start + block, rows.size)
            sims = vectors[start:stop] @ vectors[:stop].T
            sims[np.triu_indices(stop - start, k=start, m=stop)] = -1.0  # only earlier ones
            a, b = np.nonzero(sims >= threshold - 1e-6)
            for i, j in sorted(zip(a.tolist(), b.tolist(), strict=True),
                               key=lambda p: (p[0], -sims[p[0], p[1]])):
                found.setdefault(int(rows[start + i]), []).append(int(rows[j]))
    return found


def _replay(req: _Requests, policy: Policy) -> PolicyResult:
    exact = policy.mode == "exact"
    eligible = (req.codes >= 0 if exact
                else np.array([text is not None for text in req.texts], dtype=bool))
    if req.n and not eligible.any():
        return PolicyResult(policy, req.n, 0, 0, req.n, 0.0, 0.0, float(req.cost.sum()),
                            unavailable=_NO_KEYS if exact else _NO_TEXT)
    if policy.deterministic_only:
        eligible &= req.deterministic
    hits, evictions = (_exact_hits if exact else _semantic_hits)(req, eligible, policy)
    lookups = int(eligible.sum())
    return PolicyResult(policy, req.n, lookups, int(hits.sum()), req.n - lookups,
                        float(req.cost[hits].sum()), float(req.latency[hits].sum()),
                        float(req.cost.sum()), evictions)


def replay(requests: pd.DataFrame, policy: Policy) -> PolicyResult:
    """Replay ``requests`` (as ``load_requests`` returns them) through ``policy``'s cache.

    A request is looked up if it is eligible (it has a key or, for semantic, prompt text;
    and is deterministic where the policy asks). A lookup hits when a matching entry was
    stored earlier, is younger than the TTL and was not evicted; a miss stores its own
    entry if the call succeeded. A hit saves that request's cost and latency.
    """
    return _replay(_prepare(requests), policy)


def _table(results: Iterable[PolicyResult]) -> pd.DataFrame:
    return pd.DataFrame([{
        "policy": r.policy.name, "mode": r.policy.mode, "hit_rate_pct": 100 * r.hit_rate,
        "hits": r.hits, "lookups": r.lookups, "bypassed": r.bypassed,
        "dollars_saved": r.dollars_saved, "spend_saved_pct": 100 * r.spend_saved_share,
        "latency_saved_ms": r.latency_saved_ms, "evictions": r.evictions,
        "unavailable": r.unavailable,
    } for r in results])


def compare_policies(requests: pd.DataFrame, policies: Iterable[Policy]) -> pd.DataFrame:
    """One row per policy: hit rate %, hits, lookups, $ saved, % of spend, latency saved."""
    req = _prepare(requests)
    return _table(_replay(req, policy) for policy in policies)


_WORD: Final = re.compile(r"\w+")


def _features(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    joined = f" {' '.join(words)} "
    return [f"w:{w}" for w in words] + [f"c:{joined[i:i + 3]}" for i in range(len(joined) - 2)]


def embed_texts(texts: Sequence[str], *, dim: int = 2048) -> NDArray[np.float32]:
    """Unit vectors of hashed words and character trigrams (CRC-32, signed), one per text.

    An offline, deterministic approximation of semantic similarity: it sees rewording
    only as far as words and trigrams overlap. Embeddings from ``devora_lab.rag`` will
    replace it; the replay does not depend on which one is used.
    """
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        hashes = np.fromiter((zlib.crc32(f.encode()) for f in _features(text)), dtype=np.uint32)
        signs = np.where(hashes >> 31, -1.0, 1.0)
        out[row] = np.bincount(hashes % dim, weights=signs, minlength=dim)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


class PrefixBlocks(NamedTuple):
    """Each request's prefix block ids in time order, and its input tokens."""

    blocks: list[list[int]]
    input_tokens: list[int]


def load_prefix_blocks(store: EventStore, *, since: datetime | None = None,
                       until: datetime | None = None, block_tokens: int = 512) -> PrefixBlocks:
    """The ``hash_ids`` of ``llm.call`` events (imported Mooncake traces), in time order."""
    where, params = _where(("llm.call",), since, until)
    table = store.arrow(
        "SELECT CAST(json_extract(attributes, '$.hash_ids') AS BIGINT[]) AS blocks, "
        "input_tokens FROM events "
        f"WHERE {where} AND json_type(attributes, '$.hash_ids') = 'ARRAY' ORDER BY ts, event_id",
        params,
    )
    blocks = [ids or [] for ids in table.column("blocks").to_pylist()]
    tokens = table.column("input_tokens").to_pylist()
    return PrefixBlocks(blocks, [len(ids) * block_tokens if n is None else int(n)
                                 for ids, n in zip(blocks, tokens, strict=True)])


@dataclass(frozen=True, slots=True)
class PrefixReuse:
    """How much input a prefix cache could have served.

    ``blocks_reused`` counts leading blocks whose whole prefix an earlier request sent
    (what a provider cache serves); ``blocks_seen_before`` counts blocks seen earlier at any
    position, an upper bound. Reused tokens are capped by each request's input tokens; the
    rest, ``tokens_written``, are what a cache-writing provider stores for later requests.
    """

    block_tokens: int
    requests: int
    requests_with_hit: int
    blocks_total: int
    blocks_reused: int
    blocks_seen_before: int
    tokens_total: int
    tokens_reused: int
    prefix_blocks: IntArray = field(repr=False, compare=False)

    @property
    def block_share(self) -> float:
        return _share(self.blocks_reused, self.blocks_total)

    @property
    def seen_block_share(self) -> float:
        return _share(self.blocks_seen_before, self.blocks_total)

    @property
    def token_share(self) -> float:
        return _share(self.tokens_reused, self.tokens_total)

    @property
    def tokens_written(self) -> int:
        return self.tokens_total - self.tokens_reused


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _prefix_lengths(blocks: Sequence[Sequence[int]], ttl_requests: int | None) -> IntArray:
    """Walk a trie of block-id prefixes: each request's reusable prefix is its longest run
    of nodes each used (sent or read) within the last ``ttl_requests`` requests."""
    trie: dict[tuple[int, int], int] = {}
    last_used = [0]  # by node; node 0 is the root
    lengths = np.zeros(len(blocks), dtype=np.int64)
    for i, ids in enumerate(blocks):
        node, path = 0, []
        for block in ids:
            child = trie.get((node, block))
            if child is None or (ttl_requests is not None and i - last_used[child] > ttl_requests):
                break
            node = child
            path.append(child)
        lengths[i] = len(path)
        for block in ids[len(path):]:  # new (or expired) nodes: written now
            node = trie.setdefault((node, block), len(last_used))
            if node == len(last_used):
                last_used.append(i)
            path.append(node)
        for node in path:
            last_used[node] = i
    return lengths


def prefix_reuse(blocks: Sequence[Sequence[int]], *, block_tokens: int = 512,
                 ttl_requests: int | None = None,
                 input_tokens: Sequence[int] | None = None) -> PrefixReuse:
    """Per request in order, the longest prefix of its block ids an earlier request sent.

    ``ttl_requests`` expires a prefix not used for that many requests, like provider caches
    whose TTL refreshes on use; ``input_tokens`` (default: blocks x ``block_tokens``) caps
    the tokens a partial last block holds.
    """
    prefix = _prefix_lengths(blocks, ttl_requests)
    seen: set[int] = set()
    seen_before = 0
    for ids in blocks:
        seen_before += sum(1 for block in ids if block in seen)
        seen.update(ids)
    counts = np.array([len(ids) for ids in blocks], dtype=np.int64)
    tokens = (counts * block_tokens if input_tokens is None
              else np.asarray(input_tokens, dtype=np.int64))
    reused = np.minimum(prefix * block_tokens, tokens)
    return PrefixReuse(block_tokens, len(blocks), int(np.count_nonzero(prefix)),
                       int(counts.sum()), int(prefix.sum()), seen_before, int(tokens.sum()),
                       int(reused.sum()), prefix)


def prefix_savings(reuse: PrefixReuse, model: str,
                   price_book: PriceBook | None = None) -> float | None:
    """Dollars prompt caching saves on input vs none; None when the model is not priced.

    Reused tokens cost the cached-input rate instead of the input rate; where the model has
    a cache-write rate (Anthropic) every token not reused is written at that premium, so
    the savings can be negative when little is reused. Minimum cacheable lengths and
    long-context rates are ignored.
    """
    from devora_lab.llm.pricing import PriceBook

    price = (price_book or PriceBook.default()).price(model)
    if price is None:
        return None
    cached = price.cached_input if price.cached_input is not None else price.input
    saved = reuse.tokens_reused * (price.input - cached)
    if price.cache_write is not None:
        saved -= reuse.tokens_written * (price.cache_write - price.input)
    return saved / _PER_MILLION


@dataclass(frozen=True)
class CacheAnalysis:
    """The policy table over a log and, for imported traces, the prefix-caching estimate."""

    requests: int
    keyed_requests: int
    with_prompt_text: int
    results: tuple[PolicyResult, ...]
    table: pd.DataFrame
    prefix: PrefixReuse | None
    prefix_savings: dict[str, float | None]


def analyze_workspace(store: EventStore, policies: Sequence[Policy] | None = None, *,
                      since: datetime | None = None, until: datetime | None = None,
                      models: Sequence[str] = DEFAULT_PREFIX_MODELS,
                      price_book: PriceBook | None = None) -> CacheAnalysis:
    """Replay ``policies`` (default: ``default_policies()``) over the log's ``llm.call``
    events and, where they carry prefix block ids, estimate prompt caching per model."""
    requests = load_requests(store, since=since, until=until)
    req = _prepare(requests)
    results = tuple(_replay(req, policy) for policy in policies or default_policies())
    blocks = load_prefix_blocks(store, since=since, until=until)
    prefix = (prefix_reuse(blocks.blocks, input_tokens=blocks.input_tokens)
              if blocks.blocks else None)
    savings = ({model: prefix_savings(prefix, model, price_book) for model in models}
               if prefix is not None else {})
    return CacheAnalysis(req.n, int((req.codes >= 0).sum()),
                         sum(text is not None for text in req.texts), results,
                         _table(results), prefix, savings)
