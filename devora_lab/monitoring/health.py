"""Health checks: is each part of a workspace usable, and if not, what to do about it.

``check_health(workspace)`` runs one small check per component (the folder, the event log,
prices, providers, cache, budgets, the document index, experiments) and returns a
``HealthReport``. The checks are independent: one that raises becomes a ``fail`` naming the
exception, and the others still run, so one broken part never hides the state of the rest.

Nothing in a report holds a secret. API keys are only tested for presence, URLs lose their
``user:password@`` part, and every detail and fix is scrubbed of key values and passwords
before it is stored, because reports are pasted into tickets and CI logs.

Exit codes (``HealthReport.exit_code``) follow the Nagios/Icinga plugin convention, so that
``devora-lab health`` drops into existing monitoring and scripts can tell the cases apart:
0 every check ok or skipped (skipped: not set up, nothing to check); 1 warnings but no
failure (usable, but look); 2 at least one failure (the CLI also exits 2 when the settings
cannot be loaded at all).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from devora_lab.errors import CorruptSegmentWarning, DevoraError

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.workspace import Workspace

__all__ = ["CheckResult", "HealthReport", "Status", "check_health", "redact_url"]

Status = Literal["ok", "warn", "fail", "skipped"]
_SEVERITY: Final[dict[str, int]] = {"skipped": 0, "ok": 0, "warn": 1, "fail": 2}
_BY_SEVERITY: Final[tuple[Status, ...]] = ("ok", "warn", "fail")
_USERINFO: Final = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_LOOPBACK: Final = ("localhost", "127.0.0.1", "::1")
_MIN_SECRET: Final = 4  # shorter "secrets" would blank out ordinary words
_MODELS_SQL: Final = """
SELECT request_model, response_model, count(*) FROM events
WHERE kind = 'llm.call' AND coalesce(request_model, response_model) IS NOT NULL
GROUP BY ALL
"""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: ``fix`` says what to do when it is not ok."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's result, in the order they ran."""

    results: tuple[CheckResult, ...]

    @property
    def status(self) -> Status:
        """The worst status: fail, else warn, else ok (skipped counts as ok)."""
        worst = max((_SEVERITY[r.status] for r in self.results), default=0)
        return _BY_SEVERITY[worst]

    @property
    def ok(self) -> bool:
        """True when nothing failed (warnings allowed): the workspace is usable."""
        return self.status != "fail"

    @property
    def exit_code(self) -> int:
        """0 all ok or skipped, 1 warnings only, 2 any failure (see the module docstring)."""
        return _SEVERITY[self.status]

    def __getitem__(self, name: str) -> CheckResult:
        """The result of the check called ``name`` (KeyError if none ran)."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: overall status, exit code and each check."""
        return {"status": self.status, "exit_code": self.exit_code,
                "checks": [asdict(result) for result in self.results]}


class _Outcome(NamedTuple):
    status: Status
    detail: str
    fix: str | None = None


_NO_PROVIDERS: Final = _Outcome(
    "skipped", "no provider is set up: no OPENAI_API_KEY, ANTHROPIC_API_KEY or "
    "OPENROUTER_API_KEY in the environment and no [providers.*] settings",
    "export the key of the provider you use (e.g. OPENAI_API_KEY), or add "
    "[providers.<name>] with base_url and api_key_env to devora.toml")


@dataclass(frozen=True, slots=True)
class _Provider:
    name: str
    kind: str
    base_url: str | None
    key_env: str


@dataclass(frozen=True, slots=True)
class _Context:
    workspace: Workspace
    env: Mapping[str, str]
    timeout: float


