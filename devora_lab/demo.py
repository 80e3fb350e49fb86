"""``run_demo``: a demo workspace with weeks of history, a live team of agents and reports.

The phases, each timed:

1. **history**: ``days`` of a three-agent team's traffic synthesized straight from the
   models fitted to public traces (``devora_lab.sim.workload``), then compacted. Sending
   tens of thousands of calls through HTTP at realistic latencies would take hours.
2. **setup**, through the public APIs only: ``devora.toml`` providers pointing at the
   offline simulator, budgets (a hard per-user daily limit the heaviest users hit, soft
   team limits whose thresholds alert), the reviewer's A/B experiment ``review-prompt``,
   ``alerts.toml`` rules with a log sink, and a RAG index of the project's README and docs.
3. **live**: the simulator with injected faults, and a few hundred agent tasks sent
   through the real client stack (``devora_lab.demo_live``).
4. **alerts**: one ``alerts check``.
5. **reports**: the curated notebooks run headless into ``<workspace>/reports/``.
"""

from __future__ import annotations

import logging
import shutil
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devora_lab.config import ProviderSettings
from devora_lab.costs.budgets import Budget
from devora_lab.demo_live import LiveSummary, Task, plan_tasks, run_live
from devora_lab.errors import WorkspaceError
from devora_lab.workspace import Workspace

if TYPE_CHECKING:
    from devora_lab.events import EventLog
    from devora_lab.monitoring.alerting import CheckResult
    from devora_lab.notebook.report import ReportResult
    from devora_lab.sim.server import SimServer
    from devora_lab.sim.workload import WorkloadSummary

__all__ = ["EXPERIMENT", "DemoResult", "repo_root", "run_demo"]

