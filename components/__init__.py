"""Reusable Streamlit pieces of the dashboard."""
