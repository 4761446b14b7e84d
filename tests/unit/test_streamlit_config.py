"""The dashboard's Streamlit config refuses Host names it is not served on (DNS rebinding)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import pytest
from streamlit import config
from streamlit.web.server.starlette.starlette_websocket import is_host_allowed

from tests.conftest import REPO


@pytest.fixture
def allowed_hosts() -> Iterator[list[str]]:
    """server.allowedHosts as .streamlit/config.toml sets it, in force for the test."""
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    hosts = list(settings["server"]["allowedHosts"])
    previous = config.get_option("server.allowedHosts")
    config.set_option("server.allowedHosts", hosts)
    yield hosts
    config.set_option("server.allowedHosts", previous)


def test_the_dashboard_accepts_the_names_it_is_served_on(allowed_hosts: list[str]) -> None:
    assert set(allowed_hosts) == {"localhost", "127.0.0.1"}
    assert is_host_allowed("127.0.0.1:8501")
    assert is_host_allowed("localhost:8501")


def test_a_rebound_dns_name_is_refused(allowed_hosts: list[str]) -> None:
    assert not is_host_allowed("attacker.example:8501")
    assert not is_host_allowed("127.0.0.1.attacker.example")
    assert not is_host_allowed(None)
