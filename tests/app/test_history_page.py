"""The History page against a real emulator: the audit log newest first with who, before and
after; a change made outside the dashboard noticed; Undo of a traffic change, confirmed and
read back; an undo that can no longer apply refused with its reason; the review report
built when asked and offered as an HTML file.

Uses its own endpoint, `history-ep` (blue with all live traffic, green at 0%).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from rollout import history
from rollout.changes import begin_set_traffic
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "history-ep"


@pytest.fixture(scope="module")
def history_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("history-ep"))
    return emulator


@pytest.fixture
def page_env(
    history_ep: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(history_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    _set_traffic(workspace, {"blue": 100, "green": 0})
    st.cache_data.clear()
    yield workspace
    _set_traffic(workspace, {"blue": 100, "green": 0})


def _set_traffic(
    ws: Workspace, traffic: dict[str, int], mirror: dict[str, int] | None = None
) -> None:
    begin_set_traffic(ws, ENDPOINT, traffic=traffic, mirror=mirror or {}).result(timeout=120)


def _traffic(ws: Workspace) -> dict[str, int]:
    entity = ws.ml_client.online_endpoints.get(ENDPOINT)
    return {k: int(v) for k, v in (entity.traffic or {}).items() if int(v)}


def _open() -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/history.py").run()
    assert not app.exception, app.exception
    return app


def _record_traffic(ws: Workspace, before: dict[str, int], after: dict[str, int]) -> history.Change:
    """A traffic change as the dashboard makes it: applied, then written to the log."""
    _set_traffic(ws, after)
    return history.record(
        workspace=ws.key, endpoint=ENDPOINT, action="traffic",
        before={"traffic": before, "mirror": {}}, after={"traffic": after, "mirror": {}},
        reason="step 1", who=ws.who(), duration_s=1.5,
    )  # fmt: skip


def test_the_log_is_listed_newest_first_with_who_before_and_after(page_env: Workspace) -> None:
    _record_traffic(page_env, {"blue": 100, "green": 0}, {"blue": 90, "green": 10})
    _record_traffic(page_env, {"blue": 90, "green": 10}, {"blue": 50, "green": 50})
    app = _open()
    (table,) = app.dataframe
    rows = table.value.to_dict("records")
    assert [r["after"] for r in rows] == [
        "live blue 50%, green 50% · mirror none",
        "live blue 90%, green 10% · mirror none",
    ]
    first = rows[0]
    assert (first["who"], first["endpoint"], first["what"]) == (
        getpass.getuser(),
        ENDPOINT,
        "traffic",
    )
    assert (first["reason"], first["outcome"], first["took"]) == ("step 1", "Succeeded", "1.5 s")


def test_a_change_made_outside_the_dashboard_is_noticed(page_env: Workspace) -> None:
    _open()  # the page sees blue 100%
    _set_traffic(page_env, {"blue": 80, "green": 20})  # as the CLI would: no entry
    app = _open()
    warned = "\n".join(str(w.value) for w in app.warning)
    assert f"Traffic of {ENDPOINT} changed outside the dashboard between" in warned, warned
    (table,) = app.dataframe
    (row,) = [r for r in table.value.to_dict("records") if r["who"] == "outside the dashboard"]
    assert row["before"].startswith("live blue 100%")
    assert row["after"].startswith("live blue 80%, green 20%")


def test_undo_of_a_traffic_change_restores_it_and_is_logged_as_an_undo(page_env: Workspace) -> None:
    change = _record_traffic(page_env, {"blue": 100, "green": 0}, {"blue": 90, "green": 10})
    app = _open()
    app.selectbox(key="history_undo_entry").set_value(change.id).run()
    undo = app.button(key="history_undo")
    assert not undo.disabled
    assert undo.label == f"Undo #{change.id}: set {ENDPOINT} to live blue 100% · mirror none…"
    undo.click().run()
    app.text_input(key="history_undo_reason").input("green answers slowly").run()
    app.button(key="history_undo_confirm").click().run()
    assert not app.exception, app.exception
    assert _traffic(page_env) == {"blue": 100}
    latest = history.list_changes(workspace=page_env.key, endpoint=ENDPOINT, newest_first=True)[0]
    assert (latest.undo_of, latest.reason, latest.succeeded) == (
        change.id,
        "green answers slowly",
        True,
    )
    assert latest.duration_s is not None and latest.duration_s > 0
    assert any("is now live blue 100%" in str(s.value) for s in app.success)


def test_an_undo_that_can_no_longer_apply_is_refused_with_its_reason(page_env: Workspace) -> None:
    gone = history.record(
        workspace=page_env.key, endpoint=ENDPOINT, action="traffic",
        before={"traffic": {"blue": 50, "retired": 50}, "mirror": {}},
        after={"traffic": {"blue": 100}, "mirror": {}},
    )  # fmt: skip
    app = _open()
    app.selectbox(key="history_undo_entry").set_value(gone.id).run()
    assert app.button(key="history_undo").disabled
    said = "\n".join(c.value for c in app.caption)
    assert f"#{gone.id} cannot be undone: it would give traffic to 'retired'" in said, said
    assert _traffic(page_env) == {"blue": 100}


def test_build_report_offers_the_html_file_of_the_endpoint_to_download(
    page_env: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_traffic(page_env, {"blue": 100, "green": 0}, {"blue": 90, "green": 10})
    served: list[tuple[bytes, str, str | None]] = []
    add = MediaFileManager.add

    def keep(self: MediaFileManager, data: bytes, mimetype: str, *args: Any, **kw: Any) -> str:
        served.append((data, mimetype, kw.get("file_name")))
        return add(self, data, mimetype, *args, **kw)

    monkeypatch.setattr(MediaFileManager, "add", keep)
    app = _open()
    assert app.selectbox(key="report_endpoint").value == ENDPOINT  # the latest entry's
    assert not app.get("download_button")  # nothing is read before it is asked for
    app.button(key="history_report_build").click().run()
    assert not app.exception, app.exception
    (download,) = app.get("download_button")
    assert download.label.startswith(f"Download bluegreen-report-{ENDPOINT}-")
    (data, mimetype, file_name) = served[-1]
    assert mimetype == "text/html" and file_name == download.label.removeprefix("Download ")
    html = data.decode()
    assert html.startswith("<!DOCTYPE html>")
    assert f"<title>Rollout review: {ENDPOINT}</title>" in html
    assert "live blue 90%, green 10% · mirror none" in html and "step 1" in html
    assert html.count("Plotly.newPlot(") == 3
