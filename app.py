"""bluegreen: the dashboard's router and frame (page config, workspace sidebar, navigation)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from components.loading import note_page
from components.workspace import workspace_sidebar

# A local file: a ":material/...:" page icon makes the browser fetch the favicon from
# fonts.gstatic.com, and nothing the dashboard shows may need the internet. (The pages'
# own material icons come from the font bundled with Streamlit; with a page icon set, none
# of them becomes the favicon.)
PAGE_ICON = Path(__file__).resolve().parent / "assets" / "icon.png"


def main() -> None:
    st.set_page_config(page_title="bluegreen", page_icon=PAGE_ICON, layout="wide")
    navigation = st.navigation(
        [
            st.Page(
                "app_pages/endpoints.py", title="Endpoints", icon=":material/hub:", default=True
            ),
            st.Page("app_pages/traffic.py", title="Traffic", icon=":material/tune:"),
            st.Page("app_pages/plan.py", title="Rollout", icon=":material/timeline:"),
            st.Page("app_pages/test.py", title="Test", icon=":material/send:"),
            st.Page("app_pages/deployments.py", title="Deployments", icon=":material/dns:"),
            st.Page("app_pages/deploy.py", title="Deploy", icon=":material/rocket_launch:"),
            st.Page("app_pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
            st.Page("app_pages/history.py", title="History", icon=":material/history:"),
        ]
    )
    # Before anything reads: opening a page reads what is stale, a rerun of it never waits.
    note_page(navigation.url_path)
    workspace_sidebar()
    navigation.run()


main()
