"""Showing an altair chart so that it renders offline, in JupyterLab and in a report.

A chart is displayed as one bundle of three representations:

- ``application/vnd.vegalite.v5+json``: the spec, which JupyterLab 4 renders natively and
  interactively (tooltips, selections) with the renderer it bundles, no network needed;
- ``image/svg+xml``: the same chart drawn by vl-convert (Vega in a Rust runtime, offline),
  which nbconvert puts in the HTML report, so a report needs no JavaScript at all;
- ``text/plain``: a one-line description for consoles and text diffs.

altair's own renderers load Vega from a CDN (blank offline) or emit a vega-lite v6 mimetype
that JupyterLab 4.6 does not render; this module is why neither matters here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import altair as alt

__all__ = ["VEGALITE_MIMETYPE", "chart_bundle", "chart_svg", "show"]

VEGALITE_MIMETYPE: Final = "application/vnd.vegalite.v5+json"


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict()
    return spec


def chart_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as SVG text, drawn offline by vl-convert."""
    import altair as alt
    import vl_convert

    version = "v" + alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0].replace(".", "_")
    svg: str = vl_convert.vegalite_to_svg(_spec(chart), vl_version=version)
    return svg


def chart_bundle(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The display bundle described in the module docstring."""
    spec = _spec(chart)
    title = spec.get("title")
    label = title.get("text") if isinstance(title, dict) else title
    return {
        VEGALITE_MIMETYPE: spec,
        "image/svg+xml": chart_svg(chart),
        "text/plain": f"<chart: {label or type(chart).__name__}>",
    }


def show(chart: alt.TopLevelMixin) -> None:
    """Display ``chart`` in the notebook (interactive in JupyterLab, SVG in reports)."""
    from IPython.display import display

    display(chart_bundle(chart), raw=True)  # type: ignore[no-untyped-call]
