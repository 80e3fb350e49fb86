"""The demo's live phase: a team's agents calling the simulator through the real client stack.

The tasks are planned up front from the same figures the synthetic history uses
(``devora_lab.sim.calls``): the agents' shares of the work and model mixes, each agent's
users (the history's team, Zipf-skewed), prompt lengths from the fitted traces, and an
exact repeat of an earlier task at each agent's cache-hit rate. Arrivals follow the Azure
trace's per-second burstiness, compressed so that a few hundred tasks take about a minute.

Each task then runs as an agent would: ``Coder.generate_component``, ``Architect.analyse``
(retrieving from the RAG index first) or ``Reviewer.review`` inside the A/B experiment,
through the lab's client with its cache, retries, fallbacks and budgets. A refusal by a
hard budget (``BudgetExceededError``) and a call that failed on every model are outcomes
the summary counts; anything else is a bug and fails the demo.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from devora_lab.errors import AllModelsFailedError, BudgetExceededError, ProviderError
from devora_lab.llm.pricing import PriceBook
from devora_lab.sim.calls import AGENTS, MODELS, USERS, AgentSpec, Team
from devora_lab.sim.textgen import generate_pieces
from devora_lab.sim.traces import DailyProfile, TraceModel
from devora_lab.team import Architect, Coder, Reviewer

if TYPE_CHECKING:
    from devora_lab.lab import Lab
    from devora_lab.llm.types import Completion

__all__ = ["FALLBACKS", "LiveSummary", "Task", "plan_tasks", "run_live", "sim_model"]

#: Tasks started per second on average: with 8 workers and the simulator's latency scale
#: the pool keeps up between bursts, so 400 tasks take well under a minute.
ARRIVALS_PER_S: Final = 10.0
WORKERS: Final = 8
#: A repeat follows its original by at least this long, so that the original has
#: usually answered (and filled the cache) by then; a repeat of a call still in flight
#: misses, as it would in production.
REPEAT_AFTER_S: Final = 1.5
_PROVIDER_PREFIX: Final = {"ollama": "ollama/"}  # routed by name: no prefix for the others
_LANGUAGES: Final = ("Python", "TypeScript", "Go", "Rust", "Java")
_COMPONENTS: Final = ("DataTable", "DatePicker", "FileUpload", "SearchBox", "Sidebar",
                      "Toast", "PricingCard", "LoginForm", "Stepper", "CommandPalette")
_FALLBACK_QUESTIONS: Final = (
    "how are failed calls retried and when does the client fall back to another model",
    "how is the event log written safely by many processes at once",
    "how do budgets stop concurrent calls from overspending",
    "how are experiment variants assigned and analysed",
)


def sim_model(name: str) -> str:
    """The model string the client is asked for: ``local-llama`` goes through the
    ``ollama`` provider the demo configures, the others route by their names."""
    return _PROVIDER_PREFIX.get(MODELS[name].provider, "") + name


#: Each model's fallback, as the history has it (retry once, then the fallback model).
FALLBACKS: Final = {sim_model(name): [sim_model(spec.fallback)] for name, spec in MODELS.items()}


@dataclass(frozen=True, slots=True)
class Task:
    """One planned task: when it starts (seconds into the phase), who runs what, and the
    size and seed of its variable text (equal seeds give identical prompts)."""

    index: int
    at_s: float
    agent: str
    user: str
    model: str
    input_tokens: int
    text_seed: int
    repeat_of: int | None = None


@dataclass
class LiveSummary:
    """What the live phase did: tasks by agent and outcome, budget refusals, cache hits,
    spend, and the simulator's own counts of requests and injected faults."""

    tasks: int = 0
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # by user
    repeats: int = 0
    cache_hits: int = 0
    retried: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    seconds: float = 0.0
    sim: dict[str, Any] = field(default_factory=dict)

    @property
    def refusals(self) -> int:
        return sum(self.refused.values())

    def lines(self) -> list[str]:
        """A few lines for the terminal."""
        agents = sorted(set(self.ok) | set(self.failed))
        done = ", ".join(f"{a} {self.ok[a]} ok / {self.failed[a]} failed" for a in agents)
        errors = ", ".join(f"{name} {n}" for name, n in self.errors.most_common()) or "none"
        faults = self.sim.get("faults") or {}
        injected = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
        users = ", ".join(f"{u} {n}" for u, n in self.refused.most_common()) or "none"
        return [
            f"{self.tasks} tasks in {self.seconds:.1f} s: {done}",
            f"simulator: {self.sim.get('requests', 0)} requests, faults injected: {injected}",
            f"retried calls {self.retried}, answered by a fallback model {self.fallbacks}, "
            f"failed on every model: {errors}",
            f"refused by budget: {self.refusals} ({users})",
            f"response cache: {self.cache_hits} hits; {self.repeats} tasks repeated an "
            "earlier one (only temperature-0 reviews may be cached)",
            f"spent ${self.cost_usd:,.4f} (+{self.unpriced_calls} unpriced calls)",
        ]


