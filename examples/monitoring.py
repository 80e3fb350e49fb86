"""Monitoring: metrics by model over the last hour, an alert rule checked, the health report.

Shows: ``devora_lab.monitoring.metrics.metrics`` (one DuckDB scan over the log), an
``AlertManager`` evaluating a per-model spend rule and notifying a ``LogSink`` when it
starts firing (the same rules live in ``<workspace>/alerts.toml`` for
``devora-lab alerts check``), and ``Lab.health()``, each check with its fix.

Run:  python examples/monitoring.py
"""

from __future__ import annotations

import logging
import sys

from _offline import example_workspace

from devora_lab import Lab, Tags
from devora_lab.monitoring.alerting import AlertManager
from devora_lab.monitoring.metrics import metrics
from devora_lab.monitoring.rules import AlertConfig, ThresholdRule
from devora_lab.monitoring.sinks import Dispatcher, LogSink

logging.basicConfig(stream=sys.stdout, level=logging.WARNING,  # where LogSink writes
                    format="%(levelname)s %(name)s: %(message)s")
RULES = AlertConfig(rule=[
    ThresholdRule(name="hourly spend per model", metric="cost_usd", window="1h", op=">",
                  threshold=0.005, by="model", severity="warning"),
    ThresholdRule(name="error rate", metric="error_rate", window="15m", op=">",
                  threshold=0.05, min_requests=5, severity="critical"),
])

with example_workspace() as workspace, Lab(workspace) as lab:
    for n in range(12):  # some traffic to look at: two models, two agents
        model = "gpt-4o" if n % 3 == 0 else "gpt-4o-mini"
        lab.client.complete([{"role": "user", "content": f"Task {n}: name a sorting algorithm"}],
                            model=model, max_tokens=400,
                            tags=Tags(agent="coder" if n % 2 else "reviewer"))

    with lab.event_log.store() as store:
        by_model = metrics(store, ["requests", "error_rate", "latency_p95_ms", "output_tokens",
                                   "cost_usd"], by=["model"], window="1h")
    print("last hour, by model:")
    print(by_model.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "\n")

    manager = AlertManager(RULES, lab.event_log, Dispatcher([LogSink()]),
                           state_dir=lab.workspace.root / "alerts")
    result = manager.check()  # a rule that starts firing writes an `alert` event and notifies
    for evaluation in result.evaluations:
        state = {True: "FIRING", False: "ok", None: "no verdict"}[evaluation.firing]
        group = f" [{evaluation.group}]" if evaluation.group else ""
        print(f"{state:10} {evaluation.rule.name}{group}: {evaluation.summary()}")

    report = lab.health()
    print(f"\nhealth: {report.status} (exit code {report.exit_code})")
    for check in report.results:
        print(f"  {check.status:7} {check.name:22} {check.detail}")