EXPERIMENT: Final = "review-prompt"
MARKER: Final = ".devora-demo"
LATENCY_SCALE: Final = 0.2  # the live phase's simulator runs 5x faster than real providers
_HEADER: Final = "# Written by `devora-lab demo`."
# Everything a demo writes, removed before the next demo run into the same folder.
_OWNED: Final = ("events", "cache", "lancedb", "experiments", "prompts", "reports", "alerts",
                 "budgets.json", "budgets.json.lock", "alerts.toml")


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` built: per phase what it did and how long it took."""

    workspace: Path
    history: WorkloadSummary
    live: LiveSummary
    budgets: tuple[Budget, ...]
    experiment: str
    rag_chunks: int
    alerts: CheckResult
    notifications: tuple[str, ...]
    reports: tuple[ReportResult, ...]
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The summary the CLI prints."""
        firing = [f"  {e.rule.name}{f' [{e.group}]' if e.group else ''}: {e.summary()}"
                  for e in self.alerts.firing] or ["  none"]
        budgets = [f"  {b.name}: ${b.limit_usd:,.2f} {b.period}, {b.scope}"
                   f"{'=' + b.match if b.match else ''}, {'hard' if b.hard else 'soft'}"
                   for b in self.budgets]
        return [f"history: {self.history}", "live:", *(f"  {x}" for x in self.live.lines()),
                "budgets:", *budgets, f"experiment: {self.experiment} (reviewer, unit = user)",
                f"RAG index: {self.rag_chunks} chunks", "alerts firing after the check:",
                *firing, "sent to the alert sinks:",
                *(f"  {n}" for n in self.notifications or ["nothing"]), *self.notes,
                "phase timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
                + f" (total {sum(self.timings.values()):.1f} s)"]


def repo_root() -> Path | None:
    """The checkout this package is installed from (editable), or None for a wheel."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "README.md").is_file() \
        else None


def run_demo(workspace: Workspace, *, days: int = 14, calls_per_day: int = 3000,
             live_tasks: int = 400, seed: int = 7, reports: Sequence[str] | None = ("all",),
             progress: bool = True) -> DemoResult:
    """Build a demo workspace in ``workspace`` (see the module docstring).

    Refuses (``WorkspaceError``) a workspace holding data the demo did not write; an
    earlier demo's data is replaced. A failing report raises its ``ReportError``.
    """
    from devora_lab.notebook.report import discover_reports

    if reports is not None:
        discover_reports()  # no notebooks folder: fail now, not after the live phase
    say = _sayer(progress)
    timings: dict[str, float] = {}
    _reset(workspace)
    workspace.ensure()
    (workspace.root / MARKER).write_text("written by devora-lab demo\n")
    with _timed(timings, "history"):
        history = _history(workspace, days, calls_per_day, seed, progress)
    say(f"history: {history.events:,} events over {history.days} days")
    with _live_phase(workspace, seed) as (sim, ws):
        tasks = plan_tasks(live_tasks, seed)
        setup = _setup(ws, tasks, timings, progress, say)
        say(f"live: {len(tasks)} agent tasks against the simulator at {sim.base_url}")
        with _captured_notifications() as notes:
            with _timed(timings, "live"):
                live = _live(ws, tasks, setup.questions, progress)
                live.sim = sim.stats()
            with _timed(timings, "alerts"):
                checked = _check_alerts(ws)
    say(f"alerts: {len(checked.fired)} fired")
    with _timed(timings, "reports"):
        results = _reports(ws, reports, progress)
    return DemoResult(workspace.root, history, live, setup.budgets, EXPERIMENT,
                      setup.rag_chunks, checked, tuple(notes), results, timings,
                      tuple(setup.notes) + _report_notes(reports, results))


# ---------------------------------------------------------------------------- phases


def _sayer(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda text: None
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    return lambda text: console.print(text, markup=False)


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - started


def _reset(workspace: Workspace) -> None:
    """Remove an earlier demo's data; refuse a workspace holding anything else's."""
    root = workspace.root
    if (root / MARKER).exists():
        for name in _OWNED:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        config = root / "devora.toml"
        text = config.read_text(encoding="utf-8") if config.is_file() else ""
        if _HEADER in text:  # the demo's file, or the demo's block after the user's settings
            mine = text.index(_HEADER)
            if mine == 0:
                config.unlink()
            else:
                config.write_text(text[:mine].rstrip("\n") + "\n", encoding="utf-8")
        return
    events = workspace.events_dir
    foreign = [name for name in ("budgets.json", "alerts.toml") if (root / name).exists()]
    if events.is_dir() and any(events.iterdir()):
        foreign.insert(0, "events")
    if workspace.experiments_dir.is_dir() and any(workspace.experiments_dir.glob("*.json")):
        foreign.append("experiments")
    if foreign:
        raise WorkspaceError(
            f"{root} already holds data that the demo did not write ({', '.join(foreign)})",
            fix="run the demo in another folder: devora-lab demo --workspace /tmp/devora-demo")


def _history(workspace: Workspace, days: int, calls_per_day: int, seed: int,
             progress: bool) -> WorkloadSummary:
    from devora_lab.sim.workload import generate_workload

    log = workspace.event_log()
    try:
        summary = generate_workload(log, days=days, calls_per_day=calls_per_day, seed=seed,
                                    progress=progress)
    finally:
        log.close()
    log.compact()
    return summary


@contextmanager
def _live_phase(workspace: Workspace, seed: int) -> Iterator[tuple[SimServer, Workspace]]:
    """The simulator, and the workspace with its providers pointing at it."""
    from devora_lab.sim.faults import FaultConfig
    from devora_lab.sim.server import SimServer

    faults = FaultConfig(rate_429=0.03, rate_500=0.008, rate_503=0.004, rate_529=0.008,
                         rate_timeout=0.002, rate_cut_stream=0.003, timeout_seconds=30.0)
    with SimServer(seed=seed, faults=faults, latency_scale=LATENCY_SCALE) as sim:
        yield sim, _point_providers_at(workspace, sim)


def _point_providers_at(workspace: Workspace, sim: SimServer) -> Workspace:
    """Write the simulator's endpoints into ``devora.toml`` (so later readers of the
    workspace see the same settings) and return the workspace with them applied."""
    urls = {"openai": ("openai", sim.openai_base_url),
            "anthropic": ("anthropic", sim.anthropic_base_url),
            "ollama": ("openai", sim.openai_base_url)}  # local-llama, as an OpenAI-style server
    providers = {name: ProviderSettings(kind=kind, base_url=url, api_key_env="SIM_API_KEY")
                 for name, (kind, url) in urls.items()}
    block = "".join(f'\n[providers.{name}]\nkind = "{p.kind}"\nbase_url = "{p.base_url}"\n'
                    f'api_key_env = "{p.api_key_env}"\n' for name, p in providers.items())
    path = workspace.root / "devora.toml"
    if path.is_file():  # the user's own settings: keep them, add the providers
        existing = path.read_text(encoding="utf-8")
        if "providers" in tomllib.loads(existing):
            raise WorkspaceError(f"{path} configures providers; the demo needs its own",
                                 fix="run the demo in another folder, or remove [providers]")
        text = existing.rstrip("\n") + "\n\n" + _HEADER + " Providers: the demo's simulator.\n"
    else:
        text = (_HEADER + " The providers point at the offline simulator the demo ran\n"
                "# (it stopped with the demo); replace them to call real providers.\n")
    path.write_text(text + block, encoding="utf-8")
    settings = workspace.settings.model_copy(update={"providers": providers})
    return Workspace(settings=settings)


@dataclass
class _Setup:
    budgets: tuple[Budget, ...]
    rag_chunks: int
    questions: list[str]
    notes: list[str]


def _setup(workspace: Workspace, tasks: Sequence[Task], timings: dict[str, float],
           progress: bool, say: Callable[[str], None]) -> _Setup:
    from devora_lab.demo_setup import set_budgets, start_experiment, write_alert_rules

    log = workspace.event_log()
    try:
        with _timed(timings, "setup"):
            budgets = set_budgets(workspace, log, tasks)
            write_alert_rules(workspace, header=_HEADER)
            start_experiment(workspace, EXPERIMENT)
        with _timed(timings, "rag index"):
            chunks, questions, notes = _index_docs(workspace, log, progress)
    finally:
        log.close()
    say(f"setup: {len(budgets)} budgets, experiment {EXPERIMENT}, alerts.toml, "
        f"RAG index of {chunks} chunks")
    return _Setup(budgets, chunks, questions, notes)


def _index_docs(workspace: Workspace, log: EventLog,
                progress: bool) -> tuple[int, list[str], list[str]]:
    """Index the project's README.md and docs/; the architect's questions come from the
    project's labelled RAG query set, so its retrievals have right answers."""
    from devora_lab.rag.ingest import Indexer

    root = repo_root()
    if root is None:
        return 0, [], ["RAG: the project's README.md and docs/ were not found beside the "
                       "package (a wheel install); the architect worked without retrieval."]
    paths = [root / "README.md"] + ([root / "docs"] if (root / "docs").is_dir() else [])
    rag = workspace.settings.rag
    embeddings = workspace.embeddings(log, agent="indexer")
    store = workspace.chunk_store()
    try:
        Indexer(store, embeddings, max_tokens=rag.chunk_tokens,
                overlap_tokens=rag.overlap_tokens).index(paths, progress=progress)
    finally:
        embeddings.close()
    questions: list[str] = []
    queries = root / "data" / "rag_eval.jsonl"
    if queries.is_file():
        from devora_lab.rag.evalset import load_queries

        questions = [q.query for q in load_queries(queries)]
    return store.count(), questions, []


def _live(workspace: Workspace, tasks: Sequence[Task], questions: Sequence[str],
          progress: bool) -> LiveSummary:
    import httpx

    from devora_lab.demo_live import FALLBACKS
    from devora_lab.lab import Lab
    from devora_lab.llm.policy import RetryPolicy

    # Retry once on the model, then its fallback (as the history does); the timeout sits
    # above the slowest honest answer at this latency scale, below the injected hang.
    with Lab(workspace, retry=RetryPolicy(max_attempts=2), fallbacks=FALLBACKS,
             timeout=httpx.Timeout(25.0, connect=5.0)) as lab:
        return run_live(lab, tasks, experiment=EXPERIMENT, questions=questions,
                        progress=progress)


def _check_alerts(workspace: Workspace) -> CheckResult:
    from devora_lab.monitoring.wiring import alert_manager

    log = workspace.event_log()
    try:
        manager = alert_manager(workspace, log)
        result = manager.check()
        manager.dispatcher.flush()
    finally:
        log.close()
    log.compact()
    return result


@contextmanager
def _captured_notifications() -> Iterator[list[str]]:
    """What the ``log`` sink writes (budget thresholds, alerts), collected for the summary
    instead of interleaving with the progress bars."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("devora_lab.alerts")
    handler, propagate = Collect(logging.INFO), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _reports(workspace: Workspace, reports: Sequence[str] | None,
             progress: bool) -> tuple[ReportResult, ...]:
    """Run the reports; the first failure fails the demo with its ``ReportError``."""
    if reports is None:
        return ()
    from devora_lab.notebook.report import run_reports

    results = tuple(run_reports(list(reports), workspace, progress=progress))
    for result in results:
        if result.error is not None:
            raise result.error
    return results


def _report_notes(reports: Sequence[str] | None,
                  results: Sequence[ReportResult]) -> tuple[str, ...]:
    if reports is not None and not results:
        from devora_lab.notebook.report import notebooks_dir

        return (f"reports: no curated notebooks (NN_name.ipynb) in {notebooks_dir()} yet",)
    return ()

