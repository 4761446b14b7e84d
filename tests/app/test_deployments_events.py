"""The Deployments page's events and recent requests, read from the emulator's Log Analytics
query API with the real LogsQueryClient; and the Log Analytics setting of an Azure workspace."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest
from streamlit.testing.v1 import AppTest

from rollout import logs
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint, wait_until

pytestmark = pytest.mark.emulator

ENDPOINT = "events-page-ep"


@pytest.fixture(scope="module")
def seeded(
    emulator: RunningEmulator, workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("events-page"))
    ml = workspace.ml_client
    uri = ml.online_endpoints.get(ENDPOINT).scoring_uri
    key = ml.online_endpoints.get_keys(ENDPOINT).primary_key
    body = (REPO / "examples" / "sample-request.json").read_bytes()
    with httpx.Client(verify=workspace.verify, timeout=60) as http:
        for deployment in ("blue", "green", "green"):
            headers = {"Authorization": f"Bearer {key}", "azureml-model-deployment": deployment}
            headers["Content-Type"] = "application/json"
            assert http.post(uri, content=body, headers=headers).status_code == 200
    wait_until(lambda: len(logs.recent_requests(workspace, ENDPOINT)) >= 3, what="3 requests")
    return emulator


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "bluegreen"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)


def _page(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(state_dir))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("app_pages/deployments.py")
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    assert not app.exception, app.exception
    return app


def _frame(app: AppTest, column: str) -> object:
    return next(d.value for d in app.dataframe if column in d.value.columns)


def _captions(app: AppTest) -> str:
    return "\n".join(c.value for c in app.caption)


def test_the_events_tab_lists_each_instance_starting_and_becoming_ready(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _page(seeded.state_dir, monkeypatch)
    assert "Events and recent requests" in [h.value for h in app.subheader]
    events = _frame(app, "event")
    assert list(events.columns) == logs.EVENT_COLUMNS  # type: ignore[attr-defined]
    pairs = set(zip(events["deployment"], events["event"], strict=True))  # type: ignore[index]
    assert {("blue", "InstanceReady"), ("green", "InstanceReady")} <= pairs
    assert {("blue", "InstanceStarted"), ("green", "InstanceStarted")} <= pairs
    assert "No failures." in _captions(app)


def test_recent_requests_show_status_latency_and_deployment_and_filter_by_deployment(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _page(seeded.state_dir, monkeypatch)
    requests = _frame(app, "latency (ms)")
    assert list(requests.columns) == logs.REQUEST_COLUMNS  # type: ignore[attr-defined]
    assert sorted(requests["deployment"]) == ["blue", "green", "green"]  # type: ignore[index]
    assert set(requests["status"]) == {200}  # type: ignore[index]
    assert "3 newest: 0 failed" in _captions(app)
    app.selectbox(key=f"deployment_{ENDPOINT}").set_value("green").run()
    app.toggle(key=f"events_only_{ENDPOINT}").set_value(True).run()
    assert not app.exception, app.exception
    only = _frame(app, "latency (ms)")
    assert list(only["deployment"]) == ["green", "green"]  # type: ignore[index]
    assert set(_frame(app, "event")["deployment"]) == {"green"}  # type: ignore[index]


def test_a_restarted_instance_is_counted_and_listed_after_refresh(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _page(seeded.state_dir, monkeypatch)
    victim = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if "emulator.worker" in (cmd := p.info["cmdline"] or [])
        and f"{ENDPOINT}-green" in cmd[cmd.index("--socket") + 1]
    )
    victim.kill()
    workspace = seeded.workspace()
    wait_until(
        lambda: "InstanceRestarted" in set(logs.recent_events(workspace, ENDPOINT)["event"]),
        what="the restart event",
    )
    app.button(key="events_refresh").click().run()
    assert not app.exception, app.exception
    assert "1 restarted" in _captions(app)
    events = _frame(app, "event")
    restarted = events[events["event"] == "InstanceRestarted"]  # type: ignore[index]
    assert f"(pid {victim.pid}) exited" in restarted.iloc[0]["message"]


def test_an_azure_log_analytics_id_that_is_not_a_guid_is_refused_by_value(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _page(seeded.state_dir, monkeypatch)
    app.radio(key="workspace_choice").set_value("azure").run()
    form = app.sidebar
    form.text_input[0].input("00000000-0000-0000-0000-000000000001")
    form.text_input[1].input("rg")
    form.text_input[2].input("ws")
    form.text_input[3].input("my-log-workspace")
    form.button[0].click().run()
    assert "'my-log-workspace' is not a GUID" in "\n".join(e.value for e in app.error)
