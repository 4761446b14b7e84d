"""The dashboard renders the emulator's endpoints (AppTest against a real emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.workspace import NOT_CONNECTED
from tests.conftest import REPO, RunningEmulator

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def seeded(emulator: RunningEmulator, examples: Path) -> RunningEmulator:
    from emulator.apply import apply_file

    apply_file(emulator.state_dir, examples / "endpoint.yml", if_missing=True)
    apply_file(
        emulator.state_dir, examples / "blue-deployment.yml", all_traffic=True, if_missing=True
    )
    return emulator


def test_endpoints_page_lists_the_sample_endpoint_and_its_deployment(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(seeded.state_dir))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    assert [h.value for h in app.subheader if h.value.startswith("my-endpoint")]
    frames = [df.value for df in app.dataframe]
    blue = [f for f in frames if "blue" in list(f["deployment"])]
    assert blue, frames
    row = blue[0].set_index("deployment").loc["blue"]
    assert row["live %"] == 100
    assert row["state"] == "Succeeded"
    assert row["model"] == "model-1:1"


def test_choosing_azure_ml_shows_neither_the_emulator_as_connected_nor_its_data(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(seeded.state_dir))
    monkeypatch.chdir(tmp_path)  # no config.json or secrets to connect to Azure with
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    app.run()
    assert any("local emulator" in s.value for s in app.sidebar.success)
    app.sidebar.radio(key="workspace_choice").set_value("azure").run()
    assert not app.exception, app.exception
    assert not [s.value for s in app.success], "nothing may say it is connected"
    assert not app.dataframe, "no endpoint of the emulator may be shown"
    assert not [h.value for h in app.subheader if h.value.startswith("my-endpoint")]
    assert any(i.value == NOT_CONNECTED for i in app.main.info), [i.value for i in app.info]
    assert any(i.value == NOT_CONNECTED for i in app.sidebar.info)
    assert not [c.value for c in app.sidebar.caption if "Subscription" in c.value]

    app.sidebar.radio(key="workspace_choice").set_value("emulator").run()
    assert any("local emulator" in s.value for s in app.sidebar.success)
    assert app.dataframe
