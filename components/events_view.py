"""The Deployments page's events and recent requests, from Log Analytics (rollout/logs.py).

Both are read together (two queries at once) and kept in the session's reads like the
rest; Refresh reads them again. A workspace with no Log Analytics workspace says how to
send the endpoint's logs there. A failed query shows its error and the page goes on.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from components import loading
from rollout import logs
from rollout.endpoints import DeploymentView, EndpointView
from rollout.errors import RolloutError
from rollout.workspace import Workspace

# The events that say something went wrong, counted above the table.
TROUBLE = {
    "InitFailed": "init failed",
    "OutOfMemory": "out of memory",
    "LivenessProbeFailed": "liveness probe failed",
    "ReadinessProbeFailed": "readiness probe failed",
    "InstanceRestarted": "restarted",
}
EVENTS_SPAN_HOURS = 24
REQUESTS_SPAN_HOURS = 1


def _keys(endpoint: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("log-events", endpoint.lower()), ("log-requests", endpoint.lower())


def events_panel(ws: Workspace, endpoint: EndpointView, deployment: DeploymentView) -> None:
    """Instance events and the newest requests of `endpoint`, from Log Analytics."""
    st.subheader("Events and recent requests")
    if not logs.logs_enabled(ws):
        st.info(logs.NOT_ENABLED, icon=":material/info:")
        return
    events_key, requests_key = _keys(endpoint.name)
    reads = loading.reads(ws)
    load_events = functools.partial(
        logs.recent_events, ws, endpoint.name, span=timedelta(hours=EVENTS_SPAN_HOURS)
    )
    load_requests = functools.partial(
        logs.recent_requests, ws, endpoint.name, span=timedelta(hours=REQUESTS_SPAN_HOURS)
    )
    reads.start_cached(events_key, load_events)
    reads.start_cached(requests_key, load_requests)
    only, refresh = st.columns([4, 1], vertical_alignment="bottom")
    just_this = only.toggle(
        f"Only {deployment.name}",
        key=f"events_only_{endpoint.name}",
        help="Show the events and requests of the selected deployment only",
    )
    refresh.button(
        "Refresh",
        key="events_refresh",
        icon=":material/refresh:",
        width="stretch",
        on_click=_drop,
        args=(ws, endpoint.name),
        help="Query Log Analytics again now",
    )
    events_tab, requests_tab = st.tabs(["Events", "Recent requests"])
    with events_tab:
        _table(
            reads,
            events_key,
            load_events,
            deployment.name if just_this else None,
            what="events",
            span=f"the last {EVENTS_SPAN_HOURS} hours",
            summary=_trouble_words,
        )
    with requests_tab:
        _table(
            reads,
            requests_key,
            load_requests,
            deployment.name if just_this else None,
            what="requests",
            span=f"the last {REQUESTS_SPAN_HOURS} hour",
            summary=_request_words,
        )


def _drop(ws: Workspace, endpoint: str) -> None:
    for key in _keys(endpoint):
        loading.reads(ws).drop(("other", *key))


def _table(
    reads: Any,
    key: tuple[str, str],
    load: Any,
    deployment: str | None,
    *,
    what: str,
    span: str,
    summary: Any,
) -> None:
    try:
        read = reads.cached(key, load, wait=loading.page_opened())
    except RolloutError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    frame: pd.DataFrame = read.value
    if deployment is not None:
        frame = frame[frame["deployment"] == deployment]
    if frame.empty:
        who = f" of {deployment}" if deployment else ""
        st.caption(
            f"No {what}{who} in {span} (Log Analytics, read {loading.age_text(read.age())})."
        )
        return
    st.caption(f"{summary(frame)} In {span}, read {loading.age_text(read.age())}.")
    st.dataframe(frame, hide_index=True, width="stretch", height=min(36 * (len(frame) + 1), 400))


def _trouble_words(frame: pd.DataFrame) -> str:
    counts = frame["event"].value_counts()
    trouble = [f"{int(counts[name])} {words}" for name, words in TROUBLE.items() if name in counts]
    return (", ".join(trouble) + ".") if trouble else "No failures."


def _request_words(frame: pd.DataFrame) -> str:
    failed = int((frame["status"] >= 400).sum())
    latency = frame["latency (ms)"].median()
    return f"{len(frame)} newest: {failed} failed, median latency {latency:.0f} ms."
