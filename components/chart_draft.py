"""The pieces every chart is drawn with: a figure drafted as plain dicts (`Draft`),
its panels, lines in each deployment's colour, series from metric frames, and markers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from components.chart_markers import MARKER_GAP, Marker, cluster_markers
from components.split import color_for
from rollout.metrics import ALL, MIRROR, Window

MIRROR_DASH = "dash"
_MARKER_COLOR = "#6b7280"
MUTED = "#6b7280"
HEIGHT = 320
_LEGEND_WIDTH = 190
_GAP = 0.05  # between panels side by side
_ROW_GAP = 0.1  # between panels one above the other


def message_annotation(text: str) -> dict[str, Any]:
    """Words in the middle of a figure's plot area, where its data would be."""
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": 0.5,
        "y": 0.5,
        "showarrow": False,
        "font": {"size": 15, "color": MUTED},
        "name": "message",
    }


def local_times(times: Any, tz: tzinfo | None) -> Any:
    """UTC timestamps as naive local times: plotly's date axes ignore offsets."""
    zone = tz or datetime.now().astimezone().tzinfo
    return pd.to_datetime(times, utc=True).dt.tz_convert(zone).dt.tz_localize(None)


def local_point(at: datetime, tz: tzinfo | None) -> datetime:
    return at.astimezone(tz or datetime.now().astimezone().tzinfo).replace(tzinfo=None)


def series_label(deployment: str, traffic_type: str, *, mirror_targets: Iterable[str] = ()) -> str:
    """'green', 'green (mirror)', or 'green (mirrored + direct)' when the metrics cannot
    tell a mirror target's mirrored copies from requests sent to it directly."""
    if traffic_type == MIRROR:
        return f"{deployment} (mirror)"
    if traffic_type == ALL and deployment in set(mirror_targets):
        return f"{deployment} (mirrored + direct)"
    return deployment


def is_mirrored(deployment: str, traffic_type: str, *, mirror_targets: Iterable[str] = ()) -> bool:
    return traffic_type == MIRROR or (traffic_type == ALL and deployment in set(mirror_targets))


def deployment_names(frame: Any, deployments: Sequence[str]) -> list[str]:
    seen = [str(d) for d in frame["deployment"].dropna().unique()] if len(frame) else []
    return sorted(set(deployments) | set(seen))


def line_style(deployment: str, *, dashed: bool = False) -> dict[str, Any]:
    line = {"color": color_for(deployment)}
    return {**line, "dash": MIRROR_DASH} if dashed else line


def series(frame: Any, keys: list[str]) -> Iterable[tuple[tuple[str, ...], Any]]:
    """Groups of `frame` by `keys`, summed per time and in time order, sorted by key."""
    if not len(frame):
        return []
    data = frame.assign(deployment=frame["deployment"].fillna("(all)"))
    summed = data.groupby([*keys, "time"], as_index=False, sort=True)["value"].sum()
    return [
        (key if isinstance(key, tuple) else (key,), group.sort_values("time"))
        for key, group in summed.groupby(keys, sort=True)
    ]


def gapped(group: Any, window: Window | None) -> Any:
    """A series with a blank row after each bucket followed by none, so that the line
    breaks where there was no data instead of joining across it."""
    if window is None or len(group) < 2:
        return group
    step = pd.Timedelta(window.granularity)
    times = group["time"]
    ends = times[(times.shift(-1) - times) > step * 1.5]
    if not len(ends):
        return group
    blanks = pd.DataFrame({"time": ends + step, "value": float("nan")})
    return pd.concat([group[["time", "value"]], blanks]).sort_values("time")


def missing_words(names: Iterable[str], what: str) -> str | None:
    missing = sorted(names)
    if not missing:
        return None
    return f"No {what} for {', '.join(missing)} in this window."


