"""Metrics: live and mirrored requests, latency, errors and instances per deployment."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from components import charts, loading
from components.loading import reads
from components.selection import endpoint_in_focus
from components.traffic_generator import traffic_generator
from rollout import history
from rollout.endpoints import EndpointView
from rollout.errors import NotFound, RolloutError
from rollout.metrics import (
    EndpointMetrics,
    Window,
    default_granularity,
    endpoint_metrics,
    granularity_choices,
    iso_duration,
)
from rollout.workspace import Workspace

SPANS = {
    15 * 60: "15 minutes",
    30 * 60: "30 minutes",
    3600: "1 hour",
    4 * 3600: "4 hours",
    12 * 3600: "12 hours",
    86400: "1 day",
    3 * 86400: "3 days",
    7 * 86400: "7 days",
}
REFRESH = {None: "Paused", 5: "every 5 s", 10: "every 10 s", 30: "every 30 s", 60: "every minute"}
_REFRESH_KEY = "metrics_refresh"
_MIRROR_KEY = "metrics_mirror_dimension"
_CHART = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


@st.cache_data(ttl=4, show_spinner=False)
def _metrics(
    _ws: Workspace,
    ws_key: str,
    endpoint: str,
    deployments: tuple[str, ...],
    span_s: int,
    grain_s: int,
    mirror_dimension: bool,
) -> EndpointMetrics:
    window = Window.last(timedelta(seconds=span_s), timedelta(seconds=grain_s))
    return endpoint_metrics(
        _ws,
        loading.metrics_client(_ws),
        endpoint,
        deployments,
        window,
        mirror_dimension=mirror_dimension,
    )


def _controls(ws: Workspace) -> tuple[int, int]:
    span_col, grain_col, refresh_col = st.columns(3)
    span: int = span_col.selectbox(
        "Time range", list(SPANS), index=0, format_func=lambda s: SPANS[s], key="metrics_span"
    )
    grains = granularity_choices(timedelta(seconds=span), sub_minute=ws.kind == "emulator")
    default = default_granularity(timedelta(seconds=span), grains)
    grain: int = grain_col.selectbox(
        "Granularity",
        [int(g.total_seconds()) for g in grains],
        index=grains.index(default),
        format_func=lambda s: iso_duration(timedelta(seconds=s)),
        key=f"metrics_grain_{span}",
        help="The bucket size. Azure Monitor's finest for endpoints is PT1M; the emulator "
        "also has PT10S.",
    )
    st.session_state.setdefault(_REFRESH_KEY, 10)
    refresh_col.selectbox(
        "Live refresh",
        list(REFRESH),
        format_func=lambda r: REFRESH[r],
        key=_REFRESH_KEY,
        help="Only the charts refresh; pause to look at one moment.",
    )
    return int(span), int(grain)


def _mirror_words(endpoint: EndpointView, data: EndpointMetrics) -> str:
    targets = ", ".join(f"{name} ({share}%)" for name, share in endpoint.mirror.items())
    now = f"Mirroring now: {targets}." if targets else "No deployment is mirrored now."
    if data.mirror_dimension:
        return (
            f":material/call_split: {now} Mirrored requests are told apart: these metrics "
            "carry a `trafficType` dimension (live or mirror), so a dashed "
            "“… (mirror)” series counts only copies of live requests, and the solid one the "
            "requests sent to that deployment directly. (Azure Monitor has no such dimension.)"
        )
    return (
        f":material/call_merge: {now} Mirrored requests are not told apart: Azure Monitor "
        "counts a mirror target's mirrored copies together with requests sent to it directly "
        "(azureml-model-deployment header), so its series is dashed and labelled "
        "“… (mirrored + direct)”."
    )


def _markers(ws: Workspace, endpoint: str, data: EndpointMetrics) -> list[charts.Marker]:
    try:
        changes = history.list_changes(
            workspace=ws.key, endpoint=endpoint, since=data.window.start.timestamp()
        )
    except (sqlite3.Error, OSError, ValueError) as exc:
        st.caption(f"Changes from the audit log are not marked: it could not be read ({exc}).")
        return []
    return charts.markers_from_changes(changes)


def live_charts(ws: Workspace, endpoint_name: str, span: int, grain: int) -> None:
    """The charts; the only part of the page that the live refresh reruns."""
    try:
        endpoint = reads(ws).endpoint(endpoint_name, wait=False).value
        names = tuple(d.name for d in endpoint.deployments)
        hint = bool(st.session_state.get(_MIRROR_KEY, {}).get(ws.key, True))
        data = _metrics(ws, ws.key, endpoint.name, names, span, grain, hint)
    except NotFound:
        st.warning(f"Endpoint '{endpoint_name}' no longer exists.")
        return
    except RolloutError as exc:
        st.error(f"The metrics could not be read: {exc}", icon=":material/error:")
        return
    st.session_state.setdefault(_MIRROR_KEY, {})[ws.key] = data.mirror_dimension
    st.markdown(_mirror_words(endpoint, data))
    for problem in data.problems.values():
        st.error(problem, icon=":material/error:")
    markers = _markers(ws, endpoint.name, data)
    # The data may be a few seconds old (cached); a change made since still gets its marker.
    shown = Window(
        data.window.start, max(data.window.end, datetime.now(UTC)), data.window.granularity
    )
    common: dict[str, Any] = {"deployments": names, "markers": markers, "window": shown}
    mirror_targets = tuple(endpoint.mirror)
    st.plotly_chart(
        charts.requests_figure(
            data.requests,
            mirror_targets=mirror_targets,
            dropped=data.dropped,
            read_at=data.window.end,
            **common,
        ),
        config=_CHART,
        key="metrics_requests",
    )
    st.plotly_chart(
        charts.latency_figure(data.latency, mirror_targets=mirror_targets, **common),
        config=_CHART,
        key="metrics_latency",
    )
    st.plotly_chart(
        charts.errors_figure(data.status, mirror_targets=mirror_targets, **common),
        config=_CHART,
        key="metrics_errors",
    )
    st.plotly_chart(
        charts.instances_figure(data.instances, data.capacity, **common),
        config=_CHART,
        key="metrics_instances",
    )
    refresh = st.session_state.get(_REFRESH_KEY)
    every = f"refreshing {REFRESH[refresh]}" if refresh else "live refresh paused"
    st.caption(
        f"Read at {data.window.end.astimezone().strftime('%H:%M:%S')} · last {SPANS[span]} at "
        f"{data.window.interval} · {every} · dotted lines: changes made from this dashboard."
    )


st.title("Metrics")
ws, endpoint = endpoint_in_focus()
span, grain = _controls(ws)
with st.expander("Generate traffic", icon=":material/bolt:"):
    traffic_generator(ws, endpoint)
st.fragment(live_charts, run_every=st.session_state.get(_REFRESH_KEY))(
    ws, endpoint.name, span, grain
)
