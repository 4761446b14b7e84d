"""The review report, end to end: real changes with traffic on the emulator, the report built
from the real metrics, written to a file and opened in headless Chromium with every network
request refused, as a reviewer would open an attachment on a plane. Its picture goes to
docs/screenshots/report.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Request, Route, expect

from components.report_download import build_report
from rollout import drift, history, plan_store
from rollout.changes import begin_set_traffic
from rollout.endpoints import get_endpoint, scoring_credential
from rollout.invoke import burst
from rollout.metrics import metrics_client
from rollout.plan_store import ComparisonRecord
from rollout.workspace import Workspace
from tests.conftest import REPO
from tests.e2e.harness import SCREENSHOTS, VIEWPORT

pytestmark = pytest.mark.emulator

ENDPOINT = "my-endpoint"
SAMPLE = (REPO / "examples" / "sample-request.json").read_bytes()
CANARY = "canary: green takes 10% <after the mirror looked fine>"


def _burst(ws: Workspace, count: int) -> None:
    endpoint = get_endpoint(ws, ENDPOINT)
    credential = scoring_credential(ws, ENDPOINT)
    result = burst(ws, endpoint.scoring_uri, credential, SAMPLE, count=count, concurrency=2)
    assert result.statuses[200] == count, result.statuses


def _change(
    ws: Workspace,
    before: tuple[dict[str, int], dict[str, int]],
    after: tuple[dict[str, int], dict[str, int]],
    reason: str,
) -> None:
    """A traffic change as the dashboard makes it: applied, timed, then written to the log."""
    started = time.monotonic()
    begin_set_traffic(ws, ENDPOINT, traffic=after[0], mirror=after[1]).result(timeout=120)
    history.record(
        workspace=ws.key, endpoint=ENDPOINT, action="traffic", who=ws.who(), reason=reason,
        before={"traffic": before[0], "mirror": before[1]},
        after={"traffic": after[0], "mirror": after[1]},
        duration_s=time.monotonic() - started,
    )  # fmt: skip


@pytest.fixture(scope="module")
def report_file(sdk: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """blue serves; green is mirrored 20%, then given 10% live; then someone sets 80/20
    elsewhere (the dashboard notices); a prediction comparison was recorded on the way."""
    start = time.time()
    drift.observe(sdk.key, get_endpoint(sdk, ENDPOINT), now=time.time())
    _burst(sdk, 40)
    _change(sdk, ({"blue": 100}, {}), ({"blue": 100, "green": 0}, {"green": 20}),
            "mirror green to watch it under real load")  # fmt: skip
    _burst(sdk, 40)
    _change(sdk, ({"blue": 100}, {"green": 20}), ({"blue": 90, "green": 10}, {}), CANARY)
    drift.observe(sdk.key, get_endpoint(sdk, ENDPOINT), now=time.time())
    _burst(sdk, 40)
    plan_store.record_comparison(
        ComparisonRecord(time.time(), sdk.key, ENDPOINT, "blue", "green", "sample request",
                         20, 20, 0, 0.0, 0, 0, 1e-6, 1e-3, False)
    )  # fmt: skip
    begin_set_traffic(sdk, ENDPOINT, traffic={"blue": 80, "green": 20}, mirror={}).result(
        timeout=120
    )  # as the CLI would: no entry of the dashboard's
    drift.observe(sdk.key, get_endpoint(sdk, ENDPOINT), now=time.time())
    _burst(sdk, 40)
    time.sleep(1.5)  # the emulator writes its request log every half second
    name, html = build_report(sdk, metrics_client(sdk), ENDPOINT, start)
    assert name.startswith("bluegreen-report-my-endpoint-") and name.endswith(".html")
    path = tmp_path_factory.mktemp("report") / name
    path.write_text(html, encoding="utf-8")
    return path


def test_the_report_opens_with_no_network_and_shows_the_rollout(
    browser: Browser, report_file: Path
) -> None:
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    page = context.new_page()
    url = report_file.as_uri()
    others: list[str] = []

    def only_the_file(route: Route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            route.abort()

    def count(request: Request) -> None:
        if request.url != url:
            others.append(request.url)

    page.route("**/*", only_the_file)
    page.on("request", count)
    try:
        page.goto(url)
        expect(page.locator("h1")).to_have_text("Rollout review: my-endpoint")
        for heading in ("Before and after", "Timeline of changes",
                        "Requests, latency and errors", "Prediction comparisons"):  # fmt: skip
            expect(page.locator("h2", has_text=heading)).to_be_visible()
        before_after = page.locator("#before-after")
        expect(before_after).to_contain_text("Live: blue 100%")  # before
        expect(before_after).to_contain_text("Live: blue 80%, green 20%")  # after, read now
        expect(before_after.locator("td", has_text="model-2:1")).to_have_count(2)
        timeline = page.locator("#timeline")
        expect(timeline).to_contain_text(CANARY)  # as text, not markup
        expect(timeline).to_contain_text("outside the dashboard")
        expect(page.locator("#predictions")).to_contain_text("sample request")
        charts = page.locator(".js-plotly-plot")
        expect(charts).to_have_count(3)
        expect(charts.first.locator(".scatterlayer .trace").first).to_be_attached()
        expect(page.locator("#metrics")).to_contain_text("mirrored copies")
        assert others == [], others
        page.locator("#before-after").scroll_into_view_if_needed()
        page.mouse.move(0, VIEWPORT["height"] - 1)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "report.png"))
    finally:
        context.close()
