"""Run the benchmarks and print one table: ``python -m benchmarks [--quick] [--only NAME]``.

A full run writes the table to ``benchmarks/results.md`` as Markdown; a ``--quick`` smoke
run or a partial ``--only`` run writes it only where ``--markdown PATH`` says. Scratch data
lives in ``benchmarks/.work/`` (git-ignored), emptied before and removed after the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from rich.console import Console

from benchmarks.harness import PACKAGE_DIR, Benchmark, Context, discover, select
from benchmarks.table import Row, markdown, print_table

WORK = PACKAGE_DIR / ".work"
RESULTS = PACKAGE_DIR / "results.md"
console = Console() if sys.stdout.isatty() else Console(width=150)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats: a smoke run in under a minute")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this benchmark or dotted prefix (repeatable), "
                             "e.g. events.query or events")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--markdown", type=Path, metavar="PATH",
                        help="write the Markdown table here (default for a full run: "
                             f"{RESULTS.relative_to(PACKAGE_DIR.parent)})")
    return parser.parse_args(argv)


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True,
                         check=True, timeout=10)
    return out.stdout.strip()


def _git_commit() -> str:
    """The commit measured, flagged when the package had uncommitted changes."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "../devora_lab")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} + uncommitted changes in devora_lab/" if dirty else commit


def _machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} "
            f"{platform.machine()}; load average (1, 5, 15 min) at the start {_load()}")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _versions() -> str:
    packages = ("duckdb", "pyarrow", "pandas", "numpy", "orjson")
    listed = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Python {platform.python_version()}, {listed}"


def _peak_rss_gib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 2**20  # ru_maxrss is in KiB on Linux


def _run_all(benchmarks: list[Benchmark], ctx: Context) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failed: list[str] = []
    for bench in benchmarks:
        console.print(f"[bold]▶ {bench.name}[/] — {bench.doc}")
        start = time.perf_counter()
        try:
            rows.extend(bench.run(ctx))
        except Exception:  # noqa: BLE001 - report it and go on with the other benchmarks
            console.print(f"[red]{bench.name} failed:[/]\n{traceback.format_exc()}")
            failed.append(bench.name)
        console.print(f"  done in {time.perf_counter() - start:.1f} s")
    return rows, failed


def _preamble(args: argparse.Namespace, started: str, machine: str, seconds: float,
              failed: list[str]) -> list[str]:
    mode = "quick smoke run" if args.quick else "full run"
    lines = [
        "## Benchmarks",
        "",
        f"`python -m benchmarks{' --quick' if args.quick else ''}` ({mode}) at commit "
        f"{_git_commit()}, {started}; took {seconds:.0f} s, peak memory of one process "
        f"{_peak_rss_gib():.1f} GiB.",
        "",
        f"Machine: {machine}, at the end {_load()}. {_versions()}.",
        "Wall-clock numbers depend on what else runs on the machine; the CPU-per-event "
        "figures in the notes do much less.",
    ]
    if failed:
        lines += ["", f"**Failed:** {', '.join(failed)} (see the run's output)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    benchmarks = select(discover(), args.only)
    if args.list:
        for bench in benchmarks:
            console.print(f"{bench.name:<20} {bench.doc}", highlight=False)
        return 0
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = _machine()
    shutil.rmtree(WORK, ignore_errors=True)
    start = time.perf_counter()
    try:
        rows, failed = _run_all(benchmarks, Context(quick=args.quick, work=WORK))
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    seconds = time.perf_counter() - start
    print_table(rows, title=f"devora_lab benchmarks ({'quick' if args.quick else 'full'})",
                console=console)
    console.print(f"total {seconds:.1f} s; peak RSS {_peak_rss_gib():.1f} GiB; "
                  f"load average {_load()}")
    target = args.markdown or (RESULTS if not (args.quick or args.only) else None)
    if target is not None:
        preamble = _preamble(args, started, machine, seconds, failed)
        target.write_text(markdown(rows, preamble), encoding="utf-8")
        console.print(f"wrote {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
