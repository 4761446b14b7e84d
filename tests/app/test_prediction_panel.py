"""The Rollout page's prediction comparison against a real emulator: choosing the inputs,
a comparison run to completion (and recorded), an invalid JSON Lines upload, Cancel, and
the mirrored sample on a workspace that has none.

Uses its own endpoint `predict-page-ep` (blue = model-1 with all live traffic, green =
model-2 at 0%): the two models predict different numbers for the same rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rollout import plan_store
from rollout.promotion import Plan
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "predict-page-ep"


@pytest.fixture(scope="module")
def seeded(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp(ENDPOINT))
    return emulator


@pytest.fixture
def page_env(
    seeded: RunningEmulator, workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Workspace]:
    """The app pointed at the emulator, with an empty store of its own."""
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(seeded.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    st.cache_data.clear()
    yield workspace


def _open() -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/plan.py").run()
    assert not app.exception, app.exception
    return app


def _metric(app: AppTest, label: str) -> str | None:
    return next((str(m.value) for m in app.metric if m.label == label), None)


def _until_result(app: AppTest, timeout: float = 120.0) -> AppTest:
    """Rerun the page (as the progress fragment does) until the result is drawn."""
    deadline = time.monotonic() + timeout
    while _metric(app, "Agreement") is None:
        assert time.monotonic() < deadline, "the comparison did not finish"
        time.sleep(0.2)
        app.run()
        assert not app.exception, app.exception
    return app


def _jsonl(count: int) -> bytes:
    rows = ({"data": [[(i + j) % 7 for j in range(10)]]} for i in range(count))
    return "\n".join(json.dumps(r) for r in rows).encode()


def _table(app: AppTest, column: str) -> Any:
    """The first table with `column` (AppTest does not give a dataframe's key)."""
    return next(d.value for d in app.dataframe if column in d.value.columns)


def _text(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [c.value for c in app.caption]
    return "\n".join(parts + [w.value for w in app.warning] + [i.value for i in app.info])


def test_the_source_chosen_decides_which_inputs_are_asked_for(page_env: Workspace) -> None:
    app = _open()
    assert app.radio(key="predict_source").value == "sample"
    assert '"data"' in app.text_area(key="predict_sample").value
    assert not app.button(key="predict_compare").disabled

    app.radio(key="predict_source").set_value("jsonl").run()
    assert len(app.file_uploader) == 1 and not app.text_area
    assert app.button(key="predict_compare").disabled, "nothing to compare before an upload"

    app.radio(key="predict_source").set_value("mirrored").run()
    assert app.number_input(key="predict_top").value == 200
    assert not app.button(key="predict_compare").disabled


def test_blue_against_itself_on_the_sample_request_agrees_and_is_recorded(
    page_env: Workspace,
) -> None:
    app = _open()
    assert app.selectbox(key="predict_baseline").value == "blue"
    assert app.selectbox(key="predict_candidate").value == "green"
    app.selectbox(key="predict_candidate").set_value("blue").run()
    app.button(key="predict_compare").click().run()
    _until_result(app)
    assert _metric(app, "Agreement") == "100.0%"
    assert _metric(app, "Agreed") == "1 of 1"
    assert not app.error, [e.value for e in app.error]
    assert any("Every input both answered agrees" in s.value for s in app.success)

    (record,) = plan_store.list_comparisons(page_env.key, ENDPOINT)
    assert (record.baseline, record.candidate, record.source) == ("blue", "blue", "sample request")
    assert (record.compared, record.agreement, record.absolute_tolerance) == (1, 1.0, 1e-6)

    again = _open()  # the last result is kept per endpoint in the session only
    assert _metric(again, "Agreement") is None


def test_with_a_plan_the_plans_deployments_are_compared_on_an_uploaded_file(
    page_env: Workspace,
) -> None:
    plan_store.save_plan(Plan(ENDPOINT, "blue", "green", workspace=page_env.key))
    app = _open()
    assert not [s for s in app.selectbox if s.key == "predict_baseline"]
    assert "The plan's baseline **blue** and candidate **green**" in _text(app)
    app.radio(key="predict_source").set_value("jsonl").run()
    app.file_uploader[0].set_value(("rows.jsonl", _jsonl(3) + b"\n\n", "application/jsonl")).run()
    assert "rows.jsonl: 3 request bodies." in _text(app)
    app.button(key="predict_compare").click().run()
    _until_result(app)
    assert _metric(app, "Agreement") == "0.0%"
    assert _metric(app, "blue failed") == _metric(app, "green failed") == "0"
    table = _table(app, "kind")
    assert sorted(table["input"]) == [1, 2, 3]
    assert set(table["kind"]) == {"numeric"}
    assert list(_table(app, "answered")["answered"]) == [3, 3]
    assert app.get("plotly_chart"), "the histogram of differences"
    (record,) = plan_store.list_comparisons(page_env.key, ENDPOINT)
    assert (record.source, record.compared, record.agreed) == ("rows.jsonl", 3, 0)


def test_an_invalid_jsonl_upload_names_the_line_and_sends_nothing(page_env: Workspace) -> None:
    app = _open()
    app.radio(key="predict_source").set_value("jsonl").run()
    bad = b'{"data": [[1,2,3,4,5,6,7,8,9,10]]}\n\n{"data": [[1, 2]]\n'
    app.file_uploader[0].set_value(("bad.jsonl", bad, "application/jsonl")).run()
    errors = [e.value for e in app.error]
    assert any("line 3 of bad.jsonl is not JSON: Expecting ',' delimiter" in e for e in errors)
    assert app.button(key="predict_compare").disabled


def test_cancel_stops_the_comparison_and_shows_what_finished(page_env: Workspace) -> None:
    app = _open()
    app.radio(key="predict_source").set_value("jsonl").run()
    app.file_uploader[0].set_value(("many.jsonl", _jsonl(1000), "application/jsonl")).run()
    app.button(key="predict_compare").click().run()
    assert app.button(key="predict_compare").disabled, "one comparison at a time"
    app.button(key="predict_cancel").click().run()
    _until_result(app)
    warning = next(w.value for w in app.warning if "cancelled after" in w.value)
    assert warning.endswith(" of 1,000.")
    (record,) = plan_store.list_comparisons(page_env.key, ENDPOINT)
    assert record.cancelled and record.compared < 1000 and record.planned == 1000


def test_the_mirrored_sample_compares_the_answers_the_emulator_kept(page_env: Workspace) -> None:
    from rollout.changes import begin_set_traffic
    from rollout.endpoints import get_endpoint, scoring_credential
    from rollout.invoke import invoke

    begin_set_traffic(
        page_env, ENDPOINT, traffic={"blue": 100, "green": 0}, mirror={"green": 50}
    ).result(timeout=120)
    try:
        endpoint = get_endpoint(page_env, ENDPOINT)
        key = scoring_credential(page_env, ENDPOINT)
        for i in range(6):  # one at a time: green takes 2 pending, a copy may not be dropped
            answer = invoke(page_env, endpoint.scoring_uri, key, _jsonl(i + 1).splitlines()[-1])
            assert answer.status == 200, answer
            time.sleep(0.3)
    finally:
        begin_set_traffic(page_env, ENDPOINT, traffic={"blue": 100, "green": 0}, mirror={}).result(
            timeout=120
        )
    app = _open()
    app.radio(key="predict_source").set_value("mirrored").run()
    app.button(key="predict_compare").click().run()
    _until_result(app)
    # 50% of 6 live requests were mirrored; blue (live) and green (mirror) answer apart
    assert _metric(app, "Agreement") == "0.0%"
    (record,) = plan_store.list_comparisons(page_env.key, ENDPOINT)
    assert record.compared == 3 and record.agreed == 0
    assert "mirrored" in record.source


def _panel_on_azure() -> None:
    from components.prediction_panel import prediction_panel
    from rollout.endpoints import DeploymentView, EndpointView
    from rollout.workspace import Workspace

    ws = Workspace("azure", "sub", "rg", "ws", ml_client=None, credential=None)  # type: ignore[arg-type]
    deployments = tuple(
        DeploymentView(name, "Succeeded", "model:1", "Standard_DS3_v2", 1, live, 0, 5000, 1)
        for name, live in (("blue", 100), ("green", 0))
    )
    endpoint = EndpointView(
        "my-endpoint", "Succeeded", "key", "https://x", {"blue": 100}, {}, deployments
    )
    prediction_panel(ws, endpoint)


def test_the_mirrored_sample_on_azure_says_why_it_is_unavailable() -> None:
    app = AppTest.from_function(_panel_on_azure, default_timeout=30)
    app.run()
    app.radio(key="predict_source").set_value("mirrored").run()
    assert not app.exception, app.exception
    assert any(
        "Only the local emulator keeps the requests it mirrored" in i.value for i in app.info
    )
    assert app.button(key="predict_compare").disabled
    assert "predict_top" not in [n.key for n in app.number_input]
