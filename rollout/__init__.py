"""The domain and SDK layer of bluegreen: Azure's rules, workspaces, endpoints, metrics.

Nothing in this package imports streamlit.
"""
