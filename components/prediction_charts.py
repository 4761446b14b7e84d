"""The prediction comparison's figure: the distribution of candidate − baseline differences.

Follows components/charts.py: a whole figure from plain values, words inside the plot when
there is nothing to draw, the title at the left with what to know in its subtitle, and the
candidate in its own deployment colour (components/split.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from components.charts import message_annotation
from components.split import color_for
from rollout.predictions import Tolerance

_HEIGHT = 320
_MUTED = "#6b7280"
_BINS = 60


def differences_figure(
    differences: Sequence[float],
    *,
    baseline: str,
    candidate: str,
    deployments: Sequence[str] = (),
    tolerance: Tolerance | None = None,
    dropped: int = 0,
) -> go.Figure:
    """A histogram of candidate − baseline per numeric value both answers have."""
    notes: list[str] = []
    traces: list[go.Histogram] = []
    annotations: list[dict[str, object]] = []
    shapes: list[dict[str, object]] = []
    if not differences:
        annotations.append(message_annotation("No numeric values in both answers to compare"))
    else:
        traces.append(
            go.Histogram(
                x=list(differences),
                nbinsx=_BINS,
                name=f"{candidate} − {baseline}",
                marker_color=color_for(candidate),
                hovertemplate="%{x}: %{y} value(s)<extra></extra>",
            )
        )
        zero = sum(1 for d in differences if d == 0)
        notes.append(f"{len(differences):,} values, {zero:,} of them equal.")
        if tolerance is not None and tolerance.absolute > 0:
            inside = sum(1 for d in differences if abs(d) <= tolerance.absolute)
            notes.append(f"{inside:,} within the absolute tolerance {tolerance.absolute:g}.")
        shapes.append(
            {
                "type": "line",
                "x0": 0,
                "x1": 0,
                "xref": "x",
                "y0": 0,
                "y1": 1,
                "yref": "paper",
                "line": {"color": _MUTED, "width": 1, "dash": "dot"},
                "name": "zero",
            }
        )
    if dropped:
        notes.append(f"{dropped:,} more values are not drawn.")
    subtitle = " ".join(notes)
    return go.Figure(
        data=traces,
        layout={
            "title": {
                "text": f"Differences in predictions: {candidate} − {baseline}",
                "subtitle": {"text": subtitle},
                "x": 0,
                "xanchor": "left",
            },
            "height": _HEIGHT,
            "margin": {"l": 10, "r": 10, "t": 70 if subtitle else 45, "b": 10},
            "showlegend": False,
            "bargap": 0.05,
            "xaxis": {"title": {"text": "candidate − baseline"}, "zeroline": False},
            "yaxis": {"title": {"text": "values"}, "rangemode": "tozero"},
            "annotations": annotations,
            "shapes": shapes,
        },
    )
