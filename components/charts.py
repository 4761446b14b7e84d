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

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from components.chart_draft import (
    MIRROR_DASH,
    Draft,
    deployment_names,
    gapped,
    is_mirrored,
    line_style,
    local_point,
    local_times,
    message_annotation,
    missing_words,
    scatter,
    series,
    series_label,
)
from components.chart_markers import Marker, cluster_markers, markers_from_changes
from components.split import color_for
from rollout.metrics import ALL, CPU, MEMORY, MIRROR, Window

__all__ = [
    "MIRROR_DASH",
    "PERCENTILES",
    "UNFINISHED_DASH",
    "Marker",
    "cluster_markers",
    "errors_figure",
    "instances_figure",
    "is_mirrored",
    "latency_figure",
    "markers_from_changes",
    "message_annotation",
    "requests_figure",
    "series_label",
]

PERCENTILES = ("P50", "P95", "P99")
UNFINISHED_DASH = "dot"  # the bucket still being counted
_ERROR_PATTERNS = {"4xx": "", "5xx": "x"}


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
    draft = Draft.single()
    names = deployment_names(frame, deployments)
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
        for (deployment, kind), group in series(frame, ["deployment", "traffic_type"]):
            if counts.get((deployment, kind), 0) <= 0:
                continue
            served.add(deployment)
            label = series_label(deployment, kind, mirror_targets=mirror_targets)
            dashed = is_mirrored(deployment, kind, mirror_targets=mirror_targets)
            done, partial = _split_unfinished(group, window, read_at)
            if len(done):
                draft.add(
                    scatter(
                        done,
                        tz,
                        name=label,
                        legendgroup=deployment,
                        line=line_style(deployment, dashed=dashed),
                        hover=f"{label}: %{{y:.1f}} req/min<extra></extra>",
                        markers=True,
                    )
                )
            if partial is not None:
                unfinished.add(partial["time"].iloc[-1].to_pydatetime())
                draft.add(
                    {
                        **scatter(
                            partial,
                            tz,
                            name=f"{label} (so far)",
                            legendgroup=deployment,
                            showlegend=not len(done),
                            line={**line_style(deployment), "dash": UNFINISHED_DASH},
                            hover=f"{label}: %{{y:.1f}} so far, the bucket is not over"
                            "<extra></extra>",
                        ),
                        "mode": "lines+markers",
                        "marker": {"size": 6, "symbol": "circle-open"},
                    }
                )
        notes.append(_request_words(frame))
        if unfinished:
            since = local_point(min(unfinished), tz).strftime("%H:%M:%S")
            notes.append(f"The last bucket (from {since}) is not over: its count so far is dotted.")
        if note := missing_words(set(names) - served, "requests"):
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
    draft = Draft.side_by_side(PERCENTILES)
    names = deployment_names(frame, deployments)
    notes: list[str] = []
    if not len(frame):
        draft.message("No latency in this window: no requests were answered")
    else:
        answered: set[str] = set()
        shown: set[str] = set()
        for (deployment, kind, percentile), group in series(
            frame, ["deployment", "traffic_type", "metric"]
        ):
            if percentile not in PERCENTILES:
                continue
            answered.add(deployment)
            label = series_label(deployment, kind, mirror_targets=mirror_targets)
            dashed = is_mirrored(deployment, kind, mirror_targets=mirror_targets)
            draft.add(
                scatter(
                    gapped(group, window),
                    tz,
                    name=label,
                    showlegend=label not in shown,
                    line=line_style(deployment, dashed=dashed),
                    hover=f"{label} {percentile}: %{{y:.0f}} ms<extra></extra>",
                    markers=True,
                ),
                PERCENTILES.index(percentile),
            )
            shown.add(label)
        if note := missing_words(set(names) - answered, "latency"):
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
    draft = Draft.single()
    notes: list[str] = []
    total = float(frame["count"].sum()) if len(frame) else 0.0
    errors = frame[frame["status_class"].map(is_error)] if len(frame) else frame
    failed = float(errors["count"].sum()) if len(errors) else 0.0
    if total <= 0:
        draft.message("No requests in this window")
    elif failed <= 0:
        draft.message(f"No errors in this window: all {int(total):,} requests answered 2xx")
    else:
        for (deployment, kind, status), group in series(
            errors, ["deployment", "traffic_type", "status_class"]
        ):
            if group["value"].sum() <= 0:
                continue
            mirrored = is_mirrored(deployment, kind, mirror_targets=mirror_targets)
            label = f"{series_label(deployment, kind, mirror_targets=mirror_targets)} {status}"
            draft.add(
                {
                    "type": "bar",
                    "x": local_times(group["time"], tz),
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
    draft = Draft.stacked(("CPU %", "Memory %", "Instances"))
    notes: list[str] = []
    if not len(usage) and not len(capacity):
        draft.message("No instance metrics in this window")
    shown: set[str] = set()
    for panel, metric in ((0, CPU), (1, MEMORY)):
        rows = usage[usage["metric"] == metric] if len(usage) else usage
        for (deployment, instance), group in series(rows, ["deployment", "instance"]):
            label = f"{deployment} · {instance}"
            draft.add(
                scatter(
                    gapped(group, window),
                    tz,
                    name=label,
                    showlegend=label not in shown,
                    line={**line_style(deployment), "width": 1.5},
                    hover=f"{label}: %{{y:.1f}}%<extra></extra>",
                ),
                panel,
            )
            shown.add(label)
    for (deployment,), group in series(capacity, ["deployment"]):
        trace = scatter(
            group,
            tz,
            name=f"{deployment} instances",
            line={**line_style(deployment), "width": 1.5, "shape": "hv"},
            hover=f"{deployment}: %{{y:.0f}} instance(s)<extra></extra>",
        )
        draft.add({**trace, "stackgroup": "capacity"}, 2)
    if len(usage) or len(capacity):
        with_usage = set(usage["deployment"].dropna()) if len(usage) else set()
        if note := missing_words(set(deployments) - with_usage, "CPU or memory data"):
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
