"""Racing changes to one endpoint's traffic: exactly one lands, the other is refused.

Two dashboard sessions, two threads calling rollout directly, and a change someone else
makes through the REST API between the dashboard's read and its write (caught by the
If-Match the dashboard sends, not by its compare). Uses its own endpoint, `race-ep`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from streamlit.testing.v1 import AppTest

from components.traffic_editor import EditorKeys, apply_change
from rollout import history
from rollout.changes import Operation, begin_scale, begin_set_traffic
from rollout.errors import Conflict, RolloutError
from rollout.traffic_change import Outcome, TrafficState
from rollout.workspace import Workspace, connect_emulator
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "race-ep"
ROUNDS = 10


@pytest.fixture(scope="module")
def race_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("race-ep"))
    return emulator


@pytest.fixture
def start(race_ep: RunningEmulator, workspace: Workspace) -> Workspace:
    """Blue 100%, no mirror."""
    begin_set_traffic(workspace, ENDPOINT, traffic={"blue": 100, "green": 0}, mirror={}).result(
        timeout=120
    )
    return workspace


def _live(ws: Workspace) -> dict[str, int]:
    entity = ws.ml_client.online_endpoints.get(ENDPOINT)
    return {k: int(v) for k, v in (entity.traffic or {}).items() if int(v)}


def _endpoint_url(ws: Workspace) -> str:
    assert ws.facts is not None
    return ws.facts.arm_url.rstrip("/") + ws.resource_path(ENDPOINT)


def _raw_tag_green(ws: Workspace, tags: dict[str, str]) -> None:
    """Someone else changes deployment green with plain REST (its tags: no restart)."""
    assert ws.facts is not None
    headers = {"Authorization": f"Bearer {ws.facts.token}"}
    params = {"api-version": "2023-04-01-preview"}
    url = ws.facts.arm_url.rstrip("/") + ws.resource_path(ENDPOINT, "green")
    verify = ws.facts.ca_cert
    doc = httpx.get(url, params=params, headers=headers, verify=verify, timeout=30).json()
    body = {k: doc[k] for k in ("location", "kind", "sku")}
    body["tags"], body["properties"] = tags, doc["properties"]
    response = httpx.put(url, params=params, headers=headers, json=body, verify=verify, timeout=30)
    assert response.status_code == 200, response.text


def _settled_green(ws: Workspace) -> Any:
    deadline = time.monotonic() + 120
    while True:
        green = ws.ml_client.online_deployments.get("green", ENDPOINT)
        if green.provisioning_state in ("Succeeded", "Failed") or time.monotonic() > deadline:
            assert green.provisioning_state == "Succeeded"
            return green
        time.sleep(0.2)


def _raw_set_live(ws: Workspace, traffic: dict[str, int]) -> None:
    """Someone else changes the traffic with plain REST, as curl or the portal would."""
    assert ws.facts is not None
    headers = {"Authorization": f"Bearer {ws.facts.token}"}
    params = {"api-version": "2022-02-01-preview"}
    url, verify = _endpoint_url(ws), ws.facts.ca_cert
    doc = httpx.get(url, params=params, headers=headers, verify=verify, timeout=30).json()
    body = {k: doc[k] for k in ("location", "kind", "tags")}
    body["properties"] = {**doc["properties"], "traffic": traffic}
    response = httpx.put(url, params=params, headers=headers, json=body, verify=verify, timeout=30)
    assert response.status_code == 200, response.text


class _ChangeAfterFirstRead(SansIOHTTPPolicy[Any, Any]):
    """After the dashboard's first GET of a resource, someone else changes it."""

    def __init__(
        self, change: Callable[[], None], path: str = f"/onlineendpoints/{ENDPOINT}"
    ) -> None:
        self.change: Callable[[], None] | None = change
        self.path = path.lower()

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        http = request.http_request
        if (
            self.change is not None
            and http.method == "GET"
            and http.url.split("?")[0].lower().endswith(self.path)
        ):
            change, self.change = self.change, None
            change()


class _NoETags(SansIOHTTPPolicy[Any, Any]):
    """The service as it may be on Azure: no ETag on online endpoints."""

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        response.http_response.headers.pop("ETag", None)


def test_a_change_between_the_read_and_the_put_is_refused_by_if_match(
    start: Workspace, race_ep: RunningEmulator
) -> None:
    policy = _ChangeAfterFirstRead(lambda: _raw_set_live(start, {"blue": 50, "green": 50}))
    ws = connect_emulator(facts=race_ep.facts, per_call_policies=[policy])

    with pytest.raises(Conflict) as refused:
        begin_set_traffic(
            ws,
            ENDPOINT,
            traffic={"blue": 90, "green": 10},
            mirror={},
            expected_traffic={"blue": 100, "green": 0},
            expected_mirror={},
        )

    assert policy.change is None, "the other change was made after the dashboard's read"
    message = str(refused.value)
    # the 412 path (the compare saw blue 100% and let the PUT go)
    assert "another change reached the service while this one was being sent" in message
    assert "it is now live blue 50%, green 50%" in message
    assert "Nothing was changed" in message
    assert _live(start) == {"blue": 50, "green": 50}


def test_a_deployment_change_between_the_read_and_the_scale_is_refused_by_if_match(
    start: Workspace, race_ep: RunningEmulator
) -> None:
    _settled_green(start)
    policy = _ChangeAfterFirstRead(
        lambda: _raw_tag_green(start, {"changed-by": "someone-else"}),
        path=f"/onlineendpoints/{ENDPOINT}/deployments/green",
    )
    ws = connect_emulator(facts=race_ep.facts, per_call_policies=[policy])

    with pytest.raises(Conflict) as refused:
        begin_scale(ws, ENDPOINT, "green", 2)

    assert policy.change is None
    assert "deployment 'green' of 'race-ep' changed while it was being scaled" in str(refused.value)
    assert "Nothing was changed" in str(refused.value)
    green = _settled_green(start)
    assert green.instance_count == 1
    assert green.tags == {"changed-by": "someone-else"}


