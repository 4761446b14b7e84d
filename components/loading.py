"""This session's reads of the workspace: served from memory on reruns, with their age shown.

Pages get endpoints and deployments through here, never straight from rollout.endpoints:
a rerun after a widget interaction is then answered from what the session already read
(rollout/reads.py). Whether a run opens a page or reruns it decides how old a read may be:
`note_page` (app.py, once per run) tells them apart. Opening a page re-reads what is older
than the TTL and waits for it; a rerun on the same page never waits, and what is stale is
read again in the background. `freshness` shows how old the page's data is, with a Reload,
and reruns the page when a read in the background brought something new. Nothing is read
while nobody interacts: an idle tab costs the workspace nothing (a 30-endpoint workspace
polled every few seconds by a few open tabs would run into ARM's read throttling).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import streamlit as st
from azure.monitor.querymetrics import MetricsClient

from rollout.endpoints import EndpointView
from rollout.metrics import metrics_client as rollout_metrics_client
from rollout.readiness import read_ready
from rollout.reads import TTL_S, Key, Read, WorkspaceReads
from rollout.workspace import Workspace

_READS = "workspace_reads"
SELECTED = "selected_endpoint"  # the endpoint the pages work on (components/selection.py)
_PAGE = "page_shown"
_OPENED = "page_opened"


def note_page(page: str) -> None:
    """Record which page this run shows; call before anything reads."""
    state = st.session_state
    state[_OPENED] = state.get(_PAGE) != page
    state[_PAGE] = page


def page_opened() -> bool:
    """Whether this run opens the page (a navigation or a new session), not a rerun of it."""
    return bool(st.session_state.get(_OPENED, True))


def reads(ws: Workspace) -> WorkspaceReads:
    """This session's reads of `ws` (one per workspace, kept in session state)."""
    held: dict[str, WorkspaceReads] = st.session_state.setdefault(_READS, {})
    current = held.get(ws.key)
    if current is None or current.ws is not ws:
        current = held[ws.key] = WorkspaceReads(ws)
    return current


def start_reading(ws: Workspace) -> None:
    """Before the list of endpoints is read: when the URL or the session already names the
    endpoint the page works on, start reading its deployments too, so that both come back
    in one round trip."""
    wanted = st.query_params.get("endpoint") or st.session_state.get(SELECTED)
    if wanted:
        reads(ws).prefetch(str(wanted), wait=page_opened())


@st.cache_resource(show_spinner=False)
def _metrics_client(_ws: Workspace, ws_key: str, metrics_url: str | None) -> MetricsClient:
    return rollout_metrics_client(_ws)


def metrics_client(ws: Workspace) -> MetricsClient:
    """The workspace's one MetricsClient (for the Metrics page and the comparison alike)."""
    return _metrics_client(ws, ws.key, ws.metrics_url)


@st.cache_data(ttl=10, show_spinner=False)
def _ready(
    _ws: Workspace, ws_key: str, endpoints: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[str, dict[str, int] | None]:
    # Azure Monitor's finest grain for endpoints is PT1M; the emulator also has PT10S, which
    # shows a scale or a crash within seconds.
    grain = timedelta(seconds=10 if _ws.kind == "emulator" else 60)
    return read_ready(_ws, metrics_client(_ws), dict(endpoints), granularity=grain)


def ready_instances(
    ws: Workspace, endpoints: Sequence[EndpointView]
) -> dict[str, dict[str, int] | None]:
    """Ready instances per deployment of each endpoint (DeploymentCapacity, rollout.readiness),
    read at most every 10 s; None for an endpoint whose metric could not be read."""
    wanted = tuple((e.name, tuple(d.name for d in e.deployments)) for e in endpoints)
    return _ready(ws, ws.key, wanted)


def invalidate(ws: Workspace, endpoint: str | None = None) -> None:
    """After a change: the next read of `endpoint` (or of everything) goes to the workspace."""
    reads(ws).invalidate(endpoint)


def age_text(seconds: float) -> str:
    if seconds < 1.5:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def freshness(ws: Workspace, read: Read[Any]) -> None:
    """'Read 12 s ago' and a Reload for the data the page shows."""
    st.fragment(_freshness, run_every=TTL_S)(ws, read.keys, read.versions, read.problem)


def _reload(ws: Workspace) -> None:
    reads(ws).invalidate()


def _freshness(
    ws: Workspace, keys: Sequence[Key], versions: Sequence[int], problem: str | None
) -> None:
    session = reads(ws)
    at, now_versions = session.current(keys)
    if at is None or tuple(now_versions) != tuple(versions):
        # Read again since the page ran (in the background, or by a change made here): show
        # what came back.
        st.rerun()
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.caption(
            f":material/schedule: Read {age_text(time.time() - at)}",
            width="content",
            help="The page works from what was read last. What is older than "
            f"{TTL_S:.0f} s is read again when you open a page (first) or use a control (in "
            "the background), and what a change made here touches is read at once. Reload "
            "reads everything again now.",
        )
        if st.button(
            "Reload",
            key=f"reload_{ws.key}",
            icon=":material/refresh:",
            type="tertiary",
            on_click=_reload,
            args=(ws,),
            help="Read the workspace again now",
        ):
            st.rerun()
    if problem:
        st.caption(f":material/sync_problem: The last read failed; this is older data: {problem}")
