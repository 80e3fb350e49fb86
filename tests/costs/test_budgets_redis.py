"""Budgets shared through a real redis-server: the limit holds across processes and threads.

The done-when of the budget work: 4 processes x 50 concurrent calls against one hard budget
never spend more than the limit plus one call's reservation, every refusal is a
BudgetExceededError (and a ``budget`` event), and each threshold fires exactly once.
"""

from __future__ import annotations

import multiprocessing
import random
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from devora_lab.costs.budgets import Budget, BudgetAlert, BudgetGuard, CallScope, period_bounds
from devora_lab.costs.ledger import Account, RedisLedger, to_micros
from devora_lab.errors import BudgetExceededError, CacheUnavailableError, ConfigError
from devora_lab.events import EventLog

PROCESSES, CALLS = 4, 50
HARD = Budget(name="team-day", limit_usd=60.0, thresholds=(0.25, 0.5, 0.8))
SOFT = Budget(name="watch-day", limit_usd=30.0, hard=False, thresholds=(0.5, 1.0, 1.5))


def _one_call(guard: BudgetGuard, rng: random.Random, results: list[tuple[str, float, float]],
              lock: threading.Lock) -> None:
    """Reserve a random worst case, 'run' the call, settle at a random cost within it."""
    with lock:  # random.Random is not thread-safe
        worst = round(rng.uniform(0.5, 1.5), 6)
        actual = round(worst * rng.uniform(0.5, 1.0), 6)
        delay, duration = rng.uniform(0, 0.3), rng.uniform(0, 0.02)
    time.sleep(delay)  # calls arrive over time, so freed money is spent again
    try:
        hold = guard.reserve(CallScope(user_id="shared"), worst)
    except BudgetExceededError:
        results.append(("refused", worst, 0.0))
        return
    time.sleep(duration)
    guard.settle(hold, actual)
    results.append(("ok", worst, actual))


def _process(url: str, prefix: str, log_root: str, seed: int, start: Any, out: Any) -> None:
    """One process: CALLS threads, each making one call through its own guard's ledger."""
    ledger, log = RedisLedger(url, prefix=prefix), EventLog(log_root)
    alerts: list[BudgetAlert] = []
    guard = BudgetGuard([HARD, SOFT], ledger, event_log=log, on_alert=alerts.append)
    rng, lock, results = random.Random(seed), threading.Lock(), list[tuple[str, float, float]]()
    threads = [threading.Thread(target=_one_call, args=(guard, rng, results, lock))
               for _ in range(CALLS)]
    start.wait(timeout=60)  # every process begins together
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    ledger.close()
    out.put({"results": results, "alerts": [(a.budget, a.threshold) for a in alerts]})


def test_four_processes_never_overspend_a_hard_budget(tmp_path: Path, redis_url: str,
                                                      redis_prefix: str) -> None:
    began = time.monotonic()
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=_process, args=(redis_url, redis_prefix,
                                                        str(tmp_path / "events"), seed, start,
                                                        out)) for seed in range(PROCESSES)]
    for process in processes:
        process.start()
    reports = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    results = [r for report in reports for r in report["results"]]
    alerts = Counter(a for report in reports for a in report["alerts"])
    refused = [r for r in results if r[0] == "refused"]
    settled = sum(actual for kind, _, actual in results if kind == "ok")
    worst = max(w for _, w, _ in results)

    assert len(results) == PROCESSES * CALLS
    assert settled <= HARD.limit_usd + worst  # the bound asked for: at most one reservation
    assert settled <= HARD.limit_usd  # and, with costs within their reservations, none
    assert settled >= 0.8 * HARD.limit_usd  # money freed by cheap calls was spent again
    assert len(refused) > 0

    ledger = RedisLedger(redis_url, prefix=redis_prefix)
    start_of_day, _ = period_bounds("daily", datetime.now(timezone.utc), "UTC")
    account = Account(HARD.name, f"daily-{start_of_day.date()}", "global")
    spent, reserved = ledger.balance(account)
    assert reserved == 0 and spent == sum(to_micros(a) for kind, _, a in results if kind == "ok")

    with EventLog(tmp_path / "events").store() as store:
        events = store.rows("SELECT name, severity, threshold FROM events WHERE kind = 'budget'")
    refusals = [e for e in events if e[1] == "error"]
    assert len(refusals) == len(refused)  # one refusal event per BudgetExceededError
    assert {e[0] for e in refusals} == {"team-day"}
    expected = {(HARD.name, t) for t in HARD.thresholds} | {(SOFT.name, t) for t in SOFT.thresholds}
    assert alerts == Counter(expected)  # each threshold exactly once, across processes
    crossings = Counter((e[0], e[1]) for e in events if e[1] != "error")
    assert crossings == {("team-day", "warning"): 3, ("watch-day", "warning"): 1,
                         ("watch-day", "critical"): 2}
    assert time.monotonic() - began < 20


def test_reservations_expire_after_the_period(redis_url: str, redis_prefix: str) -> None:
    ledger = RedisLedger(redis_url, prefix=redis_prefix, keep_after_end_s=3600)
    guard = BudgetGuard([Budget(name="b", limit_usd=1.0)], ledger)
    hold = guard.reserve(CallScope(), 0.5)
    key = next(iter(ledger.client.scan_iter(match=f"{redis_prefix}*a:global")))
    _, end = period_bounds("daily", datetime.now(timezone.utc), "UTC")
    expected_ms = (end.timestamp() + 3600 - time.time()) * 1000
    assert abs(ledger.client.pttl(key) - expected_ms) < 5000
    guard.settle(hold, 0.25)
    assert guard.status().loc[0, "spent_usd"] == 0.25
    ledger.close()


def test_history_seeds_once_across_processes(redis_url: str, redis_prefix: str) -> None:
    lookups: list[str] = []

    def spent_lookup(budget: Budget, key: str, start: datetime, end: datetime) -> float:
        lookups.append(key)
        return 0.9

    budget = Budget(name="b", limit_usd=1.0, scope="user", match="*")
    guards = [BudgetGuard([budget], RedisLedger(redis_url, prefix=redis_prefix),
                          spent_lookup=spent_lookup) for _ in range(2)]
    guards[0].reserve(CallScope(user_id="alice"), 0.05)
    with pytest.raises(BudgetExceededError):  # the second "process" sees the seeded 0.9
        guards[1].reserve(CallScope(user_id="alice"), 0.1)
    assert lookups == ["user=alice"]
    account = Account("b", "any-period", "user=bob")
    assert [guards[i].ledger.seed(account, 7, time.time()) for i in (0, 1)] == [True, False]


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    ledger = RedisLedger(url, timeout=0.2)
    guard = BudgetGuard([Budget(name="b", limit_usd=1.0)], ledger)
    with pytest.raises(CacheUnavailableError) as caught:
        guard.reserve(CallScope(), 0.1)
    assert "budget ledger" in str(caught.value) and caught.value.fix
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(ledger)
    with pytest.raises(ConfigError) as bad:
        RedisLedger("htp://:hunter2-secret@host/0")
    assert "hunter2" not in str(bad.value) and "***@host" in str(bad.value)
