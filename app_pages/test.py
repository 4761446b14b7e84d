"""Test: send requests to an endpoint or to one deployment, compare answers, run a burst."""

from __future__ import annotations

import streamlit as st

from components.consume import consume_panel
from components.invoke_panel import invoke_panel
from components.selection import endpoint_in_focus

st.title("Test")
st.caption(
    "Send the same request the way a client would: to the endpoint, where its traffic "
    "decides who answers, or straight to one deployment, as when you test green before "
    "it takes live traffic."
)
ws, endpoint = endpoint_in_focus()
consume_panel(ws, endpoint)
invoke_panel(ws, endpoint)
