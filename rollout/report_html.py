"""The review report as one self-contained HTML file: opened anywhere, with no network.

The page comes from the Jinja2 template next to this module (`report.html.j2`, autoescape
on: a reason or a deployment name is text, never markup). plotly.js is inlined once, in
the head; each chart is a div with the call that draws it. No stylesheet, font or script
is fetched from anywhere: the styles are inline and use the reader's system fonts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from rollout.report import Report

TEMPLATE = "report.html.j2"
_FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"  # the reader's own fonts
_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def chart_html(figure: Any) -> Markup:
    """One figure as a div and its drawing call; plotly.js itself is in the page's head."""
    page_figure = go.Figure(figure)  # a copy: the caller's figure stays as it was
    # Streamlit gives a chart room for its axis labels; a plain page has to ask for it.
    page_figure.update_layout(margin={"l": 70}, font={"family": _FONT})
    html = pio.to_html(page_figure, full_html=False, include_plotlyjs=False, config=_CONFIG)
    return Markup(html)  # plotly's own output: JSON of the figure, escaped by plotly


def render(report: Report, figures: Sequence[Any] = ()) -> str:
    """The whole report as one HTML document (plotly.js inlined when there is a chart)."""
    template = _ENV.get_template(TEMPLATE)
    return template.render(
        r=report,
        when=_when,
        span=_span,
        plotly_js=Markup(get_plotlyjs()) if figures else None,
        charts=[chart_html(f) for f in figures],
    )
