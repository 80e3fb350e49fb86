"""Regenerate the README's screenshots from a real demo workspace (nothing is drawn by hand).

    .venv/bin/python scripts/screenshots.py [--workspace devora-workspace] [--out docs/images]

Takes the HTML reports the demo wrote to ``<workspace>/reports/`` and photographs them in
headless Chromium with every non-file request blocked (the same check the tests make), then
runs the JupyterLab browser test with ``DEVORA_SCREENSHOT_DIR`` set, so the dashboard shot is
of the overview notebook really executed in JupyterLab. Needs Debian's chromium and the
playwright package (``make setup`` installs both).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ("overview", "costs", "experiments")


def shoot_reports(workspace: Path, out: Path) -> list[Path]:
    from playwright.sync_api import Route, sync_playwright

    written: list[Path] = []
    blocked: list[str] = []

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path="/usr/bin/chromium",
                                       args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.route("**/*", only_files)
        for name in REPORTS:
            html = workspace / "reports" / f"{name}.html"
            if not html.exists():
                print(f"skipped {name}: {html} does not exist (run make demo first)")
                continue
            page.goto(html.resolve().as_uri())
            # the first chart at the top of the picture: a report opens with prose and code
            chart = page.locator("svg").first
            if chart.count():
                chart.evaluate("node => node.scrollIntoView({block: 'start'})")
                page.mouse.wheel(0, -80)
            page.wait_for_timeout(500)
            target = out / f"report_{name}.png"
            page.screenshot(path=str(target), full_page=False)
            written.append(target)
        browser.close()
    if blocked:
        raise SystemExit(f"a report tried to load {blocked[:3]}: reports must be offline")
    return written


def shoot_jupyterlab(out: Path) -> None:
    env = {**os.environ, "DEVORA_SCREENSHOT_DIR": str(out)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    str(ROOT / "tests" / "notebook" / "test_jupyterlab.py")],
                   check=True, env=env, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="devora-workspace", type=Path)
    parser.add_argument("--out", default=ROOT / "docs" / "images", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in shoot_reports(args.workspace, args.out):
        print(f"wrote {path}")
    shoot_jupyterlab(args.out)
    print(f"JupyterLab dashboard screenshot in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
