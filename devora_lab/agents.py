"""``Agent``: the drop-in base class for agent code.

An agent calls models and renders templates through its ``Lab``; every event it causes is
tagged with its name (and user and session, when given), so per-agent statistics come
straight from the event log. Subclass it and write your agent's logic in plain methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devora_lab.events.schema import new_id
from devora_lab.llm.driver import Tags

if TYPE_CHECKING:
    from devora_lab.experiments.model import Variant
    from devora_lab.lab import Lab
    from devora_lab.llm.types import Completion, MessageLike
    from devora_lab.prompts import RenderedPrompt
    from devora_lab.rag.retriever import Retrieval

__all__ = ["Agent", "AgentStats"]


def _apply(variant: Variant, label: str | None, version: str | int | None, model: str | None,
           params: Mapping[str, Any] | None) -> tuple[str | None, str | int | None, str | None,
                                                       Mapping[str, Any] | None]:
    """What a variant changes: it wins over the caller's own choices for the same call."""
    if variant.template_version is not None:
        label, version = None, variant.template_version
    elif variant.label is not None:
        label, version = variant.label, None
    return label, version, variant.model or model, {**(params or {}), **variant.params}


@dataclass(frozen=True, slots=True)
class AgentStats:
    """What an agent has done, from the event log."""

    agent: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    cache_hit_rate: float | None


class Agent:
    """Base class for agents. Set ``name`` and ``model`` on the subclass or per instance."""

    name: str = "agent"
    model: str = "gpt-4o-mini"

    def __init__(self, lab: Lab, *, name: str | None = None, model: str | None = None,
                 user_id: str | None = None, session_id: str | None = None) -> None:
        self.lab = lab
        self.name = name or self.name
        self.model = model or self.model
        self.user_id = user_id
        self.session_id = session_id

    def tags(self, rendered: RenderedPrompt | None = None, **extra: Any) -> Tags:
        """The tags this agent puts on its calls (template name/version when rendered)."""
        return Tags(
            agent=self.name, user_id=self.user_id, session_id=self.session_id,
            template_name=rendered.template_name if rendered else None,
            template_version=rendered.template_version if rendered else None,
            **extra,
        )

    # -- calls ---------------------------------------------------------------------------

    def call_llm(self, messages: Sequence[MessageLike], *, model: str | None = None,
                 use_cache: bool = True, tags: Tags | None = None,
                 **params: Any) -> Completion:
        """One chat call through the lab's client, tagged with this agent."""
        merged = self.tags().merged(tags)
        return self.lab.client.complete(messages, model=model or self.model, tags=merged,
                                        **_cache_params(use_cache), **params)

    async def acall_llm(self, messages: Sequence[MessageLike], *, model: str | None = None,
                        use_cache: bool = True, tags: Tags | None = None,
                        **params: Any) -> Completion:
        """The async twin of ``call_llm``."""
        merged = self.tags().merged(tags)
        return await self.lab.async_client.complete(
            messages, model=model or self.model, tags=merged, **_cache_params(use_cache),
            **params)

    def render_template(self, template: str, *, label: str | None = None,
                        version: str | int | None = None, **variables: Any) -> RenderedPrompt:
        """Render a registered template (label ``production`` unless told otherwise)."""
        found = self.lab.prompts.get(template, label=label, version=version)
        return found.render(**variables)

    def run_template(self, template: str, *, label: str | None = None,
                     version: str | int | None = None, model: str | None = None,
                     use_cache: bool = True, params: Mapping[str, Any] | None = None,
                     experiment: str | None = None, **variables: Any) -> Completion:
        """Render a template and call the model with it; the call records the version.

        ``params`` override the template's default request parameters; everything else
        given by keyword is a template variable. With ``experiment`` (a running
        experiment's name) the unit's sticky variant picks the template version or label,
        the model and extra parameters, and the call is tagged with experiment and variant.
        """
        arm = self._variant(experiment)
        if arm is not None:
            label, version, model, params = _apply(arm[1], label, version, model, params)
        rendered = self.render_template(template, label=label, version=version, **variables)
        tags = self.tags(rendered, **({} if arm is None else {"experiment": arm[0],
                                                                "variant": arm[1].name}))
        return self.call_llm(rendered.messages, model=model or rendered.model or self.model,
                             use_cache=use_cache, tags=tags,
                             **{**rendered.params, **(params or {})})

    def _variant(self, experiment: str | None) -> tuple[str, Variant] | None:
        """(experiment, variant) for this agent's unit, or None outside an experiment."""
        if experiment is None:
            return None
        unit = self.lab.experiments.get(experiment).unit
        request_id = new_id()
        unit_id = {"user": self.user_id, "session": self.session_id,
                   "request": request_id}[unit]
        if unit_id is None:
            from devora_lab.errors import ConfigError

            raise ConfigError(f"experiment {experiment} assigns by {unit}, but this agent "
                              f"has no {unit}_id", fix=f"create the agent with {unit}_id=...")
        variant = self.lab.assigner.variant_for(experiment, unit_id, user_id=self.user_id,
                                                session_id=self.session_id,
                                                request_id=request_id)
        return None if variant is None else (experiment, variant)

    async def arun_template(self, template: str, *, label: str | None = None,
                            version: str | int | None = None, model: str | None = None,
                            use_cache: bool = True, params: Mapping[str, Any] | None = None,
                            **variables: Any) -> Completion:
        """The async twin of ``run_template``."""
        rendered = self.render_template(template, label=label, version=version, **variables)
        return await self.acall_llm(rendered.messages,
                                    model=model or rendered.model or self.model,
                                    use_cache=use_cache, tags=self.tags(rendered),
                                    **{**rendered.params, **(params or {})})

    def retrieve(self, query: str, *, top_k: int = 5, mode: str = "hybrid",
                 max_tokens: int | None = 1500, threshold: float | None = None,
                 filters: Mapping[str, str | int] | None = None) -> Retrieval:
        """Chunks of the workspace's documents for ``query``, as a cited context block
        that fits ``max_tokens``; the retrieval is logged as a ``retrieval`` event."""
        return self.lab.retriever.retrieve(
            query, top_k=top_k, mode=mode,  # type: ignore[arg-type]
            threshold=threshold, filters=filters, max_tokens=max_tokens, agent=self.name,
            user_id=self.user_id, session_id=self.session_id)

    # -- statistics ----------------------------------------------------------------------

    def stats(self) -> AgentStats:
        """Calls, errors, tokens, cost, latency percentiles and cache hit rate so far."""
        frame = self.lab.agent_stats(self.name)
        if frame.empty:
            return AgentStats(self.name, 0, 0, 0, 0, 0.0, None, None, None, None)
        row = frame.iloc[0]
        return AgentStats(
            agent=self.name, calls=int(row["calls"]), errors=int(row["errors"]),
            input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
            cost_usd=float(row["cost_usd"] or 0.0),
            p50_latency_ms=_maybe(row["p50_latency_ms"]),
            p95_latency_ms=_maybe(row["p95_latency_ms"]),
            p99_latency_ms=_maybe(row["p99_latency_ms"]),
            cache_hit_rate=_maybe(row["cache_hit_rate"]),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r})"


def _cache_params(use_cache: bool) -> dict[str, Any]:
    return {} if use_cache else {"no_cache": True, "no_store": True}


def _maybe(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