# ---------------------------------------------------------------------------- planning


def _choice(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(p.size, size=n, p=p / p.sum())


def arrival_offsets(rng: np.random.Generator, n: int) -> list[float]:
    """``n`` start offsets in seconds: the Azure trace's arrival process (a Cox process with
    its per-second burstiness, on a flat daily profile) at the trace's own rate, then time
    compressed to ``ARRIVALS_PER_S`` on average."""
    if n == 0:
        return []
    trace = TraceModel.from_fitted("azure_code", window_s=1)
    flat = DailyProfile(hourly=(1.0,) * 24, weekday=(1.0,) * 7, trend_per_day=0.0)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    horizon = 2.0 * n / trace.rate_per_s + 10.0
    while True:
        micros = trace.sample_arrivals(rng, start, start + timedelta(seconds=horizon), flat)
        if micros.size >= n:
            break
        horizon *= 2
    seconds = (micros[:n] - micros[0]) / 1e6
    span = float(seconds[-1]) or 1.0
    return [float(s) * (n / ARRIVALS_PER_S) / span for s in seconds]


def plan_tasks(n: int, seed: int) -> list[Task]:
    """The live phase's tasks, reproducible from ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, 7_000])
    team = Team(seed, PriceBook.default())
    at = arrival_offsets(rng, n)
    agents = _choice(rng, n, [a.share for a in AGENTS])
    due = dict.fromkeys((a.name for a in AGENTS), 0.5)  # repeats owed, rounded
    tasks: list[Task] = []
    for index in range(n):
        spec = AGENTS[int(agents[index])]
        earlier = [t for t in tasks if t.agent == spec.name and t.repeat_of is None
                   and t.at_s <= at[index] - REPEAT_AFTER_S]
        due[spec.name] += spec.cache_hit_rate if earlier else 0.0
        if due[spec.name] >= 1.0:  # exactly the agent's share, so small runs have some too
            due[spec.name] -= 1.0
            tasks.append(_repeat(rng, index, at[index], earlier))
            continue
        tasks.append(_fresh(rng, team, spec, index, at[index]))
    return tasks


def _fresh(rng: np.random.Generator, team: Team, spec: AgentSpec, index: int,
           at_s: float) -> Task:
    code = AGENTS.index(spec)
    user = USERS[int(_choice(rng, 1, team.user_p[code])[0])]
    model = spec.models[int(_choice(rng, 1, [w for _, w in spec.models])[0])][0]
    inputs, _ = team.traces[spec.trace].sample_tokens(rng, 1, input_scale=spec.input_scale)
    return Task(index, at_s, spec.name, user, sim_model(model), int(inputs[0]),
                int(rng.integers(1 << 31)))


def _repeat(rng: np.random.Generator, index: int, at_s: float, earlier: list[Task]) -> Task:
    """The same request again a little later (a re-run, a retried CI job), as the history's
    cache hits replay a call a geometric number of calls back."""
    back = min(len(earlier), int(rng.geometric(0.08)))
    source = earlier[-back]
    return Task(index, at_s, source.agent, source.user, source.model, source.input_tokens,
                source.text_seed, repeat_of=source.index)


# ---------------------------------------------------------------------------- prompts


def _text(seed: int, tokens: int) -> str:
    return "".join(generate_pieces(random.Random(seed), max(tokens, 1))).strip()


def _lines(seed: int, tokens: int, prefix: Callable[[int], str]) -> str:
    """Text of about ``tokens`` tokens in short lines, each with a prefix."""
    words = _text(seed, tokens).split()
    return "\n".join(prefix(i) + " ".join(words[i:i + 12]) for i in range(0, len(words), 12))


def _diff(task: Task) -> str:
    marks = "+- +"
    return _lines(task.text_seed, task.input_tokens, lambda i: marks[(i // 12) % 4] + "    ")


def _file_tree(task: Task) -> str:
    return _lines(task.text_seed, task.input_tokens,
                  lambda i: f"src/module_{i // 12:04d}/" + ("" if i % 5 else "__init__.py  "))


# ---------------------------------------------------------------------------- running


def _run_task(lab: Lab, task: Task, experiment: str | None,
              questions: Sequence[str]) -> Completion:
    session = f"{task.user}-{task.agent}-live"
    who = {"model": task.model, "user_id": task.user, "session_id": session}
    if task.agent == "coder":
        return Coder(lab, **who).generate_component(
            _COMPONENTS[task.text_seed % len(_COMPONENTS)],
            _text(task.text_seed, task.input_tokens))
    if task.agent == "architect":
        question = questions[task.text_seed % len(questions)]
        return Architect(lab, **who).analyse(
            "devora_lab", question, file_tree=_file_tree(task),
            concerns=("reliability", "cost"))
    return Reviewer(lab, **who).review(
        _diff(task), language=_LANGUAGES[task.text_seed % len(_LANGUAGES)],
        experiment=experiment)


class _Tally:
    """Thread-safe accumulation of task outcomes into a ``LiveSummary``."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.summary = LiveSummary(tasks=len(tasks),
                                   repeats=sum(t.repeat_of is not None for t in tasks))
        self._lock = threading.Lock()

    def add(self, task: Task, future: Future[Completion]) -> None:
        error = future.exception()
        with self._lock:
            s = self.summary
            if isinstance(error, BudgetExceededError):
                s.refused[task.user] += 1
            elif isinstance(error, (ProviderError, AllModelsFailedError)):
                s.failed[task.agent] += 1
                s.errors[type(error).__name__] += 1
            elif error is None:
                done = future.result()
                s.ok[task.agent] += 1
                s.cache_hits += done.cached
                s.retried += done.attempts > 1
                s.fallbacks += done.fallback_index > 0
                if done.cost_usd is None:
                    s.unpriced_calls += 1
                else:
                    s.cost_usd += done.cost_usd


