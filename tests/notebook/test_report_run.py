"""The report runner on real kernels: papermill runs the fixture notebooks, the HTML is
checked statically and in headless Chromium with every non-file request blocked."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from devora_lab.cli import main
from devora_lab.errors import ReportError
from devora_lab.notebook.report import (
    ReportResult,
    discover_reports,
    export_html,
    external_references,
    run_report,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks"
TITLE = "Spend by model"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def chart(workspace: Path) -> ReportResult:
    """One run of the chart notebook, shared: a kernel start and altair cost seconds."""
    return run_report("chart", workspace, parameters={"title": TITLE, "bars": 4},
                      progress=False, notebooks=FIXTURES)


@pytest.fixture(scope="module")
def failure(workspace: Path) -> ReportError:
    with pytest.raises(ReportError) as info:
        run_report("failing", workspace, progress=False, notebooks=FIXTURES)
    return info.value


def _outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


def test_run_writes_notebook_and_html_into_workspace_reports(chart: ReportResult,
                                                             workspace: Path) -> None:
    assert chart.ok and chart.seconds > 0
    assert chart.notebook == workspace / "reports" / "chart.ipynb"
    assert chart.html == workspace / "reports" / "chart.html"
    assert chart.notebook.is_file() and chart.html.is_file()


def test_parameters_are_injected_with_the_workspace(chart: ReportResult,
                                                   workspace: Path) -> None:
    nb = nbformat.read(chart.notebook, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert f"title = {TITLE!r}".replace("'", '"') in injected[0].source
    printed = _outputs_text(chart.notebook)
    assert f"title={TITLE!r} bars=4 workspace={str(workspace)!r}" in printed
    assert chart.parameters == {"workspace": str(workspace), "title": TITLE, "bars": 4}


def test_the_python3_kernel_is_this_interpreter(chart: ReportResult) -> None:
    assert f"prefix {sys.prefix}" in _outputs_text(chart.notebook)


def test_html_fetches_nothing_and_inlines_the_svg_chart(chart: ReportResult) -> None:
    html = chart.html.read_text()
    assert external_references(html) == [] and chart.external == ()
    assert "<script" not in html  # not even inline: nothing in it needs JavaScript
    assert html.count("<svg") == 1 and 'class="mark-rect' in html
    assert "schema/vega-lite" not in html  # the SVG was chosen, not the vega-lite JSON


def test_the_default_lab_template_would_fetch_from_cdns(chart: ReportResult) -> None:
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(template_name="lab").from_filename(str(chart.notebook))
    found = external_references(html)
    assert any("require" in url for url in found), found


def test_no_input_hides_code_but_keeps_outputs(chart: ReportResult, tmp_path: Path) -> None:
    html = export_html(chart.notebook, tmp_path / "clean.html", exclude_input=True)
    assert "vl_convert" not in html and "<svg" in html


def test_a_failed_cell_names_report_cell_and_error(failure: ReportError) -> None:
    assert failure.report == "failing" and failure.cell_index == 3
    assert failure.ename == "RuntimeError"
    assert failure.evalue == "the third code cell fails on purpose"
    assert "cell 3" in str(failure) and "RuntimeError" in str(failure)
    assert str(failure.notebook) in str(failure) and str(failure.html) in str(failure)


def test_a_failed_run_keeps_its_notebook_and_html(failure: ReportError) -> None:
    assert failure.notebook is not None and failure.html is not None
    nb = nbformat.read(failure.notebook, as_version=4)
    last = nb.cells[-1]
    assert last.source == "after = 'never runs'" and last.execution_count is None
    html = failure.html.read_text()
    assert "the third code cell fails on purpose" in html and "papermill-error-cell" in html
    assert external_references(html) == []


def test_widget_views_dropped_and_images_preferred_over_cdn_html(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("chart; slider")
    display = nbformat.v4.new_output
    cell.outputs = [
        display("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "IntSlider(value=3)"}),
        display("display_data", data={
            "text/html": '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>',
            "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"><rect id="r"/></svg>',
            "text/plain": "<chart>"}),
        display("display_data", data={"application/javascript": "require(['x'])",
                                      "text/plain": "js fallback"}),
    ]
    nb.cells.append(cell)
    source = tmp_path / "handmade.ipynb"
    nbformat.write(nb, source)
    html = export_html(source, tmp_path / "handmade.html")
    assert external_references(html) == []
    assert "IntSlider" not in html and "widget-view" not in html
    assert "<svg" in html and "cdn.jsdelivr" not in html
    assert "require([" not in html and "js fallback" in html


def test_discovery_names_reports_after_their_number() -> None:
    reports = discover_reports(FIXTURES)
    assert [r.name for r in reports] == ["chart", "failing"]
    assert reports[0].title == "Chart fixture"


def test_unknown_report_lists_the_available_ones(workspace: Path) -> None:
    with pytest.raises(ReportError, match=r"no report named 'nope' \(available: chart, failing"):
        run_report("nope", workspace, notebooks=FIXTURES)


# ---------------------------------------------------------------------------- the CLI


def test_cli_lists_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--list", "--notebooks", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert "chart" in out and "Chart fixture" in out and "02_failing.ipynb" in out


def test_cli_runs_all_reports_and_fails_naming_the_cell(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    argv = ["--workspace", str(tmp_path / "ws"), "report", "all", "--notebooks", str(FIXTURES),
            "--out", str(out_dir), "-p", "title=From the CLI", "-p", "bars=2", "--quiet"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"chart: {out_dir / 'chart.html'}" in captured.out
    assert "report 'failing' failed at cell 3" in captured.err
    assert "RuntimeError: the third code cell fails on purpose" in captured.err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "chart.html", "chart.ipynb", "failing.html", "failing.ipynb"]
    assert "title='From the CLI' bars=2" in _outputs_text(out_dir / "chart.ipynb")


def test_cli_needs_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(tmp_path), "report"]) == 2
    assert "--list" in capsys.readouterr().err


def test_cli_refuses_a_malformed_parameter(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--workspace", str(tmp_path), "report", "chart", "--notebooks", str(FIXTURES),
            "-p", "no-equals-sign"]
    assert main(argv) == 2
    assert "key=value" in capsys.readouterr().err


# ---------------------------------------------------------------------------- Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or importlib.util.find_spec("playwright") is None,
    reason="needs Debian's chromium on PATH and the playwright package (scripts/setup.sh)")


@needs_chromium
def test_report_renders_in_chromium_with_the_network_blocked(chart: ReportResult) -> None:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []
    errors: list[str] = []

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.route("**/*", only_files)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(chart.html.as_uri(), wait_until="networkidle")
            charts = page.locator(".jp-RenderedSVG svg")
            bars = page.locator(".jp-RenderedSVG svg g.mark-rect path")
            assert charts.count() == 1 and bars.count() == 4
            box = charts.first.bounding_box()
            assert box is not None and box["width"] > 50 and box["height"] > 50
            assert TITLE in charts.first.inner_html()
        finally:
            browser.close()
    assert blocked == [] and errors == []