@pytest.mark.parametrize("etags", [True, False], ids=["with-etags", "without-etags"])
def test_two_threads_from_the_same_state_never_lose_an_update(
    start: Workspace, race_ep: RunningEmulator, etags: bool
) -> None:
    # Without ETags only this process's lock and the fresh compare stand in the way.
    ws = start if etags else connect_emulator(facts=race_ep.facts, per_call_policies=[_NoETags()])
    splits = [{"blue": 100 - x, "green": x} for x in (10, 20, 30, 40, 50, 60, 70, 80, 90, 0)]
    state = {"blue": 100, "green": 0}
    for round_ in range(ROUNDS):
        targets = [splits[round_], splits[(round_ + 3) % len(splits)]]
        barrier = threading.Barrier(2)
        outcomes: list[Operation | Exception | None] = [None, None]

        def apply(
            i: int,
            target: dict[str, int],
            expected: dict[str, int],
            barrier: threading.Barrier,
            outcomes: list[Operation | Exception | None],
        ) -> None:
            barrier.wait()
            try:
                outcomes[i] = begin_set_traffic(
                    ws,
                    ENDPOINT,
                    traffic=target,
                    mirror={},
                    expected_traffic=expected,
                    expected_mirror={},
                )
            except RolloutError as exc:
                outcomes[i] = exc

        threads = [
            threading.Thread(target=apply, args=(i, targets[i], state, barrier, outcomes))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        applied = [i for i, o in enumerate(outcomes) if isinstance(o, Operation)]
        refused = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(applied) == 1 and len(refused) == 1, f"round {round_}: {outcomes}"
        winner = outcomes[applied[0]]
        assert isinstance(winner, Operation)
        winner.result(timeout=120)
        state = targets[applied[0]]
        assert _live(ws) == {k: v for k, v in state.items() if v}, f"round {round_}"
        assert "changed since this page loaded it" in str(refused[0])


def _open(ws: Workspace) -> tuple[AppTest, EditorKeys]:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/traffic.py").run()
    assert not app.exception, app.exception
    return app, EditorKeys.of(ws.key, ENDPOINT)


@pytest.fixture
def page_env(
    start: Workspace,
    race_ep: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(race_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    yield start


def _prepare(app: AppTest, keys: EditorKeys, split: dict[str, int]) -> None:
    """Move the sliders to `split` and open the confirmation dialog."""
    for name, value in split.items():
        app.slider(key=keys.live(name)).set_value(value)
    app.run()
    app.button(key=keys.apply).click().run()
    assert not app.exception, app.exception


def _confirm(app: AppTest) -> None:
    app.button(key="traffic_confirm").click().run()
    assert not app.exception, app.exception


def _outcomes(ws: Workspace) -> list[str]:
    changes = history.list_changes(workspace=ws.key, endpoint=ENDPOINT)
    return sorted(c.outcome.split(":")[0] for c in changes)


def test_two_sessions_from_the_same_state_land_one_change_and_refuse_the_other(
    page_env: Workspace,
) -> None:
    (first, first_keys), (second, second_keys) = _open(page_env), _open(page_env)
    _prepare(first, first_keys, {"blue": 90, "green": 10})
    _prepare(second, second_keys, {"blue": 50, "green": 50})

    _confirm(first)
    _confirm(second)

    assert _live(page_env) == {"blue": 90, "green": 10}
    assert any("Traffic of race-ep is now" in s.value for s in first.success)
    warnings = "\n".join(w.value for w in second.warning)
    assert "Not applied: the traffic of 'race-ep' changed since this page loaded it" in warnings
    assert "it is now live blue 90%, green 10%" in warnings
    assert _outcomes(page_env) == ["Failed", "Succeeded"]


def test_a_session_and_another_applying_at_once_land_exactly_one_change(
    page_env: Workspace,
) -> None:
    """A dashboard session confirms while another session's apply (the code its Confirm
    runs) goes at the same moment from another thread. Streamlit's AppTest keeps one
    runtime per process, so two AppTest runs cannot overlap; the second session is
    apply_change on a thread of its own, as Streamlit runs each session's script."""
    app, keys = _open(page_env)
    mine = {"blue": 90, "green": 10}
    theirs = {"blue": 50, "green": 50}
    _prepare(app, keys, mine)
    loaded = TrafficState.build(ENDPOINT, ["blue", "green"], {"blue": 100, "green": 0}, {})
    after = TrafficState.build(ENDPOINT, ["blue", "green"], theirs, {})
    barrier = threading.Barrier(2)
    other: list[Outcome] = []

    def other_session() -> None:
        barrier.wait()
        other.append(apply_change(page_env, loaded, after, reason="the other session"))

    thread = threading.Thread(target=other_session)
    thread.start()
    barrier.wait()
    _confirm(app)
    thread.join(180)

    (outcome,) = other
    live = _live(page_env)
    assert live in (mine, theirs), f"traffic in force is {live}"
    assert _outcomes(page_env) == ["Failed", "Succeeded"]
    if live == mine:
        assert any("Traffic of race-ep is now" in s.value for s in app.success)
        assert outcome.kind == "conflict"
        assert "changed since this page loaded it" in outcome.message
    else:
        assert outcome.kind == "succeeded"
        warnings = "\n".join(w.value for w in app.warning)
        assert "Not applied: the traffic of 'race-ep' changed since this page loaded" in warnings
