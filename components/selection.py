"""Which endpoint the user works on: kept in session state and in the URL (?endpoint=...)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components.workspace import current_workspace
from rollout.endpoints import EndpointView, list_endpoints
from rollout.errors import RolloutError
from rollout.workspace import Workspace

_KEY = "selected_endpoint"


def select_endpoint(endpoints: list[EndpointView]) -> EndpointView | None:
    """A selectbox of endpoints; the choice survives page changes and is in the URL."""
    if not endpoints:
        st.info("This workspace has no online endpoints yet.")
        return None
    names = [e.name for e in endpoints]
    wanted = st.query_params.get("endpoint") or st.session_state.get(_KEY)
    index = names.index(wanted) if wanted in names else 0
    name = st.selectbox("Endpoint", names, index=index, key=f"{_KEY}_box")
    st.session_state[_KEY] = name
    if st.query_params.get("endpoint") != name:
        st.query_params["endpoint"] = name
    return endpoints[names.index(name)]


def selected_name() -> str | None:
    value = st.query_params.get("endpoint") or st.session_state.get(_KEY)
    return str(value) if value else None


def endpoint_in_focus(
    load: Callable[[Workspace], list[EndpointView]] = list_endpoints,
) -> tuple[Workspace, list[EndpointView], EndpointView]:
    """The workspace, its endpoints and the selected one; stops the page, saying why, if none.

    Every page that works on one endpoint starts here. `load` lists the endpoints (a page
    that reruns often passes a cached one).
    """
    ws = current_workspace()
    if ws is None:
        st.stop()
    try:
        endpoints = load(ws)
    except RolloutError as exc:
        st.error(str(exc))
        st.stop()
    endpoint = select_endpoint(endpoints)
    if endpoint is None:
        st.stop()
    return ws, endpoints, endpoint
