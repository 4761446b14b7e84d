"""Azure's safe-rollout tutorial, by clicking: a real browser on `streamlit run app.py`
against the emulator, every step checked on the page and again through the SDK.

The tests run in order and share one browser page (one Streamlit session), as a person
following the tutorial would: blue takes all traffic, green is tested alone, mirrored 10%,
given 10%, then 100%, and blue is deleted. Each page is saved to docs/screenshots/.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from rollout.workspace import Workspace
from tests.e2e.harness import (
    alert,
    button,
    choose,
    click,
    dialog,
    go_to,
    main,
    open_app,
    screenshot,
    set_slider,
)

pytestmark = pytest.mark.emulator

ENDPOINT = "my-endpoint"
GREEN_ANSWER = [4952.82, 3830.04]
GREEN_ONLY = "deployment 'green' only (azureml-model-deployment header)"
MIRROR_SHARE = "Share of live requests mirrored (%)"


def _traffic(sdk: Workspace) -> tuple[dict[str, int], dict[str, int]]:
    """Live and mirror traffic as the SDK reads it, positive shares only."""
    entity = sdk.ml_client.online_endpoints.get(ENDPOINT)
    live = {k: int(v) for k, v in (entity.traffic or {}).items() if int(v)}
    mirror = {k: int(v) for k, v in (entity.mirror_traffic or {}).items() if int(v)}
    return live, mirror


def _requests_served(sdk: Workspace, deployment: str) -> int:
    model = {"blue": "model 1", "green": "model 2"}[deployment]
    logs = sdk.ml_client.online_deployments.get_logs(deployment, ENDPOINT, lines=2000)
    return logs.count(f"{model}: request received")


def expect_fact(page: Page, label: str, value: str) -> None:
    """A fact of the selected endpoint's summary on the Endpoints page, e.g. 'Live traffic'."""
    fact = (
        main(page)
        .locator('[data-testid="stMarkdownContainer"]')
        .filter(has=page.locator("strong", has_text=re.compile(rf"^{re.escape(label)}$")))
        .first
    )
    expect(fact).to_have_text(re.compile(rf"^{re.escape(label)}\s+{re.escape(value)}$"))


def _apply_and_confirm(page: Page, *, after: str) -> None:
    """Apply… opens the dialog with before → after; Confirm sends it and closes the dialog."""
    click(page, button(main(page), "Apply…"))
    confirm = dialog(page)
    expect(confirm).to_contain_text(f"After: {after}")
    click(page, button(confirm, "Confirm"))
    expect(confirm).to_have_count(0)


def test_the_endpoints_page_shows_my_endpoint_with_blue_taking_all_traffic(
    page: Page, sdk: Workspace
) -> None:
    open_app(page, "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Endpoints")
    expect(page.get_by_role("combobox", name="Endpoint", exact=True)).to_have_value(ENDPOINT)
    expect(main(page).get_by_role("heading", name=ENDPOINT, exact=True)).to_be_visible()
    expect_fact(page, "Live traffic", "blue 100%")
    expect_fact(page, "Mirror traffic", "none")
    assert _traffic(sdk) == ({"blue": 100}, {})
    names = [d.name for d in sdk.ml_client.online_deployments.list(ENDPOINT)]
    assert sorted(names) == ["blue", "green"]


def test_a_request_sent_to_green_alone_is_served_by_green(page: Page, sdk: Workspace) -> None:
    green_before = _requests_served(sdk, "green")
    blue_before = _requests_served(sdk, "blue")
    go_to(page, "Test")
    choose(page, "Send to", GREEN_ONLY)
    click(page, button(main(page), "Send"))

    served_by = main(page).locator('[data-testid="stMetric"]').filter(has_text="Served by")
    expect(served_by.locator('[data-testid="stMetricValue"]')).to_have_text("green")
    status = main(page).locator('[data-testid="stMetric"]').filter(has_text="Status")
    expect(status.locator('[data-testid="stMetricValue"]')).to_have_text("200")
    answer = json.loads(main(page).locator('[data-testid="stCode"] code').first.inner_text())
    assert answer == pytest.approx(GREEN_ANSWER, abs=0.01)
    screenshot(page, "test")

    assert _requests_served(sdk, "green") == green_before + 1
    assert _requests_served(sdk, "blue") == blue_before
    assert _traffic(sdk) == ({"blue": 100}, {}), "testing green alone changes no traffic"


