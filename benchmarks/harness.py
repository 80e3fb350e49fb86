"""The benchmark registry, the run context and small timing helpers.

Adding a benchmark module: create ``benchmarks/bench_<area>.py`` and decorate functions with
``@benchmark("<area>.<name>")``. Each takes the run's ``Context`` and returns ``Row``s for
the shared table; ``python -m benchmarks`` finds the module by its name, nothing to list.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.table import Row

__all__ = ["Benchmark", "Context", "benchmark", "discover", "median", "select", "timed"]

T = TypeVar("T")
BenchFn = Callable[["Context"], list[Row]]
PACKAGE_DIR = Path(__file__).resolve().parent

_registry: dict[str, Benchmark] = {}


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A registered benchmark: its dotted name and the function that measures it."""

    name: str
    run: BenchFn
    doc: str


def benchmark(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register the decorated function as benchmark ``name`` (``area.what``)."""

    def register(fn: BenchFn) -> BenchFn:
        if name in _registry:
            raise ValueError(f"benchmark {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _registry[name] = Benchmark(name, fn, doc[0] if doc else "")
        return fn

    return register


def discover() -> list[Benchmark]:
    """Import every ``benchmarks/bench_*.py`` and return the benchmarks they registered."""
    for module in sorted(pkgutil.iter_modules([str(PACKAGE_DIR)]), key=lambda m: m.name):
        if module.name.startswith("bench_"):
            importlib.import_module(f"benchmarks.{module.name}")
    return list(_registry.values())


def select(benchmarks: Sequence[Benchmark], only: Sequence[str]) -> list[Benchmark]:
    """The benchmarks named in ``only`` (exact names or dotted prefixes); all if empty."""
    if not only:
        return list(benchmarks)
    chosen = [b for b in benchmarks
              if any(b.name == name or b.name.startswith(f"{name}.") for name in only)]
    if not chosen:
        known = ", ".join(b.name for b in benchmarks)
        raise SystemExit(f"no benchmark matches {', '.join(only)}; known: {known}")
    return chosen


@dataclass(slots=True)
class Context:
    """What every benchmark gets: the run's size, a scratch folder and a per-run cache."""

    quick: bool
    work: Path
    cache: dict[str, Any] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        """``quick`` in a ``--quick`` smoke run, else ``full``."""
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        """An empty folder ``name`` under the scratch space (emptied if it existed)."""
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``fn()`` took on the wall clock, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