def redact_url(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it replaced by ``***@``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def check_health(workspace: Workspace, *, probe_providers: bool = False, timeout: float = 2.0,
                 env: Mapping[str, str] | None = None) -> HealthReport:
    """Check every component of ``workspace``; never raises for a broken component.

    ``probe_providers`` also sends one GET to each configured provider's models endpoint
    (off by default: it leaves the machine). ``timeout`` bounds each network check in
    seconds; ``env`` replaces ``os.environ`` (where API keys and base URLs come from).
    """
    ctx = _Context(workspace, os.environ if env is None else env, timeout)
    secrets = _secrets(ctx)
    plan = _plan(ctx, probe_providers)
    return HealthReport(tuple(_run(name, check, secrets) for name, check in plan))


def _plan(ctx: _Context, probe: bool) -> list[tuple[str, Callable[[], _Outcome]]]:
    plan: list[tuple[str, Callable[[], _Outcome]]] = [
        ("workspace", partial(_check_workspace, ctx)),
        ("event log", partial(_check_event_log, ctx)),
        ("price book", partial(_check_price_book, ctx)),
        ("prices cover the log", partial(_check_price_coverage, ctx)),
    ]
    providers = _providers(ctx)
    if not providers:
        plan.append(("providers", lambda: _NO_PROVIDERS))
    for provider in providers:
        plan.append((f"provider {provider.name}", partial(_check_provider, ctx, provider)))
        if probe:
            plan.append((f"provider {provider.name} reachable",
                         partial(_probe_provider, ctx, provider)))
    plan += [
        ("response cache", partial(_check_cache, ctx)),
        ("budgets", partial(_check_budgets, ctx)),
        ("budget ledger", partial(_check_ledger, ctx)),
        ("rag index", partial(_check_rag, ctx)),
        ("experiments", partial(_check_experiments, ctx)),
    ]
    return plan


def _run(name: str, check: Callable[[], _Outcome], secrets: list[str]) -> CheckResult:
    """One check, timed; an exception becomes a ``fail`` so the other checks still run."""
    started = time.perf_counter()
    try:
        outcome = check()
    except DevoraError as exc:
        outcome = _Outcome("fail", exc.message, exc.fix)
    except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
        outcome = _Outcome("fail", f"{type(exc).__name__}: {exc}",
                           "unexpected: the detail names the exception; please report it")
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    fix = None if outcome.fix is None else _scrub(outcome.fix, secrets)
    return CheckResult(name, outcome.status, _scrub(outcome.detail, secrets), fix, elapsed)


def _scrub(text: str, secrets: list[str]) -> str:
    text = redact_url(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _secrets(ctx: _Context) -> list[str]:
    """Every value a report must never show: provider keys and Redis credentials."""
    from devora_lab.llm.routing import Router

    names = {config.api_key_env for config in Router(env=ctx.env).providers.values()}
    names |= {provider.key_env for provider in _providers(ctx)}
    found = {ctx.env[name] for name in names if name and ctx.env.get(name)}
    settings = ctx.workspace.settings
    for url in (settings.cache.redis_url, settings.budgets.redis_url):
        parts = urlsplit(url)
        for raw in (parts.password, parts.username):
            if raw:
                found |= {raw, unquote(raw)}
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


@contextmanager
def _store(ctx: _Context) -> Iterator[tuple[EventStore, list[warnings.WarningMessage]]]:
    """A reader over the log, and the damage warnings it raises (reported, not printed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorruptSegmentWarning)
        with ctx.workspace.event_log().store() as store:
            yield store, caught


# -- the workspace and the event log ------------------------------------------------------

def _check_workspace(ctx: _Context) -> _Outcome:
    root = ctx.workspace.root
    elsewhere = "or choose another folder with --workspace or DEVORA_WORKSPACE"
    if not root.exists():
        return _Outcome("fail", f"{root} does not exist",
                        f"create it (any devora-lab command or Lab() does) {elsewhere}")
    if not root.is_dir():
        return _Outcome("fail", f"{root} is not a folder", f"move the file away {elsewhere}")
    try:
        handle, probe = tempfile.mkstemp(dir=root, prefix=".health-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return _Outcome("fail", f"{root} is not writable: {exc.strerror}",
                        f"give this user write access (chmod u+w {root}) {elsewhere}")
    return _Outcome("ok", f"{root} is writable")


def _check_event_log(ctx: _Context) -> _Outcome:
    folder = ctx.workspace.events_dir
    if not folder.is_dir():
        return _Outcome("skipped", f"no event log yet in {folder} (the first call creates it)")
    with _store(ctx) as (store, caught):
        total, calls = store.count(), store.count("llm.call")
        snapshot = store.snapshot
    damage = [str(w.message) for w in caught if issubclass(w.category, CorruptSegmentWarning)]
    detail = (f"{total:,} events ({calls:,} llm.call) in {len(snapshot.parquet)} Parquet "
              f"files and {len(snapshot.spool)} live segments")
    others = [m for m in damage if not any(path in m for path in snapshot.corrupt)]
    if not snapshot.corrupt and not others:
        return _Outcome("ok", detail)
    names = [os.path.relpath(path, folder) for path in snapshot.corrupt]
    problems = [f"{len(names)} damaged file(s) skipped: {', '.join(names[:5])}"] if names else []
    problems += others[:3]
    fix = "readers skip the damage and read everything else; " + (
        f"move the damaged files out of {folder} (restore them from a backup if you have one)"
        if names else "a damaged live segment is set aside as _corrupt-* when it rolls")
    return _Outcome("warn", f"{detail}; " + "; ".join(problems), fix)


# -- prices -------------------------------------------------------------------------------

def _check_price_book(ctx: _Context) -> _Outcome:
    from devora_lab.errors import PriceBookError

    overrides = ctx.workspace.settings.pricing.overrides
    try:
        book = ctx.workspace.price_book()
    except PriceBookError as exc:
        return _Outcome("fail", exc.message, f"{exc.fix}: [pricing] overrides in devora.toml "
                        "names it (relative to the workspace), or remove that setting")
    extra = f", with overrides from {overrides}" if overrides is not None else ""
    return _Outcome("ok", f"version {book.version}: {len(book)} models{extra}")


def _check_price_coverage(ctx: _Context) -> _Outcome:
    """Models the log used that the book cannot price: their calls report no cost."""
    if not ctx.workspace.events_dir.is_dir():
        return _Outcome("skipped", "no calls logged yet")
    try:
        book = ctx.workspace.price_book()
    except DevoraError:
        return _Outcome("skipped", "the price book does not load (see the price book check)")
    with _store(ctx) as (store, _):
        rows = store.rows(_MODELS_SQL)
    if not rows:
        return _Outcome("skipped", "no llm.call events yet")
    prefixes = {p.name for p in _providers(ctx)} | {"openai", "anthropic", "openrouter"}
    unpriced: Counter[str] = Counter()
    for requested, served, calls in rows:
        names = [name for name in (served, requested, _bare(requested, prefixes)) if name]
        if not any(book.price(name) is not None for name in names):
            unpriced[str(requested or served)] += int(calls)
    models = len({name for row in rows for name in row[:2] if name})
    if not unpriced:
        return _Outcome("ok", f"all {models} model(s) in the log have prices ({book.version})")
    listed = ", ".join(f"{name} ({calls:,} calls)" for name, calls in unpriced.most_common(10))
    where = ctx.workspace.settings.pricing.overrides
    target = f"the override file {where}" if where is not None else (
        "a JSON price book named by [pricing] overrides in devora.toml")
    return _Outcome(
        "warn", f"{len(unpriced)} of {models} model(s) have no price, so their calls are "
        f"logged as unpriced (not $0): {listed}",
        f'add them to {target}: {{"version": "...", "models": {{"<model>": {{"provider": '
        '"...", "input": <$ per 1M tokens>, "output": <$ per 1M tokens>}}} (LiteLLM\'s '
        "format works too); devora-lab costs reprice then prices the past calls")


def _bare(model: str | None, prefixes: set[str]) -> str | None:
    """``model`` without a provider prefix (``openrouter/gpt-4o`` → ``gpt-4o``)."""
    if model is None:
        return None
    head, sep, rest = model.partition("/")
    return rest if sep and head in prefixes else None


# -- providers ----------------------------------------------------------------------------

def _providers(ctx: _Context) -> list[_Provider]:
    """The providers in use: those in the settings, and built-in ones given a key or a
    base URL through the environment (a built-in nobody set up is not checked)."""
    from devora_lab.llm.routing import Router

    effective, public = Router(env=ctx.env).providers, Router(env={}).providers
    found: dict[str, _Provider] = {}
    for name, config in effective.items():
        key_env = config.api_key_env or f"{name.upper()}_API_KEY"
        if ctx.env.get(key_env) or config.base_url != public[name].base_url:
            found[name] = _Provider(name, config.kind, config.base_url, key_env)
    for name, settings in ctx.workspace.settings.providers.items():
        base = effective.get(name)
        found[name] = _Provider(
            name, settings.kind, settings.base_url or (base.base_url if base else None),
            settings.api_key_env or (base.api_key_env if base else None)
            or f"{name.upper()}_API_KEY")
    return list(found.values())


def _check_provider(ctx: _Context, provider: _Provider) -> _Outcome:
    name = provider.name
    if provider.base_url is None:
        return _Outcome("fail", f"{name} has no base_url",
                        f"set base_url under [providers.{name}] in devora.toml")
    where = f"{redact_url(provider.base_url)} ({provider.kind} format)"
    if ctx.env.get(provider.key_env):
        return _Outcome("ok", f"key in {provider.key_env}; {where}")
    fix = (f"export {provider.key_env}=<your key> (keys are read from the environment only), "
           f"or name another variable with api_key_env under [providers.{name}]")
    if urlsplit(provider.base_url).hostname in _LOOPBACK:
        return _Outcome("warn", f"{provider.key_env} is not set; {where} is on this machine, "
                        "where a server may need no key", fix)
    return _Outcome("fail", f"{provider.key_env} is not set, so calls to {where} will be "
                    "refused", fix)


def _probe_provider(ctx: _Context, provider: _Provider) -> _Outcome:
    """One GET to the models endpoint: any HTTP answer proves the endpoint is reachable."""
    import httpx

    from devora_lab.llm.providers.anthropic import ANTHROPIC_VERSION

    if provider.base_url is None:
        return _Outcome("skipped", "no base_url to probe")
    url = provider.base_url.rstrip("/") + ("/v1/models" if provider.kind == "anthropic"
                                           else "/models")
    shown = redact_url(url)
    key = ctx.env.get(provider.key_env)  # sent as a call would be: a 401 then means "bad key"
    headers = ({"anthropic-version": ANTHROPIC_VERSION} if provider.kind == "anthropic" else {})
    if key:
        headers["x-api-key" if provider.kind == "anthropic" else "authorization"] = (
            key if provider.kind == "anthropic" else f"Bearer {key}")
    try:
        response = httpx.get(url, headers=headers, timeout=ctx.timeout)
    except httpx.HTTPError as exc:
        return _Outcome("fail", f"cannot reach {shown}: {type(exc).__name__}: {exc}",
                        f"check {provider.name}'s base_url (devora.toml or its *_BASE_URL "
                        "variable), that the server runs, and the network or proxy")
    code = response.status_code
    if code in (401, 403):
        return _Outcome("warn", f"{shown} answered HTTP {code}: reachable, but the key in "
                        f"{provider.key_env} was refused",
                        f"check the key in {provider.key_env} (expired, revoked, wrong org?)")
    return _Outcome("ok", f"{shown} answered HTTP {code}")


# -- cache, budgets, Redis ------------------------------------------------------------------

def _check_cache(ctx: _Context) -> _Outcome:
    config = ctx.workspace.settings.cache
    if config.backend == "none":
        return _Outcome("skipped", 'the response cache is off ([cache] backend = "none")')
    if config.backend == "memory":
        return _Outcome("ok", "in-process memory cache (not shared between processes)")
    if config.backend == "redis":
        return _ping_redis(config.redis_url, ctx.timeout, "[cache] redis_url")
    from devora_lab.cache.disk import FILE_NAME, DiskCache

    if not (ctx.workspace.cache_dir / FILE_NAME).is_file():
        return _Outcome("ok", f"disk cache in {ctx.workspace.cache_dir}, empty so far")
    cache = DiskCache(ctx.workspace.cache_dir, max_bytes=config.max_bytes)
    try:
        stats = cache.stats()
    finally:
        cache.close()
    return _Outcome("ok", f"disk cache: {stats.entries:,} entries, "
                    f"{stats.bytes / 1e6:,.1f} MB of {config.max_bytes / 1e6:,.0f} MB")


def _ping_redis(url: str, timeout: float, setting: str) -> _Outcome:
    """PING with a short timeout and no retries: a health check must answer quickly."""
    shown = redact_url(url)
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        return _Outcome("fail", "the redis package is not installed", "pip install redis")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        return _Outcome("fail", f"{setting} {shown} is not a Redis URL: {exc}",
                        "use redis://[:password@]host[:port][/db], rediss://... or unix://...")
    started = time.perf_counter()
    try:
        client.ping()
    except redis.RedisError as exc:
        return _Outcome("fail", f"Redis at {shown} did not answer PING: "
                        f"{type(exc).__name__}: {exc}",
                        f"start redis-server there, or correct {setting} in devora.toml")
    finally:
        client.close()
    return _Outcome("ok", f"Redis at {shown} answered PING in "
                    f"{(time.perf_counter() - started) * 1000:.0f} ms")


def _check_budgets(ctx: _Context) -> _Outcome:
    from devora_lab.costs.wiring import budget_registry

    registry = budget_registry(ctx.workspace)
    if not registry.path.exists():
        return _Outcome("skipped", "no budgets set",
                        "set one with: devora-lab budgets set NAME --limit USD")
    budgets = registry.list()
    names = ", ".join(b.name for b in budgets[:10])
    return _Outcome("ok", f"{len(budgets)} budget(s) in {registry.path.name}"
                    + (f": {names}" if names else ""))


def _check_ledger(ctx: _Context) -> _Outcome:
    config = ctx.workspace.settings.budgets
    if config.backend == "redis":
        return _ping_redis(config.redis_url, ctx.timeout, "[budgets] redis_url")
    return _Outcome("ok", "local: totals per process, seeded from the event log")


# -- documents and experiments ----------------------------------------------------------------

def _check_rag(ctx: _Context) -> _Outcome:
    folder = ctx.workspace.lancedb_dir
    missing = _Outcome("skipped", f"no document index yet in {folder}",
                       "index documents with: devora-lab rag index DIR")
    if not folder.is_dir() or not any(folder.iterdir()):
        return missing
    store = ctx.workspace.chunk_store()
    chunks = store.count()
    if chunks == 0:
        return missing
    return _Outcome("ok", f"{chunks:,} chunks, embedder {store.embedder or 'unknown'}, "
                    f"{store.metric} metric")


def _check_experiments(ctx: _Context) -> _Outcome:
    from devora_lab.experiments.registry import ExperimentRegistry

    folder = ctx.workspace.experiments_dir
    if not folder.is_dir():
        return _Outcome("skipped", "no experiments yet")
    experiments = ExperimentRegistry(folder).list()
    running = sum(1 for e in experiments if e.state == "running")
    return _Outcome("ok", f"{len(experiments)} experiment(s), {running} running")
