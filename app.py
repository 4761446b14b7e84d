"""bluegreen: the dashboard's router and frame (page config, workspace sidebar, navigation)."""

from __future__ import annotations

import streamlit as st

from components.workspace import workspace_sidebar


def main() -> None:
    st.set_page_config(page_title="bluegreen", page_icon=":material/swap_horiz:", layout="wide")
    workspace_sidebar()
    navigation = st.navigation(
        [st.Page("pages/endpoints.py", title="Endpoints", icon=":material/hub:", default=True)]
    )
    navigation.run()


main()
