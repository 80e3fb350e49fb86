"""Run the curated notebooks headless (papermill) into self-contained HTML reports.

A report is a notebook ``NN_name.ipynb`` in the curated folder (``$DEVORA_NOTEBOOKS``, else
the repository's ``notebooks/``); its name is the part after the number. Running one writes::

    <out>/<name>.ipynb   the executed notebook, parameters injected after its `parameters` cell
    <out>/<name>.html    the same as one HTML file that renders with the network off

``<out>`` defaults to ``<workspace>/reports/``; each run replaces the previous files. A failed
cell fails the run with ``ReportError`` (report, cell index, exception), and both files are
still written as the failure report, with papermill's marker pointing at the failed cell.

The HTML is nbconvert's ``lab`` template with every CDN block blanked (require.js, MathJax,
mermaid, the widget manager), SVG charts inlined, and images preferred over HTML so an altair
bundle (SVG from vl-convert + vega-lite JSON) shows as the SVG. Math stays TeX source, widget
views are dropped: both need JavaScript a report cannot fetch offline.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devora_lab.errors import ConfigError, ReportError
from devora_lab.workspace import Workspace

if TYPE_CHECKING:
    from nbconvert import HTMLExporter
    from nbformat import NotebookNode
    from papermill.exceptions import PapermillExecutionError

__all__ = [
    "NOTEBOOKS_ENV", "ParameterValue", "Report", "ReportResult", "discover_reports",
    "export_html", "external_references", "html_exporter", "notebooks_dir", "parse_parameter",
    "parse_parameters", "parse_value", "resolve_report", "run_report", "run_reports",
    "scope_svg_ids",
]

NOTEBOOKS_ENV = "DEVORA_NOTEBOOKS"
ParameterValue = bool | int | float | str | None

_FILE = re.compile(r"^(\d+)_(\w[\w-]*)\.ipynb$")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_INJECTED, _ERROR_MARKER = "injected-parameters", "papermill-error-cell-tag"
# Images first: a bundle that also carries HTML (altair's CDN loader) must show its SVG.
# JavaScript, widget views and mermaid are left out: they need scripts from a CDN.
_PRIORITY = ["image/svg+xml", "image/png", "image/jpeg", "text/html", "text/markdown",
             "text/latex", "text/plain"]
_TEMPLATE_FILE = "devora_report.html.j2"
# Kept in code, not a .j2 file, so an installed wheel carries it without package-data.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_svg scoped -%}
<div class="jp-RenderedSVG jp-OutputArea-output {{ extra_class }}" data-mime-type="image/svg+xml">
{{ output.data['image/svg+xml'] }}
</div>
{%- endblock data_svg -%}
"""


# ---------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Report:
    """One curated notebook: ``name`` (``overview`` for ``01_overview.ipynb``), its path,
    and the title of its first Markdown heading (the name when it has none)."""

    name: str
    path: Path
    title: str


def notebooks_dir() -> Path:
    """The curated notebooks: ``$DEVORA_NOTEBOOKS``, else ``notebooks/`` of the checkout
    (the package is installed editable; a wheel does not carry them)."""
    env = os.environ.get(NOTEBOOKS_ENV)
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "notebooks"
    if not path.is_dir():
        where = f"{NOTEBOOKS_ENV}={env}" if env else f"{path} (beside the package)"
        raise ReportError(f"the curated notebooks folder was not found: {where}",
                          fix=f"set {NOTEBOOKS_ENV} to a devora_lab checkout's notebooks/ "
                              "folder, or pass a notebook's path")
    return path


def discover_reports(directory: Path | None = None) -> list[Report]:
    """The ``NN_name.ipynb`` notebooks of ``directory`` (default ``notebooks_dir()``), in
    number order."""
    folder = directory if directory is not None else notebooks_dir()
    numbered = [(int(m.group(1)), p) for p in folder.glob("*.ipynb") if (m := _FILE.match(p.name))]
    return [_report(p) for _, p in sorted(numbered)]


