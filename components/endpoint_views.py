"""How an endpoint and its deployments are shown: summary line, split bar, deployment table."""

from __future__ import annotations

from collections.abc import Mapping

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
    columns = st.columns([2, 1, 1, 1, 1])
    columns[0].markdown(f"**Scoring URI**  \n`{endpoint.scoring_uri}`")
    columns[1].markdown(f"**Compute**  \n{facts['compute']}")
    columns[2].markdown(f"**Auth mode**  \n{facts['auth']}")
    columns[3].markdown(f"**Live traffic**  \n{facts['live']}")
    columns[4].markdown(f"**Mirror traffic**  \n{facts['mirror']}")
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


def deployments_table(
    endpoint: EndpointView, ready: Mapping[str, int] | None = None, *, ready_read: bool = True
) -> None:
    """The deployments with their state and ready/asked-for instances; `ready_read` False
    says that the readiness metric could not be read."""
    rows = deployment_rows(endpoint, ready)
    if not rows:
        st.caption(f"{endpoint.name} has no deployments yet.")
        return
    frame = pd.DataFrame(rows)
    styled = frame.style.map(lambda v: _CELL[state_color(str(v))], subset=["state"])
    styled = styled.map(_ready_cell, subset=["ready"])
    st.dataframe(styled, hide_index=True, width="stretch")
    why = (
        "ready: instances running at the last sample of Azure Monitor's DeploymentCapacity, "
        "of those asked for"
    )
    if not ready_read:
        why += " (the metric could not be read: ?)"
    elif any(d.name not in (ready or {}) for d in endpoint.deployments):
        why += " (? where it has no sample yet)"
    st.caption(f"{len(rows)} deployment(s) · {why}.")


def _ready_cell(value: object) -> str:
    """Orange when fewer instances are up than asked for (or it is not known)."""
    ready, _, total = str(value).partition("/")
    return "" if ready == total else _CELL["orange"]
