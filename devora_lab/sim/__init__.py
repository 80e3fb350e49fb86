"""Synthetic but realistic workloads, for the demo and for tests that need a populated log.

``traces`` samples token lengths and arrivals from figures fitted to public production
traces (Azure 2023, Mooncake); ``calls`` simulates a day of a team's LLM calls with them;
``rows`` turns a day into events; ``workload.generate_workload`` writes weeks of them.
"""

from __future__ import annotations

__all__ = ["calls", "rows", "traces", "workload"]
