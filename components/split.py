"""The small live/mirror split bar shown beside an endpoint's traffic."""

from __future__ import annotations

import zlib

import plotly.graph_objects as go

from rollout.rules import MAX_TRAFFIC_PERCENT

_NAMED_SHARE = 20  # percent: below this a live bar is too thin for its deployment's name
# The palette by colour name, so that the tutorial's blue and green are drawn blue and green.
NAMED_COLORS = {
    "blue": "#1f77b4",
    "green": "#2ca02c",
    "orange": "#ff7f0e",
    "purple": "#9467bd",
    "brown": "#8c564b",
    "pink": "#e377c2",
    "cyan": "#17becf",
}
PALETTE = list(NAMED_COLORS.values())
_OTHERS = [c for name, c in NAMED_COLORS.items() if name not in ("blue", "green")]
_OVER_COLOR = "#d62728"  # the 100% mark on a plan that goes past it
_MARK_ROOM = 18  # px above the bar for the 100% mark's label


def color_for(deployment: str) -> str:
    """A deployment's colour, from its name alone, so that it keeps its colour whatever else
    is present (a position among the deployments present would change when one is deleted).

    A name that is a colour name gets that colour ("blue", "Green"). Any other name gets a
    stable hash of it (crc32: Python's hash() is salted per process) into the palette less
    blue and green, so that a "blue-v2" or a "candidate" is never drawn like the tutorial's
    blue or green beside them.
    """
    named = NAMED_COLORS.get(deployment.lower())
    if named is not None:
        return named
    return _OTHERS[zlib.crc32(deployment.lower().encode()) % len(_OTHERS)]


def _label(name: str, share: int) -> str:
    """A live bar's label: a thin bar keeps only its share, which still fits."""
    return f"{name} {share}%" if share >= _NAMED_SHARE else f"{share}%"


def split_figure(traffic: dict[str, int], mirror: dict[str, int]) -> go.Figure:
    """A horizontal 100% bar of live traffic, with the mirror share drawn hatched below it.

    A plan whose live shares sum past 100% is drawn whole, with a mark at 100%."""
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
                marker_color=color_for(name),
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
                marker_color=color_for(name),
                marker_pattern_shape="/",
                text=f"{name} {share}% mirrored",
                # alone on its row, so the label fits beside the bar however thin it is
                textposition="outside",
                textangle=0,
                insidetextanchor="middle",
                hovertemplate=f"{name}: a copy of {share}% of live requests<extra></extra>",
            )
    # A plan over 100% is drawn whole, on a scale past 100 with the 100% mark, so that
    # the share beyond it is seen rather than cut off at the edge.
    total = sum(v for v in traffic.values() if v > 0)
    over = total > MAX_TRAFFIC_PERCENT
    if over:
        fig.add_vline(x=MAX_TRAFFIC_PERCENT, line={"color": _OVER_COLOR, "width": 2})
        fig.add_annotation(
            x=MAX_TRAFFIC_PERCENT,
            y=1,
            yref="paper",
            yanchor="bottom",
            text=f"100% · plan {total}%",
            showarrow=False,
            font={"size": 11, "color": _OVER_COLOR},
        )
    fig.update_layout(
        barmode="stack",
        height=(90 if mirror else 60) + (_MARK_ROOM if over else 0),
        margin={"l": 0, "r": 0, "t": _MARK_ROOM if over else 0, "b": 0},
        showlegend=False,
        # a label too long for its bar is hidden, not shrunk to an unreadable size
        uniformtext={"minsize": 10, "mode": "hide"},
        xaxis={"range": [0, max(MAX_TRAFFIC_PERCENT, total)], "visible": False},
        yaxis={
            "visible": bool(mirror),
            "categoryorder": "array",
            "categoryarray": ["mirror", "live"],
        },
    )
    return fig
