"""Which endpoint the user works on: kept in session state and in the URL (?endpoint=...)."""

from __future__ import annotations

import streamlit as st

from rollout.endpoints import EndpointView

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
