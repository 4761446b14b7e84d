"""The review report's download: an endpoint and a time range on the History page, a plan on
the Rollout page. Building it reads the endpoint and its metrics, so it happens only when
asked (Build report); the file then waits in the session behind a Download button.

`build_report` is the whole build without Streamlit: fresh read of the endpoint, metrics
for the range, the figures of the Metrics page, rollout/report.py's gathering and
rollout/report_html.py's page.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import streamlit as st
from azure.monitor.querymetrics import MetricsClient

from components import charts, loading
from rollout import history, plan_store
from rollout.endpoints import EndpointView, get_endpoint
from rollout.errors import NotFound, RolloutError
from rollout.history import Change
from rollout.metrics import EndpointMetrics, endpoint_metrics
from rollout.promotion import Plan
from rollout.report import Report, gather, plan_range, report_filename, report_window
from rollout.report_html import render
from rollout.workspace import Workspace

_BUILT = "report_built"
SPANS = {3600: "the last hour", 86400: "the last 24 hours", 7 * 86400: "the last 7 days"}
_SINCE = "since an entry…"


@dataclass(frozen=True)
class BuiltReport:
    key: tuple[str, ...]  # what it was built for: a new choice hides it
    file_name: str
    html: str


def figures(report: Report, data: EndpointMetrics) -> list[object]:
    """Requests (live and mirrored), latency and errors per deployment for the range."""
    sides = [s.snapshot for s in (report.before, report.after) if s.snapshot is not None]
    names = sorted({n for s in sides for n in s.deployments})
    mirror_targets = sorted({n for s in sides for n in s.mirror} | _mirrored(report.changes))
    common: dict[str, Any] = {
        "deployments": names,
        "mirror_targets": mirror_targets,
        "markers": charts.markers_from_changes(report.changes),
        "window": data.window,
    }
    return [
        charts.requests_figure(data.requests, dropped=data.dropped, **common),
        charts.latency_figure(data.latency, **common),
        charts.errors_figure(data.status, **common),
    ]


def _mirrored(changes: Sequence[Change]) -> set[str]:
    found: set[str] = set()
    for c in changes:
        if c.action == "traffic":
            for side in (c.before, c.after):
                found |= {k for k, v in dict(side.get("mirror") or {}).items() if v}
    return found


def build_report(
    ws: Workspace,
    client: MetricsClient,
    endpoint: str,
    start: float,
    end: float | None = None,
    *,
    plan: Plan | None = None,
    now: float | None = None,
) -> tuple[str, str]:
    """(file name, HTML) of the report of `endpoint` from `start` to `end` (None: now)."""
    now = time.time() if now is None else now
    end = now if end is None else min(end, now)
    view: EndpointView | None
    try:
        view = get_endpoint(ws, endpoint)
    except NotFound:
        view = None
    window = report_window(start, end, sub_minute=ws.kind == "emulator")
    # No deployment scope: the report has no instance charts, and a deleted deployment's
    # resource would answer 404.
    data = endpoint_metrics(ws, client, endpoint, (), window)
    report = gather(
        workspace=ws.key, label=ws.label, endpoint=endpoint, start=start, end=end, view=view,
        metrics=data, generated_by=ws.who(), plan=plan, now=now,
    )  # fmt: skip
    return report_filename(endpoint, now), render(report, figures(report, data))


# --- on the pages -------------------------------------------------------------------------


def _offer(key: tuple[str, ...], build: Callable[[], tuple[str, str]], *, widget: str) -> None:
    """Build report (when asked), then the Download button while the choice stays the same."""
    if st.button("Build report", key=f"{widget}_build", icon=":material/summarize:"):
        with st.spinner("Reading the endpoint and its metrics…"):
            try:
                file_name, html = build()
            except (RolloutError, sqlite3.Error, OSError) as exc:
                st.error(f"The report could not be built: {exc}")
                return
        st.session_state[_BUILT] = BuiltReport(key, file_name, html)
    built = st.session_state.get(_BUILT)
    if isinstance(built, BuiltReport) and built.key == key:
        st.download_button(
            f"Download {built.file_name}",
            built.html,
            file_name=built.file_name,
            mime="text/html",
            key=f"{widget}_download",
            icon=":material/download:",
            on_click="ignore",
        )
        st.caption(
            f"{len(built.html) / 1e6:.1f} MB · one HTML file with its charts; it opens in any "
            "browser without a network."
        )


def history_report(ws: Workspace, endpoints: Sequence[EndpointView], shown: str | None) -> None:
    """An endpoint and a time range (the last 24 hours, or since an entry of the log)."""
    try:
        logged = history.endpoints_changed(workspace=ws.key)
    except (sqlite3.Error, OSError):
        return  # the History page above says why
    names = sorted({*logged, *(e.name for e in endpoints)})
    if not names:
        return
    if shown not in names:  # all endpoints shown: the one changed last
        latest = history.list_changes(workspace=ws.key, endpoint=None, newest_first=True, limit=1)
        shown = latest[0].endpoint if latest else None
    st.subheader("Review report")
    name_col, range_col = st.columns(2)
    endpoint = name_col.selectbox(
        "Endpoint", names, index=names.index(shown) if shown in names else 0, key="report_endpoint"
    )
    choices: list[int | str] = [*SPANS, _SINCE]
    choice: int | str = range_col.selectbox(
        "Time range",
        choices,
        index=1,
        format_func=lambda s: SPANS[s] if isinstance(s, int) else s,
        key="report_span",
    )
    start: float
    if choice == _SINCE:
        entries = history.list_changes(
            workspace=ws.key, endpoint=endpoint, newest_first=True, limit=200
        )
        if not entries:
            st.caption(f"The log has no entry for {endpoint}.")
            return
        by_id = {c.id: c for c in entries if c.id is not None}
        number: int = st.selectbox(
            "Since entry",
            list(by_id),
            format_func=lambda n: f"#{n} · {_when(by_id[n].at)} · {by_id[n].action}",
            key="report_since",
        )
        start = by_id[number].at
        key = (ws.key, endpoint, f"since #{number}")
    else:
        start = time.time() - int(choice)
        key = (ws.key, endpoint, str(choice))
    _offer(
        key,
        lambda: build_report(ws, loading.metrics_client(ws), endpoint, start),
        widget="history_report",
    )


def plan_report(ws: Workspace, endpoint: EndpointView, plan: Plan | None) -> None:
    """The open plan's report, or the endpoint's last plan's."""
    if plan is None:
        try:
            plans = plan_store.list_plans(ws.key, endpoint.name)
        except (sqlite3.Error, OSError, ValueError):
            return
        if not plans:
            return
        plan = plans[-1]
    chosen = plan
    with st.expander(f"Review report of plan {plan.id}", icon=":material/summarize:"):
        st.caption(
            "The plan from its creation to its end (or now): before and after, every change, "
            "each gate's verdict with its numbers, the charts and the prediction comparisons."
        )

        def build() -> tuple[str, str]:
            start, end = plan_range(chosen)
            return build_report(
                ws, loading.metrics_client(ws), endpoint.name, start, end, plan=chosen
            )

        _offer(
            (ws.key, endpoint.name, f"plan {plan.id} v{plan.version}"), build, widget="plan_report"
        )


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
