"""The pure parts of the report runner: the offline check, SVG id scoping, and finding the
curated notebooks."""

from __future__ import annotations

from pathlib import Path

import pytest

from devora_lab.errors import ReportError
from devora_lab.notebook.report import (
    NOTEBOOKS_ENV,
    external_references,
    notebooks_dir,
    resolve_report,
    scope_svg_ids,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks"

PAGE = """<!DOCTYPE html><html><head>
<script src="https://cdnjs.cloudflare.com/require.js"></script>
<link rel="stylesheet" href="//fonts.example.com/font.css">
<link rel="icon" href="favicon.png">
<style>@import "https://css.example.com/a.css";
body { background: url('https://img.example.com/bg.png') }</style>
<script type="module">const m = await import("https://esm.example.com/mermaid.mjs");</script>
<script>var relative = "./local.js";</script>
</head><body>
<a href="https://docs.example.com/read-more">a link is not fetched</a>
<img src="data:image/png;base64,AAAA"><img src="chart.png">
<img srcset="https://img.example.com/1x.png 1x, local-2x.png 2x">
<div style="background-image: url(https://img.example.com/div.png)"></div>
<svg xmlns="http://www.w3.org/2000/svg"><image href="https://img.example.com/in-svg.png"/></svg>
<p>https://text.example.com/only-text</p>
</body></html>"""


def test_external_references_lists_what_a_browser_would_fetch() -> None:
    assert external_references(PAGE) == [
        "https://cdnjs.cloudflare.com/require.js",
        "//fonts.example.com/font.css",
        "https://css.example.com/a.css",
        "https://img.example.com/bg.png",
        "https://esm.example.com/mermaid.mjs",
        "https://img.example.com/1x.png",
        "https://img.example.com/div.png",
        "https://img.example.com/in-svg.png",
    ]


def test_external_references_of_a_plain_page_is_empty() -> None:
    assert external_references("<html><body><a href='https://x.org'>x</a></body></html>") == []


def test_svg_ids_and_their_references_get_the_prefix() -> None:
    svg = ('<?xml version="1.0"?>\n<svg><defs><clipPath id="clip1"><rect/></clipPath>'
           '<linearGradient id="g"/></defs><g clip-path="url(#clip1)" fill="url(\'#g\')">'
           '<use href="#clip1"/><use href="#elsewhere"/></g></svg>')
    scoped = scope_svg_ids(svg, "c1o0-")
    assert scoped.startswith("<svg>")
    assert 'id="c1o0-clip1"' in scoped and 'url(#c1o0-clip1)' in scoped
    assert "url('#c1o0-g')" in scoped and 'href="#c1o0-clip1"' in scoped
    assert 'href="#elsewhere"' in scoped  # not defined here: left alone
    plain = '<svg><rect width="3"/></svg>'
    assert scope_svg_ids(plain, "p-") == plain


def test_notebooks_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv(NOTEBOOKS_ENV, str(FIXTURES))
    assert notebooks_dir() == FIXTURES
    assert resolve_report("chart").path == FIXTURES / "01_chart.ipynb"
    monkeypatch.setenv(NOTEBOOKS_ENV, str(tmp_path / "missing"))
    with pytest.raises(ReportError, match=NOTEBOOKS_ENV):
        notebooks_dir()


def test_notebooks_dir_defaults_to_the_checkouts_notebooks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTEBOOKS_ENV, raising=False)
    assert notebooks_dir() == Path(__file__).resolve().parents[2] / "notebooks"


def test_reports_resolve_by_name_stem_or_path() -> None:
    by_name = resolve_report("chart", FIXTURES)
    assert resolve_report("01_chart", FIXTURES) == by_name
    assert resolve_report(FIXTURES / "01_chart.ipynb") == by_name
    assert by_name.name == "chart" and by_name.title == "Chart fixture"
