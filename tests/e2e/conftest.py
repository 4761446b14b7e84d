"""The e2e tier's fixtures: an emulator with the tutorial's endpoint, `streamlit run app.py`
on a free port pointed at it, and headless Debian Chromium driven by Playwright.

Everything is module-scoped: a test file is one story told in one browser page, in order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from emulator.apply import apply_file
from rollout.workspace import Workspace
from tests.conftest import EXAMPLES, REPO, RunningEmulator
from tests.e2e.harness import TIMEOUT_MS, VIEWPORT, watch_script_runs

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
]
STARTUP_TIMEOUT_S = 90.0  # a busy 2-core machine may also be running other test tiers

# Every `expect` retries this long: what a page shows after a run on a loaded machine.
expect.set_options(timeout=TIMEOUT_MS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tutorial_emulator(
    emulator_factory: Callable[[str], RunningEmulator], name: str, *, green: bool
) -> RunningEmulator:
    """A running emulator with the tutorial's `my-endpoint` and blue taking all traffic,
    and green at 0% when `green`. A module that starts elsewhere overrides `e2e_emulator`
    with this (the fixtures below then run on its emulator)."""
    running = emulator_factory(name)
    running.start()
    apply_file(running.state_dir, EXAMPLES / "endpoint.yml")
    apply_file(running.state_dir, EXAMPLES / "blue-deployment.yml", all_traffic=True)
    if green:
        apply_file(running.state_dir, EXAMPLES / "green-deployment.yml")
    return running


@pytest.fixture(scope="module")
def e2e_emulator(emulator_factory: Callable[[str], RunningEmulator]) -> RunningEmulator:
    """An emulator of the tutorial's own: `my-endpoint`, blue with all traffic, green at 0%."""
    return tutorial_emulator(emulator_factory, "e2e", green=True)


@pytest.fixture(scope="module")
def sdk(e2e_emulator: RunningEmulator) -> Workspace:
    """The real MLClient on that emulator, as a user's own script would connect."""
    return e2e_emulator.workspace()


@pytest.fixture(scope="module")
def dashboard(
    e2e_emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`streamlit run app.py` on a free port; yields its base URL once it is healthy."""
    home = tmp_path_factory.mktemp("e2e-home")
    log_path = home / "streamlit.log"
    port = _free_port()
    env = os.environ | {
        "EMULATOR_STATE_DIR": str(e2e_emulator.state_dir),
        "BLUEGREEN_HOME": str(home),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("BLUEGREEN_READ_ONLY", None)
    # Set by azure-ai-ml in this process once any test has built an MLClient for an emulator,
    # to a cloud registered here only: inherited, `import azure.ai.ml` in the app would fail.
    env.pop("AZUREML_CURRENT_CLOUD", None)
    command = [
        *(sys.executable, "-m", "streamlit", "run", "app.py"),
        *("--server.headless", "true", "--server.port", str(port)),
        *("--server.address", "127.0.0.1", "--server.fileWatcherType", "none"),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=5).text == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)  # polling interval, not an assertion
    pytest.fail(
        f"streamlit was not healthy within {STARTUP_TIMEOUT_S:.0f} s:\n{log_path.read_text()}"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the e2e tier drives Debian's Chromium. "
            "Install it with `make browser` (`make test` does) or `apt-get install chromium`."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page(browser: Browser, dashboard: str) -> Iterator[Page]:
    """One page (one Streamlit session) shared by a module's tests, in order."""
    context = browser.new_context(viewport=VIEWPORT, base_url=dashboard)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    watch_script_runs(opened)
    try:
        yield opened
    finally:
        context.close()
