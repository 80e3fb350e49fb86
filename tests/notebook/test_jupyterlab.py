"""The overview notebook in a real JupyterLab, driven in Debian's Chromium by Playwright.

JupyterLab runs on a free loopback port with a random token, its settings in a temporary
folder, and a kernel that reads a small demo workspace (``DEVORA_WORKSPACE``). The browser
runs every cell and the test checks what a reader sees: the charts drawn by JupyterLab's
own Vega renderer (no CDN), the filter widgets, no traceback, and the explorer redrawing
for a picked model. Every request that does not go to the server is blocked and counted:
there must be none.

Set ``DEVORA_SCREENSHOT_DIR`` to keep screenshots of the dashboard and the explorer.
Skipped when Chromium or the playwright package is missing (``scripts/setup.sh``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devora_lab.sim.workload import generate_workload
from devora_lab.workspace import Workspace

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHROMIUM = next((path for path in ("/usr/bin/chromium", shutil.which("chromium"),
                                   shutil.which("chromium-browser"))
                 if path and Path(path).exists()), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or importlib.util.find_spec("playwright") is None
    or importlib.util.find_spec("jupyterlab") is None,
    reason="needs Debian's chromium, the playwright package and jupyterlab (scripts/setup.sh)")

# JupyterLab settings for a quiet, fully rendered page: no news or update checks (they
# would ask in a toast), every cell kept in the DOM (no virtual scrolling).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}"""
ALL_RUN = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
    return panel.sessionContext.session.kernel.status === 'idle'
        && cells.every(cell => cell.model.executionCount !== null);
}"""


@dataclass(frozen=True)
class Lab:
    url: str
    token: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def small_workspace(root: Path) -> Path:
    """The demo's synthetic history, thinned: two weeks (the notebook's default period) at
    a tenth of the demo's traffic, written in about a second."""
    workspace = Workspace(root).ensure()
    log = workspace.event_log()
    generate_workload(log, days=14, calls_per_day=300, seed=7, progress=False)
    log.close()
    return root


def wait_until_up(url: str, token: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}")
        request = urllib.request.Request(f"{url}api/status",
                                         headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("jupyter lab did not answer within 60 s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    notebooks = base / "notebooks"  # a copy: Lab may autosave what it ran
    notebooks.mkdir()
    shutil.copy(NOTEBOOKS / "01_overview.ipynb", notebooks)
    for name, values in SETTINGS.items():
        path = base / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "DEVORA_WORKSPACE": str(small_workspace(base / "workspace")),
           "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "lab-workspaces")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               f"--ServerApp.token={token}", "--ServerApp.ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={notebooks}",
               "--LabApp.expose_app_in_browser=True"]
    with open(base / "lab.log", "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, token, process)
        yield Lab(url, token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_overview_runs_and_renders_in_jupyterlab_offline(lab: Lab) -> None:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []
    page_errors: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(lab.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.route("**/*", only_the_server)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(f"{lab.url}lab/tree/01_overview.ipynb?reset&token={lab.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_RUN, timeout=90_000, polling=250)
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # room for charts
            check_outputs(page)
            snapshot(page, page.locator(".vega-embed").first, "overview-dashboard.png")
            explore(page)
        finally:
            browser.close()
    assert blocked == [], f"requests leaving 127.0.0.1: {blocked}"
    assert page_errors == []


def check_outputs(page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    expect(page.locator(".vega-embed").first).to_be_visible(timeout=20_000)
    # Vega draws into a canvas or an svg of class "marks" (vega-embed's menu is an svg too)
    drawn = page.locator(".vega-embed canvas.marks, .vega-embed svg.marks")
    assert drawn.count() >= 2  # the linked charts and the latency quantiles
    box = drawn.first.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 600
    assert page.locator(".jupyter-widgets .widget-dropdown select").count() == 5
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    texts = [errors.nth(i).inner_text() for i in range(errors.count())]
    assert not [text for text in texts if "Traceback" in text], texts
    assert page.locator(".jp-OutputArea-output", has_text="Cache hit rate").count() >= 1


def explore(page: object) -> None:
    """Pick a model in the explorer: its Output widget gets the charts for that model."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    model = page.locator(".widget-dropdown", has_text="model").locator("select")
    choices = [text for text in model.locator("option").all_inner_texts() if text != "(all)"]
    model.select_option(label=choices[0])
    output = page.locator(".jupyter-widgets.widget-output .vega-embed .marks")
    expect(output.first).to_be_visible(timeout=30_000)
    expect(page.locator(".jupyter-widgets.widget-output",
                        has_text=f"model {choices[0]}").first).to_be_visible()
    snapshot(page, model, "overview-explorer.png", top=True)


def snapshot(page: object, target: object, name: str, *, top: bool = False) -> None:
    """A screenshot of the page scrolled to ``target`` (to its top edge with ``top``), when
    DEVORA_SCREENSHOT_DIR is set."""
    from playwright.sync_api import Locator, Page

    folder = os.environ.get("DEVORA_SCREENSHOT_DIR")
    if not folder:
        return
    assert isinstance(page, Page) and isinstance(target, Locator)
    target.scroll_into_view_if_needed()
    if top:
        target.evaluate("element => element.scrollIntoView({block: 'start'})")
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(folder) / name))
