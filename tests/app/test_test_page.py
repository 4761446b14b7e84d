"""The Test page sends requests to a real emulator: one, one per deployment, and bursts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rollout.changes import begin_set_traffic
from rollout.endpoints import get_logs
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "testpage-ep"
BLUE_ANSWER = [10980.66, 4459.33]
GREEN_ANSWER = [4952.82, 3830.04]


@pytest.fixture(scope="module")
def seeded(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    """Endpoint `testpage-ep`: blue (model-1) with all live traffic, green (model-2) at 0%."""
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("testpage-yaml"))
    return emulator


@pytest.fixture
def page(seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(seeded.state_dir))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("app_pages/test.py")
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    assert not app.exception, app.exception
    return app


@pytest.fixture
def ninety_ten(workspace: Workspace, seeded: RunningEmulator) -> Iterator[None]:
    """Live traffic blue 90 / green 10 for one test, then back to blue 100."""
    begin_set_traffic(workspace, ENDPOINT, traffic={"blue": 90, "green": 10}, mirror={}).result(
        timeout=120
    )
    yield
    begin_set_traffic(workspace, ENDPOINT, traffic={"blue": 100, "green": 0}, mirror={}).result(
        timeout=120
    )


def _metric(app: AppTest, label: str) -> str:
    return next(str(m.value) for m in app.metric if m.label == label)


def _numbers(text: str) -> list[float]:
    import json

    return [float(v) for v in json.loads(text)]


def _requests_received(ws: Workspace) -> int:
    return sum(
        get_logs(ws, ENDPOINT, name, lines=2000).count("request received")
        for name in ("blue", "green")
    )


def test_the_request_editor_is_preloaded_with_the_sample_request(page: AppTest) -> None:
    sample = (REPO / "examples" / "sample-request.json").read_text()
    assert page.text_area(key="invoke_request").value == sample
    target = page.selectbox(key=f"invoke_target_{ENDPOINT}")
    assert target.options[0].startswith("the endpoint, routed by its traffic (blue 100%)")
    assert [o for o in target.options if "green" in o]


def test_invalid_json_shows_where_it_is_wrong_and_sends_nothing(
    page: AppTest, workspace: Workspace
) -> None:
    before = _requests_received(workspace)
    page.text_area(key="invoke_request").input('{"data": [[1, 2, 3]')
    page.button(key="invoke_send").click().run()
    assert not page.exception, page.exception
    errors = [e.value for e in page.error]
    assert any("not valid JSON" in e and "line 1, column" in e for e in errors), errors
    assert not [m for m in page.metric if m.label == "Served by"]
    assert _requests_received(workspace) == before


def test_a_request_to_the_endpoint_is_served_by_the_live_deployment(page: AppTest) -> None:
    page.button(key="invoke_send").click().run()
    assert not page.exception, page.exception
    assert _metric(page, "Status") == "200"
    assert _metric(page, "Served by") == "blue"
    assert _numbers(page.code[0].value) == pytest.approx(BLUE_ANSWER, abs=0.01)


def test_a_request_to_one_deployment_is_served_by_it(page: AppTest) -> None:
    page.selectbox(key=f"invoke_target_{ENDPOINT}").set_value("green").run()
    page.button(key="invoke_send").click().run()
    assert not page.exception, page.exception
    assert _metric(page, "Served by") == "green"
    assert _numbers(page.code[0].value) == pytest.approx(GREEN_ANSWER, abs=0.01)
    captions = " ".join(c.value for c in page.caption)
    assert "••••" in captions  # the key is shown masked, if at all


def test_send_to_every_deployment_shows_both_answers_and_marks_differences(
    page: AppTest,
) -> None:
    page.button(key="invoke_each").click().run()
    assert not page.exception, page.exception
    assert any("Answers differ from 'blue'" in w.value for w in page.warning)
    marks = [m.value for m in page.markdown]
    assert ":blue-badge[reference]" in marks
    assert any(m.startswith(":orange-badge[differs from blue]") for m in marks), marks
    bodies = [_numbers(c.value) for c in page.code]
    assert bodies[0] == pytest.approx(BLUE_ANSWER, abs=0.01)
    assert bodies[1] == pytest.approx(GREEN_ANSWER, abs=0.01)
    table = next(df.value for df in page.dataframe if "green" in df.value.columns)
    assert list(table.columns) == ["blue", "green"]
    assert float(table.loc["body[0]", "blue"]) == pytest.approx(BLUE_ANSWER[0], abs=0.01)
    assert float(table.loc["body[0]", "green"]) == pytest.approx(GREEN_ANSWER[0], abs=0.01)


def test_a_routed_burst_is_counted_per_deployment_against_the_split(
    ninety_ten: None, page: AppTest
) -> None:
    page.number_input(key="burst_count").set_value(40)
    page.number_input(key="burst_concurrency").set_value(2)
    page.button(key="invoke_burst").click().run()
    assert not page.exception, page.exception
    shares = next(df.value for df in page.dataframe if "served" in df.value.columns)
    shares = shares.set_index("deployment")
    assert shares["served"].sum() == 40
    assert shares.loc["blue", "configured %"] == 90
    assert shares.loc["green", "configured %"] == 10
    assert shares.loc["blue", "served"] > shares.loc["green", "served"]
    statuses = next(df.value for df in page.dataframe if "status" in df.value.columns)
    assert dict(zip(statuses["status"], statuses["count"], strict=True)) == {200: 40}
    assert _metric(page, "Requests") == "40"
    assert _metric(page, "p95 latency").endswith("ms")


def test_a_burst_to_one_deployment_goes_only_there(page: AppTest) -> None:
    page.number_input(key="burst_count").set_value(10)
    page.selectbox(key=f"burst_target_{ENDPOINT}").set_value("green").run()
    page.button(key="invoke_burst").click().run()
    assert not page.exception, page.exception
    shares = next(df.value for df in page.dataframe if "served" in df.value.columns)
    assert shares.set_index("deployment")["served"].to_dict() == {"green": 10}
