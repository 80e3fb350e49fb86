"""The simulated models: context windows, output lengths, speed, and the latency model.

Figures are public list values (context windows, output limits) and typical measured speeds
(time per output token); output lengths come from the Azure code trace (median 13 tokens)
stretched per model, since chat and agent answers are much longer than code completions.
Any model name is served: unknown names get ``DEFAULT`` under their own name, so agents
configured for a model the table does not know still run against the simulator.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Final

__all__ = ["DEFAULT", "MODELS", "LatencyModel", "ModelSpec", "Timing", "model_spec"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One served model.

    ``output_scale`` stretches the trace's output lengths; ``tpot_s`` is the median time per
    output token; ``cache_min_tokens`` the shortest cacheable prompt prefix; ``snapshot`` the
    dated name OpenAI answers with for an alias; ``reasoning_ratio`` hidden reasoning tokens
    per visible token (o-series models bill them as completion tokens).
    """

    name: str
    context_window: int = 128_000
    max_output_tokens: int = 16_384
    output_scale: float = 6.0
    tpot_s: float = 0.020
    cache_min_tokens: int = 1024
    snapshot: str | None = None
    reasoning_ratio: float = 0.0

    @property
    def served_name(self) -> str:
        return self.snapshot or self.name


MODELS: Final[dict[str, ModelSpec]] = {spec.name: spec for spec in (
    ModelSpec("gpt-4o", 128_000, 16_384, 8.0, 0.018, snapshot="gpt-4o-2024-08-06"),
    ModelSpec("gpt-4o-mini", 128_000, 16_384, 6.0, 0.015, snapshot="gpt-4o-mini-2024-07-18"),
    ModelSpec("claude-3-5-sonnet-20241022", 200_000, 8192, 10.0, 0.020),
    ModelSpec("claude-3-haiku-20240307", 200_000, 4096, 6.0, 0.015, cache_min_tokens=2048),
    ModelSpec("claude-3-opus-20240229", 200_000, 4096, 10.0, 0.025),
    ModelSpec("sim-small-4k", 4096, 1024, 2.0, 0.015),
)}
DEFAULT: Final = ModelSpec("default")
_REASONING_PREFIXES: Final = ("o1", "o3", "o4", "gpt-5")


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name``: from the table, else the default under that name."""
    spec = MODELS.get(name)
    if spec is not None:
        return spec
    reasoning = 2.0 if name.startswith(_REASONING_PREFIXES) else 0.0
    return replace(DEFAULT, name=name, reasoning_ratio=reasoning)


@dataclass(frozen=True, slots=True)
class Timing:
    """How long one answer takes, before ``latency_scale``: to the first token, then per
    output token."""

    ttft_s: float
    tpot_s: float

    def total_s(self, output_tokens: int) -> float:
        return self.ttft_s + self.tpot_s * output_tokens

    def scaled(self, scale: float) -> Timing:
        return Timing(self.ttft_s * scale, self.tpot_s * scale)


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Time to first token and per output token, as providers show them.

    TTFT is lognormal around ``ttft_median_s`` (queueing makes it skewed) plus prefill
    time proportional to the prompt; time per output token is the model's median with
    lognormal per-request noise (batch sizes vary). ``error_median_s`` is how long an error
    answer takes, ``embedding_median_s`` an embeddings answer.
    """

    ttft_median_s: float = 0.35
    ttft_sigma: float = 0.4
    prefill_s_per_token: float = 0.0001
    tpot_sigma: float = 0.15
    error_median_s: float = 0.08
    embedding_median_s: float = 0.05

    def sample(self, rng: random.Random, spec: ModelSpec, prompt_tokens: int) -> Timing:
        ttft = rng.lognormvariate(math.log(self.ttft_median_s), self.ttft_sigma)
        tpot = spec.tpot_s * rng.lognormvariate(0.0, self.tpot_sigma)
        return Timing(ttft + self.prefill_s_per_token * prompt_tokens, tpot)

    def error_delay(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.error_median_s), 0.3)

    def embedding_delay(self, rng: random.Random, tokens: int) -> float:
        return (rng.lognormvariate(math.log(self.embedding_median_s), 0.3)
                + self.prefill_s_per_token * tokens / 10)