def test_mirroring_10_percent_to_green_is_confirmed_and_read_back(
    page: Page, sdk: Workspace
) -> None:
    go_to(page, "Traffic")
    choose(page, "Mirror to", "green")
    set_slider(page, MIRROR_SHARE, 10)
    expect(main(page)).not_to_contain_text("no change yet")
    assert _traffic(sdk) == ({"blue": 100}, {}), "nothing is sent before Confirm"

    _apply_and_confirm(page, after="live blue 100% · mirror green 10%")
    expect(
        alert(page, "Traffic of my-endpoint is now live blue 100% · mirror green 10%.")
    ).to_be_visible()
    assert _traffic(sdk) == ({"blue": 100}, {"green": 10})
    screenshot(page, "traffic")

    go_to(page, "Endpoints")
    expect_fact(page, "Mirror traffic", "green 10%")
    expect_fact(page, "Live traffic", "blue 100%")
    screenshot(page, "endpoints")


def test_a_split_that_does_not_sum_to_100_is_refused_before_sending(
    page: Page, sdk: Workspace
) -> None:
    go_to(page, "Traffic")
    set_slider(page, "Live traffic to blue (%)", 90)
    expect(alert(page, "sums to 90; it must be 100 (or 0 to disable traffic)")).to_be_visible()
    expect(main(page)).to_contain_text("Apply is disabled until the problems above are fixed.")
    expect(button(main(page), "Apply…")).to_be_disabled()
    assert _traffic(sdk) == ({"blue": 100}, {"green": 10})


def test_ninety_ten_after_clearing_the_mirror_is_confirmed_and_read_back(
    page: Page, sdk: Workspace
) -> None:
    # green cannot take live traffic while it is mirrored: clear the mirror in the same change
    choose(page, "Mirror to", "none")
    click(page, button(main(page), "green"))  # give the rest to green: 10%
    expect(main(page)).to_contain_text("Live total 100% of 100%")
    expect(button(main(page), "Apply…")).to_be_enabled()

    _apply_and_confirm(page, after="live blue 90%, green 10% · mirror none")
    expect(
        alert(page, "Traffic of my-endpoint is now live blue 90%, green 10% · mirror none.")
    ).to_be_visible()
    assert _traffic(sdk) == ({"blue": 90, "green": 10}, {})

    go_to(page, "Endpoints")
    expect_fact(page, "Live traffic", "blue 90% · green 10%")
    expect_fact(page, "Mirror traffic", "none")


def test_a_change_made_elsewhere_meanwhile_is_not_overwritten(page: Page, sdk: Workspace) -> None:
    go_to(page, "Traffic")
    # someone else, through the SDK, while this page's session is open
    endpoint = sdk.ml_client.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {"blue": 50, "green": 50}
    sdk.ml_client.online_endpoints.begin_create_or_update(endpoint).result(timeout=120)

    # The preset reruns the page from what it read (no round trip): the page cannot know
    # yet. Apply reads the endpoint fresh and refuses.
    click(page, button(main(page), "0/100"))
    _apply_and_confirm(page, after="live green 100% · mirror none")
    refused = alert(page, "Not applied: the traffic of 'my-endpoint' changed since this page")
    expect(refused).to_contain_text("it is now live blue 50%, green 50%")
    assert _traffic(sdk) == ({"blue": 50, "green": 50}, {})


def test_all_live_traffic_moves_to_green(page: Page, sdk: Workspace) -> None:
    # the page now edits from the state the refusal read back, keeping the sliders at 0/100
    expect(main(page)).not_to_contain_text("you are editing from")
    _apply_and_confirm(page, after="live green 100% · mirror none")
    expect(
        alert(page, "Traffic of my-endpoint is now live green 100% · mirror none.")
    ).to_be_visible()
    assert _traffic(sdk) == ({"green": 100}, {})


def test_blue_is_deleted_after_typing_its_name(page: Page, sdk: Workspace) -> None:
    go_to(page, "Deployments")
    choose(page, "Deployment", "blue")
    expect(main(page)).to_contain_text("It has no live or mirror traffic, so it can be deleted.")
    click(page, button(main(page), "Delete…"))

    confirm = dialog(page)
    delete = button(confirm, "Delete")
    expect(delete).to_be_enabled()
    # typed without Enter, then one click: the click commits the text (blur) and deletes
    confirm.get_by_role("textbox", name=re.compile("to confirm")).fill("blue")
    click(page, delete)
    expect(confirm).to_have_count(0)
    expect(alert(page, "Deployment 'blue' of 'my-endpoint' was deleted.")).to_be_visible()
    names = [d.name for d in sdk.ml_client.online_deployments.list(ENDPOINT)]
    assert names == ["green"]
    assert _traffic(sdk) == ({"green": 100}, {})

    expect(page.get_by_role("combobox", name="Deployment", exact=True)).to_have_value("green")
    # The logs are read once their section is opened.
    click(page, main(page).locator('[data-testid="stExpander"] summary', has_text="Logs of green"))
    logs = main(page).locator('[data-testid="stCode"]').last
    expect(logs).to_contain_text("model 2: request received")
    screenshot(
        page, "deployments", scroll_to=main(page).locator('[data-testid="stDataFrame"]').first
    )
