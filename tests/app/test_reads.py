"""The dashboard's reads against a real emulator: a widget interaction sends nothing to the
workspace, a change made here is shown at once, Reload reads fresh, stale data is refreshed.

Requests are counted at the HTTP boundary: every pipeline of the workspace's MLClient (ARM)
and MetricsClient has a `CallLog` policy (rollout/calls.py) that counts what goes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from azure.ai.ml.entities import ManagedOnlineEndpoint
from streamlit.testing.v1 import AppTest

from components.traffic_editor import EditorKeys
from rollout.changes import begin_set_traffic
from rollout.reads import WorkspaceReads
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint, wait_until

pytestmark = pytest.mark.emulator

ENDPOINT = "reads-ep"


@pytest.fixture(scope="module")
def reads_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("reads-ep"))
    return emulator


@pytest.fixture
def page_env(
    reads_ep: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(reads_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    _set_traffic(workspace, {"blue": 100, "green": 0})
    yield workspace
    _set_traffic(workspace, {"blue": 100, "green": 0})


def _set_traffic(ws: Workspace, traffic: dict[str, int]) -> None:
    begin_set_traffic(ws, ENDPOINT, traffic=traffic, mirror={}).result(timeout=120)


def _open(page: str) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, app.exception
    return app


def _reads(app: AppTest) -> WorkspaceReads:
    (reads,) = app.session_state["workspace_reads"].values()
    assert isinstance(reads, WorkspaceReads)
    return reads


def _arm_requests(app: AppTest) -> int:
    return _reads(app).ws.arm_calls.count.requests


def _in_force(app: AppTest) -> str:
    """The Traffic page's line for a deployment says what it has now ('now 100% live')."""
    return "\n".join(m.value for m in app.markdown if "now " in m.value)


def test_moving_sliders_and_picking_presets_sends_nothing_to_the_workspace(
    page_env: Workspace,
) -> None:
    app = _open("traffic")
    keys = EditorKeys.of(page_env.key, ENDPOINT)
    before = _arm_requests(app)

    app.slider(key=keys.live("green")).set_value(10).run()
    app.slider(key=keys.live("blue")).set_value(90).run()
    app.button(key=keys.preset(2)).click().run()  # 50/50
    app.button(key=keys.rest("green")).click().run()
    app.selectbox(key=keys.mirror_target).set_value("green").run()
    app.slider(key=keys.mirror_percent).set_value(20).run()

    assert not app.exception, app.exception
    assert app.slider(key=keys.live("blue")).value == 50
    assert _arm_requests(app) == before


def test_editing_a_request_and_picking_a_target_sends_nothing_to_the_workspace(
    page_env: Workspace,
) -> None:
    app = _open("test")
    before = _arm_requests(app)

    app.text_area(key="invoke_request").input(
        '{"input_data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}'
    ).run()
    app.selectbox(key=f"invoke_target_{ENDPOINT}").set_value("green").run()

    assert not app.exception, app.exception
    assert _arm_requests(app) == before


def test_changing_the_metrics_range_reads_metrics_but_not_the_workspace(
    page_env: Workspace,
) -> None:
    app = _open("metrics")
    ws = _reads(app).ws
    arm, metrics = ws.arm_calls.count.requests, ws.metrics_calls.count.requests

    app.selectbox(key="metrics_span").set_value(3600).run()

    assert not app.exception, app.exception
    assert ws.arm_calls.count.requests == arm
    assert ws.metrics_calls.count.requests > metrics  # a new window is a new query


def test_scale_input_on_the_deployments_page_reads_neither_endpoint_nor_logs(
    page_env: Workspace,
) -> None:
    app = _open("deployments")
    before = _arm_requests(app)

    app.number_input(key=f"scale_count_{ENDPOINT}_blue").set_value(3).run()
    app.selectbox(key=f"deployment_{ENDPOINT}").set_value("green").run()
    app.selectbox(key=f"deployment_{ENDPOINT}").set_value("blue").run()

    assert not app.exception, app.exception
    # logs are read only once their section is opened (tests/app/test_deployments_page.py)
    assert _arm_requests(app) == before


