"""How an endpoint and its deployments are shown: summary line, split bar, deployment table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components.split import split_figure
from rollout.endpoints import EndpointView
from rollout.views import deployment_rows, endpoint_facts, state_badge, state_color

_CELL = {"green": "", "red": "background-color: #fde2e1", "orange": "background-color: #fff4ce"}


def endpoint_summary(endpoint: EndpointView, *, selected: bool = False) -> None:
    st.subheader(endpoint.name, anchor=False)
    st.markdown(state_badge(endpoint.state) + (" :blue-badge[selected]" if selected else ""))
    facts = endpoint_facts(endpoint)
    columns = st.columns([2, 1, 1, 1])
    columns[0].markdown(f"**Scoring URI**  \n`{endpoint.scoring_uri}`")
    columns[1].markdown(f"**Auth mode**  \n{facts['auth']}")
    columns[2].markdown(f"**Live traffic**  \n{facts['live']}")
    columns[3].markdown(f"**Mirror traffic**  \n{facts['mirror']}")
    if not (endpoint.live_total or endpoint.mirror):
        st.warning(
            "No deployment has live traffic: routed requests get 404 until traffic is set.",
            icon=":material/block:",
        )
    elif selected:
        # Only the selected endpoint gets the bar: a chart per endpoint is most of what a
        # browser spends drawing the Endpoints page (the others say the split in words).
        st.plotly_chart(
            split_figure(endpoint.traffic, endpoint.mirror),
            config={"displayModeBar": False, "staticPlot": True},
            key=f"split-{endpoint.name}",
        )


def deployments_table(endpoint: EndpointView) -> None:
    rows = deployment_rows(endpoint)
    if not rows:
        st.caption(f"{endpoint.name} has no deployments yet.")
        return
    frame = pd.DataFrame(rows)
    styled = frame.style.map(lambda v: _CELL[state_color(str(v))], subset=["state"])
    st.dataframe(styled, hide_index=True, width="stretch")
    st.caption(f"{len(rows)} deployment(s)")