def resolve_report(name_or_path: str | os.PathLike[str] | Report,
                   directory: Path | None = None) -> Report:
    """A report by name (``overview``), file stem (``01_overview``) or notebook path."""
    if isinstance(name_or_path, Report):
        return name_or_path
    text = os.fspath(name_or_path)
    if text.endswith(".ipynb") and Path(text).is_file():
        return _report(Path(text))
    reports = discover_reports(directory)
    for report in reports:
        if text in (report.name, report.path.stem):
            return report
    names = ", ".join(r.name for r in reports) or "none"
    raise ReportError(f"no report named {text!r} (available: {names})", report=text,
                      fix="run `devora-lab report --list`, or pass a notebook's .ipynb path")


def _report(path: Path) -> Report:
    match = _FILE.match(path.name)
    name = match.group(2) if match else path.stem
    return Report(name=name, path=path.resolve(), title=_title(path) or name)


def _title(path: Path) -> str | None:
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return None
    markdown = ("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown")
    headings = (line for text in markdown for line in text.splitlines() if line.startswith("#"))
    return next((line.lstrip("#").strip() for line in headings), None)


# ---------------------------------------------------------------------------- parameters


def parse_value(text: str) -> ParameterValue:
    """A ``-p`` value typed as papermill's CLI types it: True/False/None, int, float, else
    the string unchanged (papermill keeps this helper private, so it is mirrored here)."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_parameter(item: str) -> tuple[str, ParameterValue]:
    """``key=value`` into a name and a typed value; the name must be a Python identifier,
    since papermill writes it as an assignment into the notebook."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier() or keyword.iskeyword(key):
        raise ConfigError(f"report parameter {item!r} is not key=value with a Python name",
                          fix="write e.g. -p days=7 -p model=gpt-4o")
    return key, parse_value(value)


def parse_parameters(items: Iterable[str]) -> dict[str, ParameterValue]:
    """Every ``key=value``; a later key overrides an earlier one."""
    return dict(parse_parameter(item) for item in items)


# ---------------------------------------------------------------------------- running


@dataclass(frozen=True)
class ReportResult:
    """What one run produced; ``error`` is set (and the files are the failure report) when
    it failed; ``external`` lists URLs the HTML would still fetch (empty normally)."""

    report: Report
    notebook: Path
    html: Path
    seconds: float
    parameters: dict[str, Any]
    external: tuple[str, ...] = ()
    error: ReportError | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None


def run_report(name_or_path: str | os.PathLike[str] | Report,
               workspace: Workspace | str | os.PathLike[str], *,
               parameters: Mapping[str, Any] | None = None, out_dir: Path | None = None,
               kernel_name: str | None = None, progress: bool = True,
               exclude_input: bool = False, notebooks: Path | None = None) -> ReportResult:
    """Execute one report with papermill and write ``<out>/<name>.ipynb`` and ``.html``.

    The notebook's parameters get ``workspace`` (as a string) and then ``parameters``. It
    runs in its own folder, as in JupyterLab. ``kernel_name=None`` uses the notebook's
    kernel; ``python3`` runs this interpreter (jupyter_client starts ``sys.executable``).
    Raises ``ReportError`` naming the failed cell; the failed notebook and HTML are kept.
    """
    report = resolve_report(name_or_path, notebooks)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    executed, html = _outputs(report, ws, out_dir)
    params = {"workspace": str(ws.root), **(parameters or {})}
    started = time.perf_counter()
    _prepare_out(report, executed, html)
    failure = _execute(report, executed, params, kernel_name=kernel_name, progress=progress)
    text = export_html(executed, html, title=report.title, exclude_input=exclude_input,
                       source_dir=report.path.parent)
    if failure is not None:
        raise _cell_error(report, failure, executed, html)
    return ReportResult(report=report, notebook=executed, html=html, parameters=params,
                        seconds=time.perf_counter() - started,
                        external=tuple(external_references(text)))


