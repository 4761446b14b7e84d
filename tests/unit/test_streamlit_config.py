"""The dashboard's Streamlit config refuses Host names it is not served on (DNS rebinding)."""

from __future__ import annotations

import ast
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


def test_the_page_icon_is_a_local_image_not_a_material_icon_fetched_from_a_cdn() -> None:
    # A ":material/...:" page icon makes the browser fetch the favicon from fonts.gstatic.com
    # (tests/e2e/test_offline.py checks the browser side).
    tree = ast.parse((REPO / "app.py").read_text())
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "set_page_config"
    ]
    icon = next(k.value for k in call.keywords if k.arg == "page_icon")
    assert isinstance(icon, ast.Name) and icon.id == "PAGE_ICON", ast.dump(icon)
    assigned = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PAGE_ICON"
    )
    assert "assets" in ast.unparse(assigned) and "icon.png" in ast.unparse(assigned)
    assert (REPO / "assets" / "icon.png").read_bytes().startswith(b"\x89PNG")
