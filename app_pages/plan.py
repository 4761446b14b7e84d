"""Rollout: a staged plan that moves traffic from baseline to candidate, step by step, on
evidence: its timeline, each gate's verdict with the numbers, Promote, Abort and Retire;
and the two deployments' predictions compared on the same inputs."""

from __future__ import annotations

import streamlit as st

from components import plan_view, report_download
from components.prediction_panel import prediction_panel
from components.selection import endpoint_in_focus
from components.workspace import read_only_reason

st.title("Rollout")
ws, endpoint = endpoint_in_focus()
plan_view.show_flash()
read_only = read_only_reason()
if read_only:
    st.info(read_only, icon=":material/lock:")
plan = plan_view.open_plan(ws, endpoint)
if plan is None:
    plan_view.last_plan(ws, endpoint)
    plan_view.create_form(ws, endpoint, read_only=read_only)
else:
    plan_view.show_plan(ws, endpoint, plan, read_only=read_only)
report_download.plan_report(ws, endpoint, plan)
st.divider()
prediction_panel(ws, endpoint, pair=None if plan is None else (plan.baseline, plan.candidate))
