"""The small live/mirror split bar shown beside an endpoint's traffic."""

from __future__ import annotations

import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def color_for(deployment: str, deployments: list[str]) -> str:
    ordered = sorted(deployments)
    index = ordered.index(deployment) if deployment in ordered else len(ordered)
    return PALETTE[index % len(PALETTE)]


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
                text=f"{name} {live}%",
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
                textposition="inside",
                textangle=0,
                insidetextanchor="middle",
                hovertemplate=f"{name}: a copy of {share}% of live requests<extra></extra>",
            )
    fig.update_layout(
        barmode="stack",
        height=90 if mirror else 60,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        showlegend=False,
        xaxis={"range": [0, 100], "visible": False},
        yaxis={
            "visible": bool(mirror),
            "categoryorder": "array",
            "categoryarray": ["mirror", "live"],
        },
    )
    return fig