@dataclass
class Draft:
    """A figure being drawn, as plain dicts: plotly validates it once, at the end (adding
    traces and updating the layout one call at a time costs several times more)."""

    panels: list[tuple[str, str]]  # (x axis, y axis) of each panel
    layout: dict[str, Any]
    traces: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    shapes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def single(cls) -> Draft:
        return cls([("x", "y")], {"xaxis": {"anchor": "y"}, "yaxis": {"anchor": "x"}})

    @classmethod
    def side_by_side(cls, titles: Sequence[str]) -> Draft:
        """Panels in one row, each with its own time axis."""
        n = len(titles)
        width = (1 - _GAP * (n - 1)) / n
        layout: dict[str, Any] = {}
        panels, annotations = [], []
        for i, title in enumerate(titles):
            suffix = "" if i == 0 else str(i + 1)
            x, y = f"x{suffix}", f"y{suffix}"
            start = i * (width + _GAP)
            end = min(round(start + width, 6), 1.0)
            layout[f"xaxis{suffix}"] = {"domain": [round(start, 6), end], "anchor": y}
            layout[f"yaxis{suffix}"] = {"anchor": x}
            panels.append((x, y))
            annotations.append(panel_title(title, start + width / 2, 1.0))
        return cls(panels, layout, annotations=annotations)

    @classmethod
    def stacked(cls, titles: Sequence[str]) -> Draft:
        """Panels one above the other, sharing one time axis at the bottom."""
        n = len(titles)
        height = (1 - _ROW_GAP * (n - 1)) / n
        layout: dict[str, Any] = {"xaxis": {"anchor": f"y{n}"}}
        panels, annotations = [], []
        for i, title in enumerate(titles):
            suffix = "" if i == 0 else str(i + 1)
            top = 1 - i * (height + _ROW_GAP)
            bottom = max(round(top - height, 6), 0.0)
            layout[f"yaxis{suffix}"] = {"domain": [bottom, round(top, 6)], "anchor": "x"}
            panels.append(("x", f"y{suffix}"))
            annotations.append(panel_title(title, 0.5, top))
        return cls(panels, layout, annotations=annotations)

    def axis(self, panel: int, which: str) -> dict[str, Any]:
        name = self.panels[panel][0 if which == "x" else 1]
        key = ("xaxis" if which == "x" else "yaxis") + name[1:]
        axis: dict[str, Any] = self.layout.setdefault(key, {})
        return axis

    def add(self, trace: dict[str, Any], panel: int = 0) -> None:
        x, y = self.panels[panel]
        self.traces.append({**trace, "xaxis": x, "yaxis": y})

    def message(self, text: str) -> None:
        """Words in the middle of the plot area, where the data would be."""
        self.annotations.append(message_annotation(text))

    def finish(
        self,
        *,
        title: str,
        notes: Sequence[str],
        window: Window | None,
        markers: Sequence[Marker],
        tz: tzinfo | None,
        height: int = HEIGHT,
    ) -> go.Figure:
        x_axes = list(dict.fromkeys(x for x, _ in self.panels))
        for x in x_axes:
            axis = self.layout.setdefault("xaxis" + x[1:], {})
            axis["type"] = "date"
            if window is not None:
                long = window.end - window.start > timedelta(days=1)
                axis["range"] = [local_point(window.start, tz), local_point(window.end, tz)]
                axis["tickformat"] = "%b %d %H:%M" if long else "%H:%M"
                axis["hoverformat"] = "%Y-%m-%d %H:%M:%S"
        for _, y in self.panels:
            self.layout.setdefault("yaxis" + y[1:], {}).setdefault("rangemode", "tozero")
        shown = [m for m in markers if window is None or window.start <= m.at <= window.end]
        if shown:
            span = (
                window.end - window.start
                if window is not None
                else max(m.at for m in shown) - min(m.at for m in shown)
            )
            # panels side by side share the width: their labels are that much closer
            for group in cluster_markers(shown, span, gap=MARKER_GAP * len(x_axes)):
                for marker in group:
                    self._marker_line(marker, local_point(marker.at, tz), x_axes)
                self._label(group, local_point(group[0].at, tz), x_axes[0])
        subtitle = " ".join(notes)
        top = (70 if subtitle else 45) + (20 if len(self.panels) > 1 else 0)
        self.layout.update(
            title={"text": title, "subtitle": {"text": subtitle}, "x": 0, "xanchor": "left"},
            height=height,
            # a fixed room for the legend, so that the charts' time axes line up
            margin={"l": 10, "r": _LEGEND_WIDTH, "t": top, "b": 10},
            legend={"x": 1.01, "xanchor": "left", "y": 1, "font": {"size": 11}},
            showlegend=bool(self.traces),
            hovermode="x unified",
            annotations=self.annotations,
            shapes=self.shapes,
        )
        return go.Figure(data=self.traces, layout=self.layout)

    def _marker_line(self, marker: Marker, x: datetime, x_axes: list[str]) -> None:
        for axis in x_axes:
            self.shapes.append(
                {
                    "type": "line",
                    "x0": x,
                    "x1": x,
                    "xref": axis,
                    "y0": 0,
                    "y1": 1,
                    "yref": "paper",
                    "line": {"color": _MARKER_COLOR, "width": 1, "dash": "dot"},
                    "name": f"marker:{marker.kind}",
                }
            )

    def _label(self, group: Sequence[Marker], x: datetime, axis: str) -> None:
        first = group[0]
        kinds = {m.kind for m in group}
        self.annotations.append(
            {
                "x": x,
                "xref": axis,
                "y": 1,
                "yref": "paper",
                "text": first.label if len(group) == 1 else f"{len(group)} changes",
                "hovertext": "<br>".join(m.detail for m in group),
                "showarrow": False,
                "textangle": -90,
                "xanchor": "left",
                "yanchor": "top",
                "font": {"size": 10, "color": _MARKER_COLOR},
                "name": f"marker:{first.kind}" if len(kinds) == 1 else "marker:changes",
            }
        )


def panel_title(text: str, x: float, y: float) -> dict[str, Any]:
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": x,
        "y": y,
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 14, "color": MUTED},
    }


def scatter(
    group: Any,
    tz: tzinfo | None,
    *,
    name: str,
    line: dict[str, Any],
    hover: str,
    legendgroup: str | None = None,
    showlegend: bool = True,
    markers: bool = False,
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "x": local_times(group["time"], tz),
        "y": group["value"],
        "mode": "lines+markers" if markers and len(group) <= 60 else "lines",
        "name": name,
        "legendgroup": legendgroup or name,
        "showlegend": showlegend,
        "line": line,
        "marker": {"size": 4},
        "hovertemplate": hover,
    }


# --- requests --------------------------------------------------------------------------------