def test_a_traffic_change_made_here_is_shown_at_once(page_env: Workspace) -> None:
    app = _open("traffic")
    keys = EditorKeys.of(page_env.key, ENDPOINT)
    app.button(key=keys.preset(1)).click().run()  # 90/10
    app.button(key=keys.apply).click().run()
    app.button(key="traffic_confirm").click().run()
    assert not app.exception, app.exception

    # without waiting for the TTL: the read-back after the change is what the page shows
    assert "now 90% live" in _in_force(app) and "now 10% live" in _in_force(app)
    endpoint = _reads(app).endpoint(ENDPOINT, wait=False).value
    assert endpoint.traffic == {"blue": 90, "green": 10}


def test_a_scale_made_here_is_shown_at_once(page_env: Workspace) -> None:
    app = _open("deployments")
    app.selectbox(key=f"deployment_{ENDPOINT}").set_value("green").run()
    app.number_input(key=f"scale_count_{ENDPOINT}_green").set_value(2).run()
    app.button(key="scale_open").click().run()
    app.button(key="scale_confirm").click().run()
    assert not app.exception, app.exception

    rows = _deployments_table(app)
    assert rows.loc["green", "instances"] == 2
    # and back, for the other tests
    app.number_input(key=f"scale_count_{ENDPOINT}_green").set_value(1).run()
    app.button(key="scale_open").click().run()
    app.button(key="scale_confirm").click().run()
    assert _deployments_table(app).loc["green", "instances"] == 1


def _deployments_table(app: AppTest) -> pd.DataFrame:
    """The Deployments page's table of deployments (the events panel has tables too)."""
    (table,) = [d.value for d in app.dataframe if "instances" in d.value.columns]
    return table.set_index("deployment")


def test_reload_reads_fresh_what_was_changed_elsewhere(page_env: Workspace) -> None:
    app = _open("traffic")
    _set_traffic(page_env, {"blue": 50, "green": 50})  # someone else, through the SDK

    app.run()  # a rerun within the TTL: still what the page read
    assert "now 100% live" in _in_force(app)

    before = _arm_requests(app)
    app.button(key=f"reload_{page_env.key}").click().run()
    assert not app.exception, app.exception
    assert _arm_requests(app) > before
    assert _in_force(app).count("now 50% live") == 2


def test_a_stale_read_is_refreshed_in_the_background_and_shown_on_a_later_rerun(
    page_env: Workspace,
) -> None:
    app = _open("traffic")
    _set_traffic(page_env, {"blue": 50, "green": 50})  # someone else

    def shows_the_change() -> bool:
        app.run()
        return _in_force(app).count("now 50% live") == 2

    # Each rerun is served at once; one after the TTL starts a read in the background,
    # and a rerun after it landed shows its result.
    wait_until(shows_the_change, timeout=30, what="the change made elsewhere to be shown")
    assert any("changed since this page loaded it" in w.value for w in app.warning)


def test_opening_a_page_reads_again_what_is_older_than_the_ttl(page_env: Workspace) -> None:
    app = _open("traffic")
    reads = _reads(app)
    reads.ttl = 0.0  # everything read is stale at once
    before = _arm_requests(app)

    app.switch_page("app_pages/endpoints.py").run()

    assert not app.exception, app.exception
    assert _arm_requests(app) > before


@pytest.fixture(scope="module")
def far_workspace(
    emulator_factory: Callable[[str], RunningEmulator],
) -> RunningEmulator:
    """An emulator that answers ARM after 400 ms, as Azure does from afar; three endpoints
    without deployments (nothing to start)."""
    running = emulator_factory("far-arm")
    running.start(args=("--arm-latency-ms", "400"))
    ml = running.workspace().ml_client
    for i in range(3):
        ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name=f"far-{i}", auth_mode="key")
        ).result()
    return running


def test_a_page_opened_on_a_named_endpoint_reads_it_with_the_list_in_one_round_trip(
    far_workspace: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(far_workspace.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = "far-1"
    app.switch_page("app_pages/traffic.py")
    app.run()  # connects (a cached client for the process), then reads
    ws = _reads(app).ws
    _reads(app).invalidate()
    ws.arm_calls.reset_peak()
    before = ws.arm_calls.count.requests

    app.switch_page("app_pages/deployments.py").run()

    assert not app.exception, app.exception
    assert ws.arm_calls.count.requests == before + 2  # the endpoints, far-1's deployments
    assert ws.arm_calls.count.peak == 2  # both on the wire at once
    assert any(
        "far-1 has no deployments" in i.value or "no deployments" in i.value for i in app.info
    )
