"""History: every change made from the dashboard, newest first, with who, when, before and
after, reason, outcome and how long it took; the changes seen to be made outside it; Undo;
and the review report of one endpoint over a time range, to download."""

from __future__ import annotations

import streamlit as st

from components import history_view, report_download
from components.change_flow import show_flash
from components.selection import workspace_endpoints
from components.workspace import read_only_reason

st.title("History")
ws, endpoints = workspace_endpoints()
show_flash()
read_only = read_only_reason()
history_view.history_view(ws, endpoints)
history_view.open_pending_dialog(ws, endpoints, read_only)
st.divider()
report_download.history_report(ws, endpoints, shown=st.session_state.get("history_endpoint"))
