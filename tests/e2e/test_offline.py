"""Nothing the dashboard shows needs the internet: opening every page in a real browser
makes no request to any host but the dashboard's own (127.0.0.1).

An emulator of this module's own with one endpoint and no deployment (no instance
processes to start), so that the test stays short.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request

from emulator.apply import apply_file
from tests.conftest import EXAMPLES, RunningEmulator
from tests.e2e.harness import go_to, open_app

pytestmark = pytest.mark.emulator

# Each page by its URL, loaded afresh: the favicon is chosen as a page loads.
PAGES = ("/", "/traffic", "/plan", "/test", "/deployments", "/deploy", "/metrics")
_LOCAL = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def e2e_emulator(emulator_factory: Callable[[str], RunningEmulator]) -> RunningEmulator:
    """Overrides the tier's tutorial emulator: `my-endpoint` alone, no deployments."""
    running = emulator_factory("e2e-offline")
    running.start()
    apply_file(running.state_dir, EXAMPLES / "endpoint.yml")
    return running


def test_opening_every_page_requests_nothing_outside_127_0_0_1(page: Page) -> None:
    outside: list[str] = []

    def seen(request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "blob") and parts.hostname not in _LOCAL:
            outside.append(request.url)

    page.on("request", seen)
    for path in PAGES:
        open_app(page, path)
        favicon = page.locator("link[rel='shortcut icon']").get_attribute("href") or ""
        assert "/media/" in favicon, (path, favicon)  # the local file, served by the dashboard
    go_to(page, "Traffic")  # and a page opened from the navigation, in the same session
    assert outside == [], outside