def run_live(lab: Lab, tasks: Sequence[Task], *, experiment: str | None,
             questions: Sequence[str] = (), workers: int = WORKERS,
             progress: bool = True) -> LiveSummary:
    """Run ``tasks`` at their arrival times on a pool of ``workers`` threads.

    Raises the first unexpected exception of a task (after the others finished): a
    budget refusal or a provider failure is an outcome, anything else a bug.
    """
    _warm_up(lab)
    asked = list(questions) or list(_FALLBACK_QUESTIONS)
    tally = _Tally(tasks)
    futures: list[Future[Completion]] = []
    started = time.perf_counter()
    with _progress(progress, len(tasks)) as advance, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="demo-agent") as pool:
        for task in tasks:
            delay = started + task.at_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            future = pool.submit(_run_task, lab, task, experiment, asked)
            future.add_done_callback(_on_done(tally, task, advance))
            futures.append(future)
    tally.summary.seconds = time.perf_counter() - started
    for future in futures:
        error = future.exception()
        if error is not None and not isinstance(
                error, (BudgetExceededError, ProviderError, AllModelsFailedError)):
            raise error
    return tally.summary


def _on_done(tally: _Tally, task: Task, advance: Callable[[], None]
             ) -> Callable[[Future[Completion]], None]:
    def done(future: Future[Completion]) -> None:
        tally.add(task, future)
        advance()

    return done


def _warm_up(lab: Lab) -> None:
    """Build the lab's lazily made parts in this thread: its properties are not locked,
    so worker threads racing to build them would each build their own. The same holds
    for the index's full-text index, built on a store's first text search (two builds at
    once make LanceDB refuse one as a commit conflict)."""
    _ = lab.client, lab.prompts, lab.experiments, lab.assigner
    store = lab.retriever.store
    if store.count():
        store.search(text="warm up", mode="text", top_k=1)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("live agents", total=total)
        yield lambda: bar.advance(task)
