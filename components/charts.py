"""The Metrics page's figures: pure functions from rollout.metrics frames to plotly Figures.

Every builder returns a whole figure. With no data it says so in words inside the figure
("No requests in this window"), never a blank plot; with partial data it names what is
missing in the subtitle. A deployment keeps its colour from the traffic split bar; a
mirror target's mirrored series is dashed and labelled "green (mirror)", or
"green (mirrored + direct)" where the metrics cannot tell mirrored copies from requests
sent to it directly (Azure). Changes made from the dashboard (the audit log) are vertical
markers with a short label; hovering the label shows when, who and what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from components.split import color_for
from rollout.history import Change
from rollout.metrics import ALL, CPU, MEMORY, MIRROR, Window

PERCENTILES = ("P50", "P95", "P99")
MIRROR_DASH = "dash"
UNFINISHED_DASH = "dot"  # the bucket still being counted
_MARKER_COLOR = "#6b7280"
_MUTED = "#6b7280"
_ERROR_PATTERNS = {"4xx": "", "5xx": "x"}
_HEIGHT = 320
_LEGEND_WIDTH = 190
_GAP = 0.05  # between panels side by side
_ROW_GAP = 0.1  # between panels one above the other


# --- markers from the audit log ------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """A change made from the dashboard, drawn at `at` (UTC) on every time axis."""

    at: datetime
    kind: str  # traffic, mirror, scale, delete or deploy
    label: str  # short, drawn beside the line
    detail: str  # when, who, before -> after, reason: shown on hover


def _shares(values: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (values or {}).items() if int(v)}


def _split_words(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}%" for k, v in sorted(values.items())) or "none"


def _local_text(at: datetime, tz: tzinfo | None) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _traffic_change(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[str, str, str] | None:
    """(kind, label, words) of a traffic change; None when it changed nothing."""
    live = _shares(before.get("traffic")), _shares(after.get("traffic"))
    mirror = _shares(before.get("mirror")), _shares(after.get("mirror"))
    parts, words = [], []
    if live[0] != live[1]:
        parts.append(f"live {_split_words(live[1])}")
        words.append(f"live {_split_words(live[0])} → {_split_words(live[1])}")
    if mirror[0] != mirror[1]:
        parts.append(f"mirror {_split_words(mirror[1])}".replace("none", "off"))
        words.append(f"mirror {_split_words(mirror[0])} → {_split_words(mirror[1])}")
    if not parts:
        return None
    kind = "traffic" if live[0] != live[1] else "mirror"
    return kind, " · ".join(parts), "; ".join(words)


def markers_from_changes(changes: Iterable[Change], *, tz: tzinfo | None = None) -> list[Marker]:
    """A marker per change that succeeded: traffic (live), mirror, scale or delete.

    A refused or failed change changed nothing, so it gets no marker.
    """
    markers = []
    for change in changes:
        if change.outcome != "Succeeded":
            continue
        at = datetime.fromtimestamp(change.at, UTC)
        before, after = change.before or {}, change.after or {}
        if change.action == "traffic":
            described = _traffic_change(before, after)
            if described is None:
                continue
            kind, label, words = described
        elif change.action == "scale":
            name = after.get("deployment") or before.get("deployment") or "?"
            count = after.get("instance_count")
            kind, label = "scale", f"{name} → {count} instance" + ("" if count == 1 else "s")
            words = f"scaled {name} from {before.get('instance_count')} to {count} instance(s)"
        elif change.action == "delete":
            name = before.get("deployment") or after.get("deployment") or "?"
            kind, label, words = "delete", f"deleted {name}", f"deleted deployment {name}"
        elif change.action == "create_deployment":
            name = after.get("deployment") or "?"
            kind, label, words = "deploy", f"deployed {name}", f"deployed {name} at 0% live"
        else:
            kind, label, words = change.action, change.action, change.action
        reason = f" — “{change.reason}”" if change.reason else ""
        detail = f"{_local_text(at, tz)} by {change.who}: {words}{reason}"
        markers.append(Marker(at, kind, label, detail))
    return markers


# Labels closer than this share of the time axis are drawn as one ("3 changes"): a label
# is about 14 px wide on a chart some 800 px wide, and a day's range puts an hour's changes
# on top of each other.
MARKER_GAP = 0.025


def cluster_markers(
    markers: Sequence[Marker], span: timedelta, *, gap: float = MARKER_GAP
) -> list[list[Marker]]:
    """Markers in time order, grouped while each is within `gap` × `span` of the group's
    first: each group gets one label."""
    groups: list[list[Marker]] = []
    reach = span * gap
    for marker in sorted(markers, key=lambda m: m.at):
        if groups and marker.at - groups[-1][0].at <= reach:
            groups[-1].append(marker)
        else:
            groups.append([marker])
    return groups


# --- shared pieces -------------------------------------------------------------------------


def message_annotation(text: str) -> dict[str, Any]:
    """Words in the middle of a figure's plot area, where its data would be."""
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": 0.5,
        "y": 0.5,
        "showarrow": False,
        "font": {"size": 15, "color": _MUTED},
        "name": "message",
    }


