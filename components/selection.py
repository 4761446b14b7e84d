"""Which endpoint the user works on: kept in session state and in the URL (?endpoint=...)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence

import streamlit as st

from components.loading import SELECTED, freshness, page_opened, reads
from components.workspace import current_workspace
from rollout import drift
from rollout.endpoints import EndpointHead, EndpointView
from rollout.errors import RolloutError
from rollout.reads import Read
from rollout.workspace import Workspace

_KEY = SELECTED
_FOCUS = "selected_endpoint_focus"
_OBSERVED = "endpoints_observed"

log = logging.getLogger(__name__)


def _observe(ws: Workspace, views: Iterable[EndpointView]) -> None:
    """Keep what the endpoints show for the History page's "changed outside the dashboard"
    (rollout/drift.py). The database is touched only when a state differs from the one this
    session last kept, or that one is a minute old."""
    kept: dict[str, tuple[drift.State, float]] = st.session_state.setdefault(_OBSERVED, {})
    now = time.time()
    for view in views:
        state, at = kept.get(f"{ws.key}/{view.name}", (None, 0.0))
        if state == drift.State.of(view) and now - at < drift.SEEN_EVERY_S:
            continue
        try:
            drift.observe(ws.key, view, now=now)
        except (sqlite3.Error, OSError) as exc:
            log.warning("the state of %s was not kept for the history: %s", view.name, exc)
            continue
        kept[f"{ws.key}/{view.name}"] = (drift.State.of(view), now)


def select_endpoint(endpoints: Sequence[EndpointHead]) -> EndpointHead | None:
    """A selectbox of endpoints; the choice survives page changes and is in the URL."""
    if not endpoints:
        st.info("This workspace has no online endpoints yet.")
        return None
    names = [e.name for e in endpoints]
    focus = st.session_state.pop(_FOCUS, None)
    if focus is not None:
        # A change asked for this endpoint: the widget's own state says so, which the browser
        # follows (an index alone would lose to the value the browser holds). The index is
        # then left at its default, which Streamlit expects alongside a value set this way.
        st.session_state[f"{_KEY}_box"] = focus if focus in names else names[0]
        index = 0
    else:
        wanted = st.query_params.get("endpoint") or st.session_state.get(_KEY)
        index = names.index(wanted) if wanted in names else 0
    name = st.selectbox("Endpoint", names, index=index, key=f"{_KEY}_box")
    st.session_state[_KEY] = name
    if st.query_params.get("endpoint") != name:
        st.query_params["endpoint"] = name
    return endpoints[names.index(name)]


def _workspace() -> Workspace:
    ws = current_workspace()
    if ws is None:
        st.stop()
    return ws


def endpoint_in_focus() -> tuple[Workspace, EndpointView]:
    """The workspace and the selected endpoint with its deployments; stops the page, saying
    why, when there is none.

    Every page that works on one endpoint starts here. Only the selected endpoint's
    deployments are read: two round trips to open a page, none on a rerun.
    """
    ws = _workspace()
    session, wait = reads(ws), page_opened()
    try:
        heads = session.endpoints(wait=wait)
    except RolloutError as exc:
        st.error(str(exc))
        st.stop()
    head = select_endpoint(heads.value)
    if head is None:
        freshness(ws, heads)
        st.stop()
    try:
        endpoint = session.endpoint(head.name, wait=wait)
    except RolloutError as exc:
        st.error(str(exc))
        freshness(ws, heads)
        st.stop()
    freshness(ws, endpoint)
    _observe(ws, [endpoint.value])
    return ws, endpoint.value


def all_endpoints() -> tuple[Workspace, list[EndpointView], EndpointView | None]:
    """The workspace, every endpoint with its deployments (read at once), and the selected
    one (None when the workspace has none, after saying so)."""
    ws, everything = _everything()
    head = select_endpoint([e.head for e in everything.value])
    freshness(ws, everything)
    _observe(ws, everything.value)
    selected = None if head is None else next(e for e in everything.value if e.name == head.name)
    return ws, everything.value, selected


def workspace_endpoints() -> tuple[Workspace, list[EndpointView]]:
    """The workspace and every endpoint with its deployments, for a page about the whole
    workspace (no endpoint picker: the selection is left as it is for the other pages)."""
    ws, everything = _everything()
    freshness(ws, everything)
    _observe(ws, everything.value)
    return ws, everything.value


def _everything() -> tuple[Workspace, Read[list[EndpointView]]]:
    ws = _workspace()
    try:
        return ws, reads(ws).all_endpoints(wait=page_opened())
    except RolloutError as exc:
        st.error(str(exc))
        st.stop()


def focus_endpoint(name: str | None) -> None:
    """Select `name` on the next run (None: the first endpoint), after a change created or
    deleted an endpoint. The selectbox is already drawn in this run, so its value can only be
    set before the next one draws it."""
    st.session_state[_FOCUS] = name or ""