def run_reports(names: Sequence[str | os.PathLike[str]],
                workspace: Workspace | str | os.PathLike[str], *,
                parameters: Mapping[str, Any] | None = None, out_dir: Path | None = None,
                kernel_name: str | None = None, progress: bool = True,
                exclude_input: bool = False, notebooks: Path | None = None,
                ) -> list[ReportResult]:
    """Run several reports (``["all"]``: every curated one), one after the other, with a
    progress bar on stderr; a failure is collected in its result and the rest still run.
    Every name is resolved first, so a typo fails before anything runs."""
    from rich.console import Console
    from rich.progress import Progress

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    wanted = [os.fspath(n) for n in names]
    reports = (discover_reports(notebooks) if wanted == ["all"]
               else [resolve_report(n, notebooks) for n in wanted])
    results: list[ReportResult] = []
    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task("reports", total=len(reports))
        for report in reports:
            bar.update(task, description=f"report {report.name}")
            started = time.perf_counter()
            try:
                results.append(run_report(report, ws, parameters=parameters,
                                          out_dir=out_dir, kernel_name=kernel_name,
                                          progress=False, exclude_input=exclude_input))
            except ReportError as exc:
                executed, html = _outputs(report, ws, out_dir)
                results.append(ReportResult(
                    report=report, notebook=executed, html=html, error=exc,
                    seconds=time.perf_counter() - started,
                    parameters={"workspace": str(ws.root), **(parameters or {})}))
            bar.advance(task)
    return results


def _outputs(report: Report, workspace: Workspace, out_dir: Path | None) -> tuple[Path, Path]:
    out = Path(out_dir) if out_dir is not None else workspace.reports_dir
    return out / f"{report.name}.ipynb", out / f"{report.name}.html"


def _prepare_out(report: Report, executed: Path, html: Path) -> None:
    """Create the output folder and remove the last run's files, so that a run which dies
    before writing cannot leave an older report looking current."""
    out = executed.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        executed.unlink(missing_ok=True)
        html.unlink(missing_ok=True)
    except OSError as exc:
        raise ReportError(f"report {report.name!r}: cannot write to {out}: {exc}",
                          report=report.name, fix="choose a writable --out folder") from exc


