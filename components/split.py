"""The small live/mirror split bar shown beside an endpoint's traffic."""

from __future__ import annotations

import plotly.graph_objects as go

_NAMED_SHARE = 20  # percent: below this a live bar is too thin for its deployment's name
PALETTE = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def color_for(deployment: str, deployments: list[str]) -> str:
    ordered = sorted(deployments)
    index = ordered.index(deployment) if deployment in ordered else len(ordered)
    return PALETTE[index % len(PALETTE)]


def _label(name: str, share: int) -> str:
    """A live bar's label: a thin bar keeps only its share, which still fits."""
    return f"{name} {share}%" if share >= _NAMED_SHARE else f"{share}%"


def split_figure(traffic: dict[str, int], mirror: dict[str, int]) -> go.Figure:
    """A horizontal 100% bar of live traffic, with the mirror share drawn hatched below it."""
    names = sorted(set(traffic) | set(mirror))
    fig = go.Figure()
    for name in names:
        live = traffic.get(name, 0)
        if live:
            fig.add_bar(
                y=["live"],
                x=[live],
                name=name,
                orientation="h",
                marker_color=color_for(name, names),
                text=_label(name, live),
                textposition="inside",
                textangle=0,
                insidetextanchor="middle",
                hovertemplate=f"{name}: {live}% of live traffic<extra></extra>",
            )
    for name, share in mirror.items():
        if share:
            fig.add_bar(
                y=["mirror"],
                x=[share],
                name=f"{name} (mirror)",
                orientation="h",
                marker_color=color_for(name, names),
                marker_pattern_shape="/",
                text=f"{name} {share}% mirrored",
                # alone on its row, so the label fits beside the bar however thin it is
                textposition="outside",
                textangle=0,
                insidetextanchor="middle",
                hovertemplate=f"{name}: a copy of {share}% of live requests<extra></extra>",
            )
    fig.update_layout(
        barmode="stack",
        height=90 if mirror else 60,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        showlegend=False,
        # a label too long for its bar is hidden, not shrunk to an unreadable size
        uniformtext={"minsize": 10, "mode": "hide"},
        xaxis={"range": [0, 100], "visible": False},
        yaxis={
            "visible": bool(mirror),
            "categoryorder": "array",
            "categoryarray": ["mirror", "live"],
        },
    )
    return fig
