"""A deployment's logs on the Deployments page: collapsed until opened, then a bounded box
that scrolls, with a choice of how many lines to read, a filter and a download.

Nothing is read while the expander is closed (a lazy expander: its content runs only when
open), so opening the page or picking another deployment costs no log read. What is read is
kept in the session's reads (rollout/reads.py) like everything else; Refresh reads it again.
"""

from __future__ import annotations

import streamlit as st

from components import loading
from rollout.endpoints import DeploymentView, EndpointView
from rollout.errors import RolloutError
from rollout.log_lines import LINE_CHOICES, filter_lines
from rollout.reads import logs_key
from rollout.workspace import Workspace

LOG_CONTAINERS = ("inference-server", "storage-initializer")
DEFAULT_LINES = 500
BOX_HEIGHT_PX = 420
# Fewer lines than this fit without a box of fixed height (no empty space under them).
_SHORT = 18


def open_key(endpoint: str, deployment: str) -> str:
    return f"logs_open_{endpoint}_{deployment}"


def logs_panel(ws: Workspace, endpoint: EndpointView, deployment: DeploymentView) -> None:
    """`deployment`'s logs in an expander, read only once it is opened."""
    box = st.expander(
        f"Logs of {deployment.name}",
        icon=":material/article:",
        key=open_key(endpoint.name, deployment.name),
        on_change="rerun",
    )
    with box:
        if box.open:
            _logs(ws, endpoint, deployment)


def _logs(ws: Workspace, endpoint: EndpointView, deployment: DeploymentView) -> None:
    container_col, lines_col, filter_col, refresh_col = st.columns(
        [2, 1, 3, 1], vertical_alignment="bottom"
    )
    container = container_col.selectbox("Container", LOG_CONTAINERS, key="logs_container")
    lines = lines_col.selectbox(
        "Lines",
        LINE_CHOICES,
        index=LINE_CHOICES.index(DEFAULT_LINES),
        key="logs_lines",
        help="How many of the last lines of the log to read",
    )
    query = filter_col.text_input(
        "Filter",
        key="logs_filter",
        placeholder="text in the line, any case",
        help="Shows the lines read that contain this text, ignoring case",
    )
    key = logs_key(endpoint.name, deployment.name, container, int(lines))
    refresh_col.button(
        "Refresh",
        key="logs_refresh",
        icon=":material/refresh:",
        width="stretch",
        on_click=loading.reads(ws).drop,
        args=(key,),
        help="Read the log again now",
    )
    try:
        read = loading.reads(ws).logs(
            endpoint.name,
            deployment.name,
            container=container,
            lines=int(lines),
            wait=loading.page_opened(),
        )
    except RolloutError as exc:
        st.error(str(exc))
        return
    shown = filter_lines(read.value, query)
    if not shown.total:
        body = "(no log lines yet)"
    elif not shown.lines:
        body = f'(no line of the {shown.total} read contains "{shown.query}")'
    else:
        body = shown.text
    st.code(
        body,
        language=None,
        wrap_lines=True,
        height=BOX_HEIGHT_PX if len(shown.lines) > _SHORT else "content",
    )
    words, download = st.columns([4, 1], vertical_alignment="center")
    words.caption(
        f"{shown.summary}: the last {int(lines)} lines of the {container} log of "
        f"'{deployment.name}' were asked for, read {loading.age_text(read.age())}."
    )
    download.download_button(
        "Download",
        data=read.value,
        file_name=f"{endpoint.name}-{deployment.name}-{container}.log",
        mime="text/plain",
        key="logs_download",
        icon=":material/download:",
        on_click="ignore",
        width="stretch",
        help=f"The {shown.total} lines read, unfiltered, as a text file",
    )