def _execute(report: Report, executed: Path, params: dict[str, Any], *,
             kernel_name: str | None, progress: bool) -> PapermillExecutionError | None:
    """Run papermill; a failed cell is returned (its notebook is already written), a kernel
    that is missing or dies is raised as ``ReportError``."""
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(str(report.path), str(executed), parameters=params,
                                   kernel_name=kernel_name, progress_bar=progress,
                                   cwd=str(report.path.parent),
                                   # the kernel's start-up warnings (plain-TCP loopback
                                   # transport) would be noise in every cron mail
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except PapermillExecutionError as exc:
        return exc
    except NoSuchKernel as exc:
        raise ReportError(f"report {report.name!r}: no Jupyter kernel named {exc.name!r}",
                          report=report.name,
                          fix="pass a kernel that exists (`jupyter kernelspec list`) or "
                              "install ipykernel in this environment") from exc
    except DeadKernelError as exc:
        raise ReportError(f"report {report.name!r}: the kernel died while running it: {exc}",
                          report=report.name, notebook=executed,
                          fix="check memory use; the partial notebook is kept") from exc
    return None


def _cell_error(report: Report, exc: PapermillExecutionError, executed: Path,
                html: Path) -> ReportError:
    """Translate papermill's cell index (counted in the executed notebook, which holds the
    injected-parameters cell) into the index in the report's own notebook."""
    cells = [c for c in _read(executed).cells
             if _ERROR_MARKER not in c.metadata.get("tags", [])]
    own = [c for c in cells[: exc.cell_index + 1]
           if _INJECTED not in c.metadata.get("tags", [])]
    index, code_number = len(own) - 1, sum(c.cell_type == "code" for c in own)
    return ReportError(
        f"report {report.name!r} failed at cell {index} (code cell {code_number}): "
        f"{exc.ename}: {exc.evalue}; the failed notebook is kept at {executed} and {html}",
        report=report.name, cell_index=index, ename=exc.ename, evalue=exc.evalue,
        notebook=executed, html=html,
        fix=f"read the traceback in {html}, then fix the notebook or its parameters")


# ---------------------------------------------------------------------------- HTML


def html_exporter(*, exclude_input: bool = False) -> HTMLExporter:
    """nbconvert's ``lab`` HTML exporter with no CDN script and images before HTML."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config({"NbConvertBase": {"display_data_priority": _PRIORITY}})
    return HTMLExporter(  # type: ignore[no-untyped-call]
        config=config, template_name="lab", template_file=_TEMPLATE_FILE,
        extra_loaders=[DictLoader({_TEMPLATE_FILE: _TEMPLATE})],
        exclude_input=exclude_input, embed_images=True)


def _read(path: Path) -> NotebookNode:
    import nbformat

    node: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return node


def export_html(notebook: Path, html: Path, *, title: str | None = None,
                exclude_input: bool = False, source_dir: Path | None = None) -> str:
    """Write ``notebook`` as one self-contained HTML file and return the HTML.

    ``source_dir`` is where relative Markdown images are read from (to embed them)."""
    node = _offline_outputs(_read(notebook))
    resources = {"metadata": {"name": title or notebook.stem,
                              "path": str(source_dir or notebook.parent)}}
    text, _ = html_exporter(exclude_input=exclude_input).from_notebook_node(
        node, resources=resources)
    html.write_text(text, encoding="utf-8")
    return text


def _offline_outputs(nb: NotebookNode) -> NotebookNode:
    """Drop widget views (their manager comes from a CDN) and give each inlined SVG its own
    ids, so two charts' clip paths or gradients cannot resolve to each other's."""
    nb.metadata.pop("widgets", None)
    for c, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if _WIDGET_VIEW not in o.get("data", {})]
        for o, output in enumerate(cell.outputs):
            svg = output.get("data", {}).get("image/svg+xml")
            if isinstance(svg, str):
                output.data["image/svg+xml"] = scope_svg_ids(svg, f"c{c}o{o}-")
    return nb


def scope_svg_ids(svg: str, prefix: str) -> str:
    """Prefix every id the SVG defines, and its references, and strip any XML prolog."""
    svg = re.sub(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", "", svg)
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg

    def scoped(match: re.Match[str]) -> str:
        head, name = match.group(1), match.group(2)
        return head + prefix + name if name in ids else match.group(0)

    return re.sub(r"""(\bid="|url\(['"]?#|href="#)([^"')]+)""", scoped, svg)


# ---------------------------------------------------------------------------- offline check

_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])((?:https?:)?//[^'")\s]+)""", re.I)
_JS_IMPORT = re.compile(r"""(?:\bimport\s*\(\s*|\bfrom\s+|\bimport\s+)['"]((?:https?:)?//[^'"]+)""")
_FETCHED = ("src", "href", "xlink:href", "data", "poster", "srcset", "background")


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._inside: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = tag if tag in ("script", "style") else None
        for name, value in attrs:
            if not value:
                continue
            if name == "style":
                self.found += _CSS_URL.findall(value)
            elif name in _FETCHED and tag not in ("a", "area"):
                urls = [part.split()[0] for part in value.split(",") if part.split()] \
                    if name == "srcset" else [value.strip()]
                self.found += [u for u in urls if _is_remote(u)]

    def handle_endtag(self, tag: str) -> None:
        self._inside = None

    def handle_data(self, data: str) -> None:
        if self._inside == "style":
            self.found += _CSS_URL.findall(data)
        elif self._inside == "script":
            self.found += _JS_IMPORT.findall(data) + _CSS_URL.findall(data)


def _is_remote(url: str) -> bool:
    return url.lower().startswith(("http://", "https://", "//"))


def external_references(html: str) -> list[str]:
    """The http(s) URLs a browser would fetch to show ``html``: ``src``/``href`` (and
    similar) of every element but links, CSS ``url()``/``@import``, and module imports in
    inline scripts. Links a reader may click (``<a href>``) are not fetched, so not listed."""
    parser = _References()
    parser.feed(html)
    parser.close()
    return list(dict.fromkeys(parser.found))
