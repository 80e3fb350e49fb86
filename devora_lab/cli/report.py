"""``devora-lab report``: run curated notebooks headless with papermill into HTML reports.

Each report writes <out>/<name>.ipynb (the executed notebook) and <out>/<name>.html (one
file that renders with the network off); <out> defaults to <workspace>/reports/. A failed cell
still writes both, as the failure report, and the command exits 2 naming the cell and error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from devora_lab.cli.context import console, open_workspace

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("report", parents=[common], help="run notebooks into HTML reports",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="report names (see --list), notebook paths, or 'all'")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a notebook parameter; values typed like papermill's -p "
                             "(True/False/None, int, float, else text); repeatable")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: <workspace>/reports)")
    parser.add_argument("--list", action="store_true", help="list the curated reports")
    parser.add_argument("--notebooks", type=Path, default=None, metavar="DIR",
                        help="curated notebooks folder (default: $DEVORA_NOTEBOOKS, else the "
                             "checkout's notebooks/)")
    parser.add_argument("--no-input", action="store_true",
                        help="hide code cells in the HTML, showing only their outputs")
    parser.add_argument("--kernel", default=None, metavar="NAME",
                        help="Jupyter kernel (default: the notebook's, python3 = this Python)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.notebooks)
    from devora_lab.errors import ConfigError
    from devora_lab.notebook.report import parse_parameters, run_reports

    if not args.names:
        raise ConfigError("name the reports to run, or 'all'",
                          fix="run `devora-lab report --list` to see them")
    parameters = parse_parameters(args.parameters)
    results = run_reports(args.names, open_workspace(args), parameters=parameters,
                          out_dir=args.out, kernel_name=args.kernel,
                          progress=not args.quiet and sys.stderr.isatty(),
                          exclude_input=args.no_input, notebooks=args.notebooks)
    out = console()
    for result in results:
        if result.error is None:
            out.print(f"{result.report.name}: {result.html} ({result.seconds:.1f} s)",
                      markup=False, soft_wrap=True)
        for url in result.external:
            out.print(f"  warning: the HTML still fetches {url}", markup=False, soft_wrap=True)
    failed = [r.error for r in results if r.error is not None]
    for error in failed:
        print(f"error: {error.message}", file=sys.stderr)
        if error.fix:
            print(f"  fix: {error.fix}", file=sys.stderr)
    return 2 if failed else 0


def _list(folder: Path | None) -> int:
    from devora_lab.notebook.report import discover_reports, notebooks_dir

    folder = folder if folder is not None else notebooks_dir()
    reports = discover_reports(folder)
    out = console()
    if not reports:
        out.print(f"no reports (NN_name.ipynb) in {folder}", markup=False)
    for report in reports:
        out.print(f"{report.name:<24} {report.title}  [{report.path.name}]", markup=False,
                  soft_wrap=True)
    return 0