def _local(times: Any, tz: tzinfo | None) -> Any:
    """UTC timestamps as naive local times: plotly's date axes ignore offsets."""
    zone = tz or datetime.now().astimezone().tzinfo
    return pd.to_datetime(times, utc=True).dt.tz_convert(zone).dt.tz_localize(None)


def _local_point(at: datetime, tz: tzinfo | None) -> datetime:
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


def _names(frame: Any, deployments: Sequence[str]) -> list[str]:
    seen = [str(d) for d in frame["deployment"].dropna().unique()] if len(frame) else []
    return sorted(set(deployments) | set(seen))


def _line(deployment: str, *, dashed: bool = False) -> dict[str, Any]:
    line = {"color": color_for(deployment)}
    return {**line, "dash": MIRROR_DASH} if dashed else line


def _series(frame: Any, keys: list[str]) -> Iterable[tuple[tuple[str, ...], Any]]:
    """Groups of `frame` by `keys`, summed per time and in time order, sorted by key."""
    if not len(frame):
        return []
    data = frame.assign(deployment=frame["deployment"].fillna("(all)"))
    summed = data.groupby([*keys, "time"], as_index=False, sort=True)["value"].sum()
    return [
        (key if isinstance(key, tuple) else (key,), group.sort_values("time"))
        for key, group in summed.groupby(keys, sort=True)
    ]


def _gapped(group: Any, window: Window | None) -> Any:
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


def _missing(names: Iterable[str], what: str) -> str | None:
    missing = sorted(names)
    if not missing:
        return None
    return f"No {what} for {', '.join(missing)} in this window."


@dataclass
class _Draft:
    """A figure being drawn, as plain dicts: plotly validates it once, at the end (adding
    traces and updating the layout one call at a time costs several times more)."""

    panels: list[tuple[str, str]]  # (x axis, y axis) of each panel
    layout: dict[str, Any]
    traces: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    shapes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def single(cls) -> _Draft:
        return cls([("x", "y")], {"xaxis": {"anchor": "y"}, "yaxis": {"anchor": "x"}})

    @classmethod
    def side_by_side(cls, titles: Sequence[str]) -> _Draft:
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
            annotations.append(_panel_title(title, start + width / 2, 1.0))
        return cls(panels, layout, annotations=annotations)

    @classmethod
    def stacked(cls, titles: Sequence[str]) -> _Draft:
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
            annotations.append(_panel_title(title, 0.5, top))
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
        height: int = _HEIGHT,
    ) -> go.Figure:
        x_axes = list(dict.fromkeys(x for x, _ in self.panels))
        for x in x_axes:
            axis = self.layout.setdefault("xaxis" + x[1:], {})
            axis["type"] = "date"
            if window is not None:
                long = window.end - window.start > timedelta(days=1)
                axis["range"] = [_local_point(window.start, tz), _local_point(window.end, tz)]
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
                    self._line(marker, _local_point(marker.at, tz), x_axes)
                self._label(group, _local_point(group[0].at, tz), x_axes[0])
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

    def _line(self, marker: Marker, x: datetime, x_axes: list[str]) -> None:
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


