"""``Lab``: one object that wires a workspace's pieces together for an application's agents.

It holds the event log, the sync and async clients (with the workspace's cache, prices and
providers) and the prompt registry, each built on first use and each replaceable: pass your
own (a client over ``httpx.MockTransport``, a registry in a temporary folder) in tests.
Nothing is global: two labs in one process are independent.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from devora_lab.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from devora_lab.costs.workbench import Costs
    from devora_lab.events import EventLog
    from devora_lab.experiments.assignment import Assigner
    from devora_lab.experiments.registry import ExperimentRegistry
    from devora_lab.llm.client import AsyncClient, Client
    from devora_lab.monitoring.health import HealthReport
    from devora_lab.prompts import PromptRegistry
    from devora_lab.rag.retriever import Retriever

__all__ = ["Lab"]

_AGENT_STATS_SQL = """
SELECT agent,
       count(*) AS calls,
       count(*) FILTER (WHERE status = 'error') AS errors,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       sum(cost_usd) AS cost_usd,
       quantile_cont(latency_ms, 0.5) AS p50_latency_ms,
       quantile_cont(latency_ms, 0.95) AS p95_latency_ms,
       quantile_cont(latency_ms, 0.99) AS p99_latency_ms,
       avg(CASE WHEN cache_outcome IN ('hit', 'semantic_hit') THEN 1.0
                WHEN cache_outcome IS NOT NULL THEN 0.0 END) AS cache_hit_rate
FROM events
WHERE kind = 'llm.call' AND agent IS NOT NULL AND (? IS NULL OR agent = ?)
GROUP BY agent ORDER BY cost_usd DESC NULLS LAST, agent
"""


class Lab:
    """The shared wiring of one workspace: event log, clients, cache, prompts."""

    def __init__(self, workspace: str | os.PathLike[str] | Workspace | None = None, *,
                 event_log: EventLog | None = None, client: Client | None = None,
                 async_client: AsyncClient | None = None,
                 prompts: PromptRegistry | None = None, retriever: Retriever | None = None,
                 **client_options: Any) -> None:
        self.workspace = (workspace if isinstance(workspace, Workspace)
                          else Workspace(workspace)).ensure()
        self._event_log = event_log
        self._client = client
        self._async_client = async_client
        self._prompts = prompts
        self._retriever = retriever
        self._experiments: ExperimentRegistry | None = None
        self._assigner: Assigner | None = None
        self._client_options = client_options
        self._shared_options: dict[str, Any] | None = None
        # Agents on many threads share one lab: each part is built once, under this lock.
        self._lock = threading.RLock()

    @property
    def event_log(self) -> EventLog:
        with self._lock:
            if self._event_log is None:
                self._event_log = self.workspace.event_log()
        return self._event_log

    def _options(self) -> dict[str, Any]:
        """Built once and shared by both clients: one log, and one budget guard, so the
        sync and async clients of a lab count against the same budget totals."""
        with self._lock:
            if self._shared_options is None:
                self._shared_options = self.workspace.client_options(self.event_log)
        return {**self._shared_options, **self._client_options}

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                from devora_lab.llm.client import Client

                self._client = Client(**self._options())
        return self._client

    @property
    def async_client(self) -> AsyncClient:
        with self._lock:
            if self._async_client is None:
                from devora_lab.llm.client import AsyncClient

                self._async_client = AsyncClient(**self._options())
        return self._async_client

    @property
    def prompts(self) -> PromptRegistry:
        with self._lock:
            if self._prompts is None:
                from devora_lab.prompts import PromptRegistry

                self._prompts = PromptRegistry.for_workspace(self.workspace)
        return self._prompts

    @property
    def retriever(self) -> Retriever:
        """Retrieval over the workspace's document index (``devora-lab rag index`` fills it)."""
        with self._lock:
            if self._retriever is None:
                from devora_lab.rag.retriever import Retriever

                self._retriever = Retriever(
                    self.workspace.chunk_store(), self.workspace.embeddings(self.event_log),
                    event_log=self.event_log)
        return self._retriever

    @property
    def experiments(self) -> ExperimentRegistry:
        """The workspace's experiments (``devora-lab experiments`` edits the same files)."""
        with self._lock:
            if self._experiments is None:
                from devora_lab.experiments.registry import ExperimentRegistry

                self._experiments = ExperimentRegistry(self.workspace.experiments_dir)
        return self._experiments

    @property
    def assigner(self) -> Assigner:
        """Sticky variant assignment, shared by every process of the workspace, logging
        each unit's first exposure."""
        with self._lock:
            if self._assigner is None:
                from devora_lab.experiments.assignment import Assigner, AssignmentStore

                self._assigner = Assigner(self.experiments,
                                          AssignmentStore(self.workspace.experiments_dir),
                                          event_log=self.event_log)
        return self._assigner

    @property
    def costs(self) -> Costs:
        """Breakdowns, re-pricing, forecasts, budgets and recommendations for this workspace."""
        from devora_lab.costs.workbench import Costs

        return Costs(self.workspace)

    def health(self, probe_providers: bool = False) -> HealthReport:
        """Check every component of the workspace (``devora-lab health`` runs the same):
        each result says what is wrong and how to fix it; ``probe_providers`` also sends one
        GET to each provider's models endpoint."""
        from devora_lab.monitoring.health import check_health

        return check_health(self.workspace, probe_providers=probe_providers)

    def agent_stats(self, agent: str | None = None) -> pd.DataFrame:
        """Per agent: calls, errors, tokens, cost, latency p50/p95/p99 and cache hit rate."""
        with self.event_log.store() as store:
            return store.df(_AGENT_STATS_SQL, [agent, agent])

    def close(self) -> None:
        """Close the clients and flush the event log (events are already durable)."""
        if self._client is not None:
            self._client.close()
        closer = getattr(getattr(self._retriever, "embedder", None), "close", None)
        if callable(closer):
            closer()
        if self._assigner is not None:
            self._assigner.store.close()
        if self._event_log is not None:
            self._event_log.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
        self.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({str(self.workspace.root)!r})"
