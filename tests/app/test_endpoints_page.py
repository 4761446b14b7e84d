"""The dashboard renders the emulator's endpoints (AppTest against a real emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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