def _panel_title(text: str, x: float, y: float) -> dict[str, Any]:
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": x,
        "y": y,
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 14, "color": _MUTED},
    }


def _scatter(
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
        "x": _local(group["time"], tz),
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


def requests_figure(
    frame: Any,
    *,
    deployments: Sequence[str] = (),
    mirror_targets: Sequence[str] = (),
    dropped: Any = None,
    markers: Sequence[Marker] = (),
    window: Window | None = None,
    tz: tzinfo | None = None,
    read_at: datetime | None = None,
) -> go.Figure:
    """Requests per minute by deployment; a mirror target's mirrored load dashed.

    `dropped` (the emulator's dropped mirror copies per deployment) is told in words.
    A bucket that was not over at `read_at` (the time of the query; `window.end` when not
    given) has counted only part of its requests: its segment is dotted and said to be
    unfinished, so that it does not read as a drop in traffic.
    """
    draft = _Draft.single()
    names = _names(frame, deployments)
    notes: list[str] = []
    read_at = read_at or (window.end if window is not None else None)
    unfinished: set[datetime] = set()
    total = float(frame["count"].sum()) if len(frame) else 0.0
    if total <= 0:
        draft.message("No requests in this window")
    else:
        counts = frame.groupby([frame["deployment"].fillna("(all)"), frame["traffic_type"]])[
            "count"
        ].sum()
        served: set[str] = set()
        for (deployment, kind), group in _series(frame, ["deployment", "traffic_type"]):
            if counts.get((deployment, kind), 0) <= 0:
                continue
            served.add(deployment)
            label = series_label(deployment, kind, mirror_targets=mirror_targets)
            dashed = is_mirrored(deployment, kind, mirror_targets=mirror_targets)
            done, partial = _split_unfinished(group, window, read_at)
            if len(done):
                draft.add(
                    _scatter(
                        done,
                        tz,
                        name=label,
                        legendgroup=deployment,
                        line=_line(deployment, dashed=dashed),
                        hover=f"{label}: %{{y:.1f}} req/min<extra></extra>",
                        markers=True,
                    )
                )
            if partial is not None:
                unfinished.add(partial["time"].iloc[-1].to_pydatetime())
                draft.add(
                    {
                        **_scatter(
                            partial,
                            tz,
                            name=f"{label} (so far)",
                            legendgroup=deployment,
                            showlegend=not len(done),
                            line={**_line(deployment), "dash": UNFINISHED_DASH},
                            hover=f"{label}: %{{y:.1f}} so far, the bucket is not over"
                            "<extra></extra>",
                        ),
                        "mode": "lines+markers",
                        "marker": {"size": 6, "symbol": "circle-open"},
                    }
                )
        notes.append(_request_words(frame))
        if unfinished:
            since = _local_point(min(unfinished), tz).strftime("%H:%M:%S")
            notes.append(f"The last bucket (from {since}) is not over: its count so far is dotted.")
        if note := _missing(set(names) - served, "requests"):
            notes.append(note)
    kinds = set(frame["traffic_type"]) if len(frame) else set()
    mixed = [t for t in mirror_targets if ALL in kinds]
    if mixed:
        notes.append(
            f"{', '.join(mixed)}: mirrored copies and requests sent to it directly, together "
            "(Azure Monitor cannot tell them apart)."
        )
    if note := _dropped_words(dropped):
        notes.append(note)
    draft.axis(0, "y")["title"] = {"text": "requests / min"}
    return draft.finish(
        title="Requests per minute", notes=notes, window=window, markers=markers, tz=tz
    )


def _split_unfinished(
    group: Any, window: Window | None, read_at: datetime | None
) -> tuple[Any, Any]:
    """A series as (finished buckets, the segment into its unfinished last bucket or None).

    The segment starts at the last finished point, so that the line goes on, dotted."""
    if window is None or read_at is None or not len(group):
        return group, None
    last = pd.Timestamp(group["time"].iloc[-1])
    if last + pd.Timedelta(window.granularity) <= pd.Timestamp(read_at):
        return group, None
    return group.iloc[:-1], group.iloc[-2:]


def _request_words(frame: Any) -> str:
    mirrored = float(frame.loc[frame["traffic_type"] == MIRROR, "count"].sum())
    served = float(frame["count"].sum()) - mirrored
    if mirrored:
        return f"{int(served):,} requests and {int(mirrored):,} mirrored copies."
    if (frame["traffic_type"] == ALL).any():
        return f"{int(served):,} requests (mirrored copies included)."
    return f"{int(served):,} requests."


def _dropped_words(dropped: Any) -> str | None:
    if dropped is None or not len(dropped):
        return None
    totals = dropped.groupby("deployment")["count"].sum()
    parts = [f"{name} {int(n):,}" for name, n in totals.items() if n > 0]
    if not parts:
        return None
    return (
        f"Mirror copies dropped: {', '.join(parts)} (the mirror target had no room under its "
        "429 limit, so they were not sent; clients never notice)."
    )


# --- latency ---------------------------------------------------------------------------------


def latency_figure(
    frame: Any,
    *,
    deployments: Sequence[str] = (),
    mirror_targets: Sequence[str] = (),
    markers: Sequence[Marker] = (),
    window: Window | None = None,
    tz: tzinfo | None = None,
) -> go.Figure:
    """P50, P95 and P99 latency (ms) by deployment, side by side."""
    draft = _Draft.side_by_side(PERCENTILES)
    names = _names(frame, deployments)
    notes: list[str] = []
    if not len(frame):
        draft.message("No latency in this window: no requests were answered")
    else:
        answered: set[str] = set()
        shown: set[str] = set()
        for (deployment, kind, percentile), group in _series(
            frame, ["deployment", "traffic_type", "metric"]
        ):
            if percentile not in PERCENTILES:
                continue
            answered.add(deployment)
            label = series_label(deployment, kind, mirror_targets=mirror_targets)
            dashed = is_mirrored(deployment, kind, mirror_targets=mirror_targets)
            draft.add(
                _scatter(
                    _gapped(group, window),
                    tz,
                    name=label,
                    showlegend=label not in shown,
                    line=_line(deployment, dashed=dashed),
                    hover=f"{label} {percentile}: %{{y:.0f}} ms<extra></extra>",
                    markers=True,
                ),
                PERCENTILES.index(percentile),
            )
            shown.add(label)
        if note := _missing(set(names) - answered, "latency"):
            notes.append(note)
    draft.axis(0, "y")["title"] = {"text": "ms"}
    return draft.finish(
        title="Latency by deployment", notes=notes, window=window, markers=markers, tz=tz
    )


# --- errors ----------------------------------------------------------------------------------


def is_error(status_class: str) -> bool:
    """Anything but 2xx is an error (4xx: the request or limits; 5xx: the service)."""
    return not str(status_class).startswith("2")


def errors_figure(
    frame: Any,
    *,
    deployments: Sequence[str] = (),
    mirror_targets: Sequence[str] = (),
    markers: Sequence[Marker] = (),
    window: Window | None = None,
    tz: tzinfo | None = None,
) -> go.Figure:
    """Failed requests per minute, stacked by deployment and status class (4xx, 5xx)."""
    draft = _Draft.single()
    notes: list[str] = []
    total = float(frame["count"].sum()) if len(frame) else 0.0
    errors = frame[frame["status_class"].map(is_error)] if len(frame) else frame
    failed = float(errors["count"].sum()) if len(errors) else 0.0
    if total <= 0:
        draft.message("No requests in this window")
    elif failed <= 0:
        draft.message(f"No errors in this window: all {int(total):,} requests answered 2xx")
    else:
        for (deployment, kind, status), group in _series(
            errors, ["deployment", "traffic_type", "status_class"]
        ):
            if group["value"].sum() <= 0:
                continue
            mirrored = is_mirrored(deployment, kind, mirror_targets=mirror_targets)
            label = f"{series_label(deployment, kind, mirror_targets=mirror_targets)} {status}"
            draft.add(
                {
                    "type": "bar",
                    "x": _local(group["time"], tz),
                    "y": group["value"],
                    "name": label,
                    "legendgroup": deployment,
                    "marker": {
                        "color": color_for(deployment),
                        "opacity": 0.55 if mirrored else 0.9,
                        "pattern": {"shape": _ERROR_PATTERNS.get(status, ".")},
                    },
                    "hovertemplate": f"{label}: %{{y:.1f}} /min<extra></extra>",
                }
            )
        by_series = (
            errors.groupby(["deployment", "traffic_type", "status_class"])["count"]
            .sum()
            .sort_values(ascending=False)
        )
        parts = [
            f"{series_label(d, k, mirror_targets=mirror_targets)} {s} {int(n):,}"
            for (d, k, s), n in by_series.items()
            if n > 0
        ]
        notes.append(
            f"{int(failed):,} of {int(total):,} requests failed ({100 * failed / total:.1f}%): "
            + ", ".join(parts)
            + "."
        )
    draft.layout["barmode"] = "stack"
    draft.axis(0, "y")["title"] = {"text": "errors / min"}
    return draft.finish(
        title="Errors by status class", notes=notes, window=window, markers=markers, tz=tz
    )


# --- instances -------------------------------------------------------------------------------


def instances_figure(
    usage: Any,
    capacity: Any,
    *,
    deployments: Sequence[str] = (),
    markers: Sequence[Marker] = (),
    window: Window | None = None,
    tz: tzinfo | None = None,
) -> go.Figure:
    """CPU and memory (%) per instance, and instances per deployment, sharing the time axis."""
    draft = _Draft.stacked(("CPU %", "Memory %", "Instances"))
    notes: list[str] = []
    if not len(usage) and not len(capacity):
        draft.message("No instance metrics in this window")
    shown: set[str] = set()
    for panel, metric in ((0, CPU), (1, MEMORY)):
        rows = usage[usage["metric"] == metric] if len(usage) else usage
        for (deployment, instance), group in _series(rows, ["deployment", "instance"]):
            label = f"{deployment} · {instance}"
            draft.add(
                _scatter(
                    _gapped(group, window),
                    tz,
                    name=label,
                    showlegend=label not in shown,
                    line={**_line(deployment), "width": 1.5},
                    hover=f"{label}: %{{y:.1f}}%<extra></extra>",
                ),
                panel,
            )
            shown.add(label)
    for (deployment,), group in _series(capacity, ["deployment"]):
        trace = _scatter(
            group,
            tz,
            name=f"{deployment} instances",
            line={**_line(deployment), "width": 1.5, "shape": "hv"},
            hover=f"{deployment}: %{{y:.0f}} instance(s)<extra></extra>",
        )
        draft.add({**trace, "stackgroup": "capacity"}, 2)
    if len(usage) or len(capacity):
        with_usage = set(usage["deployment"].dropna()) if len(usage) else set()
        if note := _missing(set(deployments) - with_usage, "CPU or memory data"):
            notes.append(note)
    if note := _not_running(capacity):
        notes.append(note)
    return draft.finish(
        title="Instances", notes=notes, window=window, markers=markers, tz=tz, height=480
    )


def _not_running(capacity: Any) -> str | None:
    """Instances that were not Running at the last sample, in words."""
    if not len(capacity):
        return None
    latest = capacity[capacity["time"] == capacity["time"].max()]
    others = latest[(latest["state"] != "Running") & (latest["value"] > 0)]
    if not len(others):
        return None
    parts = [
        f"{row.deployment} {row.value:.0f} {row.state}"
        for row in others.sort_values(["deployment", "state"]).itertuples()
    ]
    return "Not running at the last sample: " + ", ".join(parts) + "."
