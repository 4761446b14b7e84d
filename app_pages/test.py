"""Test: send requests to an endpoint or to one deployment, compare answers, run a burst."""

from __future__ import annotations

import streamlit as st

from components.invoke_panel import invoke_panel
from components.selection import select_endpoint
from components.workspace import current_workspace
from rollout.endpoints import list_endpoints
from rollout.errors import RolloutError

st.title("Test")
st.caption(
    "Send the same request the way a client would: to the endpoint, where its traffic "
    "decides who answers, or straight to one deployment, as when you test green before "
    "it takes live traffic."
)
ws = current_workspace()
if ws is None:
    st.stop()
try:
    endpoints = list_endpoints(ws)
except RolloutError as exc:
    st.error(str(exc))
    st.stop()
endpoint = select_endpoint(endpoints)
if endpoint is None:
    st.stop()
invoke_panel(ws, endpoint)
