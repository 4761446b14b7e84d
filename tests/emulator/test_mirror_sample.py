"""The emulator's mirror sample: the last mirrored requests with both answers, read through
`rollout.mirrored.read_mirrored` and the emulator-only route `{endpoint}/mirroredRequests`.

Most tests share the session emulator and an endpoint of their own (the tutorial's blue and
green, with their real models); the bound and the --mirror-sample flag use an emulator of
their own with a sample of 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import CodeConfiguration

from emulator import server
from emulator.apply import register_local_assets
from rollout.errors import NotFound, RolloutError
from rollout.mirrored import MirroredRequest, read_mirrored
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint, wait_until

pytestmark = pytest.mark.emulator

ENDPOINT = "mirror-sample-ep"
FIXTURES = Path(__file__).parent / "fixtures"


def _set_traffic(ws: Workspace, endpoint: str, mirror: dict[str, int]) -> None:
    ml = ws.ml_client
    entity = ml.online_endpoints.get(endpoint)
    entity.traffic = {"blue": 100}
    entity.mirror_traffic = mirror
    ml.online_endpoints.begin_create_or_update(entity).result()


class Scorer:
    """Scoring requests to one endpoint, as its clients send them."""

    def __init__(self, ws: Workspace, endpoint: str) -> None:
        ml = ws.ml_client
        self.uri = ml.online_endpoints.get(endpoint).scoring_uri
        self.key = ml.online_endpoints.get_keys(endpoint).primary_key
        self.http = httpx.Client(verify=ws.verify, timeout=60)

    def score(self, body: bytes, *, deployment: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        return self.http.post(self.uri, content=body, headers=headers)


def _request(i: int) -> bytes:
    return json.dumps({"data": [[i, 2, 3, 4, 5, 6, 7, 8, 9, 10 + i]]}).encode()


def _at_least(ws: Workspace, endpoint: str, count: int) -> list[MirroredRequest]:
    """The sample once it has `count` entries (the mirror may answer after the client)."""
    return wait_until(
        lambda: (got := read_mirrored(ws, endpoint)) and len(got) >= count and got,
        what=f"{count} mirrored requests of {endpoint}",
    )


def _mirrored_pairs(
    scorer: Scorer,
    ws: Workspace,
    endpoint: str,
    count: int,
    *,
    body: Callable[[int], bytes] = _request,
    start: int = 0,
) -> list[tuple[bytes, httpx.Response]]:
    """`count` pairs of live requests; with 50% mirrored, the second of each pair is copied.

    Each pair waits for the entry of the one before: a mirror target with its 2 pending
    requests (2 x max_concurrent_requests_per_instance x instance_count) drops copies,
    which the sample rightly never keeps.
    """
    sent = []
    for i in range(start, start + count):
        assert scorer.score(body(2 * i)).status_code == 200
        mirrored = body(2 * i + 1)
        response = scorer.score(mirrored)
        assert response.status_code == 200
        wait_until(
            lambda m=mirrored: (
                (got := read_mirrored(ws, endpoint, top=1)) and got[0].body.encode() == m
            ),
            what=f"the mirrored request {mirrored!r}",
        )
        sent.append((mirrored, response))
    return sent


@pytest.fixture(scope="module")
def sampled(
    emulator: RunningEmulator, workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scorer]:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("mirror-sample-ep"))
    _set_traffic(workspace, ENDPOINT, {"green": 50})
    scorer = Scorer(workspace, ENDPOINT)
    yield scorer
    scorer.http.close()


def test_mirrored_requests_are_kept_with_both_models_real_answers(
    sampled: Scorer, workspace: Workspace
) -> None:
    sent = _mirrored_pairs(sampled, workspace, ENDPOINT, 3)
    got = read_mirrored(workspace, ENDPOINT)[:3]
    assert [g.body.encode() for g in got] == [b for b, _ in reversed(sent)]  # newest first
    live = dict(sent)
    for entry in got:
        body = entry.body.encode()
        assert entry.live.deployment == "blue" and entry.mirror.deployment == "green"
        assert entry.live.status == entry.mirror.status == 200
        assert entry.live.latency_ms > 0 and entry.mirror.latency_ms > 0
        # The client's answer, and the answer green gives to the same input when asked.
        assert entry.live.body == live[body].text  # what the client got
        assert entry.mirror.body == sampled.score(body, deployment="green").text
        assert entry.live.body != entry.mirror.body  # model-1 and model-2 predict differently
        assert timedelta(0) <= datetime.now(UTC) - entry.time < timedelta(minutes=5)
        assert entry.time.tzinfo is not None


def test_requests_with_the_deployment_header_are_not_kept(
    sampled: Scorer, workspace: Workspace
) -> None:
    before = read_mirrored(workspace, ENDPOINT)
    for i in range(4):
        assert sampled.score(_request(100 + i), deployment="blue").status_code == 200
        assert sampled.score(_request(200 + i), deployment="green").status_code == 200
    assert read_mirrored(workspace, ENDPOINT) == before


def test_top_reads_only_the_newest(sampled: Scorer, workspace: Workspace) -> None:
    _mirrored_pairs(sampled, workspace, ENDPOINT, 2, start=150)
    everything = _at_least(workspace, ENDPOINT, 2)
    assert read_mirrored(workspace, ENDPOINT, top=2) == everything[:2]
    assert read_mirrored(workspace, ENDPOINT, top=0) == []


def _route(ws: Workspace, endpoint: str) -> str:
    assert ws.facts is not None
    return ws.facts.arm_url + ws.resource_path(endpoint) + "/mirroredRequests"


def test_the_route_refuses_without_the_arm_token(sampled: Scorer, workspace: Workspace) -> None:
    url = _route(workspace, ENDPOINT)
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        answer = httpx.get(
            url, params={"api-version": "2023-04-01"}, headers=headers, verify=workspace.verify
        )
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "AuthenticationFailed"


@pytest.mark.parametrize("top", ["abc", "-1", "2.5", ""])
def test_the_route_refuses_a_bad_top_naming_it(
    sampled: Scorer, workspace: Workspace, top: str
) -> None:
    assert workspace.facts is not None
    answer = httpx.get(
        _route(workspace, ENDPOINT),
        params={"api-version": "2023-04-01", "top": top},
        headers={"Authorization": f"Bearer {workspace.facts.token}"},
        verify=workspace.verify,
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "BadArgument"
    assert repr(top) in error["message"] and "top" in error["message"]


def test_the_route_answers_the_documented_shape(sampled: Scorer, workspace: Workspace) -> None:
    assert workspace.facts is not None
    _mirrored_pairs(sampled, workspace, ENDPOINT, 1, start=200)
    answer = httpx.get(
        _route(workspace, ENDPOINT),
        params={"api-version": "2023-04-01-preview"},
        headers={"Authorization": f"Bearer {workspace.facts.token}"},
        verify=workspace.verify,
    )
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["capacity"] == 200 and doc["skipped"] == 0
    first = doc["value"][0]
    assert set(first) == {"time", "request", "live", "mirror"}
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-02T03:00:00.123Z")
    assert set(first["live"]) == {"deployment", "statusCode", "latencyMs", "response"}


def _skipped(ws: Workspace, endpoint: str) -> int:
    assert ws.facts is not None
    answer = httpx.get(
        _route(ws, endpoint),
        params={"api-version": "2023-04-01"},
        headers={"Authorization": f"Bearer {ws.facts.token}"},
        verify=ws.verify,
    )
    answer.raise_for_status()
    return int(answer.json()["skipped"])


def test_a_request_over_64_kib_is_not_kept_but_counted(
    sampled: Scorer, workspace: Workspace
) -> None:
    before = read_mirrored(workspace, ENDPOINT)
    skipped = _skipped(workspace, ENDPOINT)
    big = json.dumps({"data": [[1] * 10], "pad": "x" * 2**16}).encode()
    for _ in range(2):  # one of the two is mirrored, whatever the phase of the 50%
        sampled.score(big)
    wait_until(lambda: _skipped(workspace, ENDPOINT) == skipped + 1, what="one more skipped")
    assert read_mirrored(workspace, ENDPOINT) == before


def test_an_unknown_endpoint_is_not_found(workspace: Workspace) -> None:
    with pytest.raises(NotFound, match="no-such-ep"):
        read_mirrored(workspace, "no-such-ep")


def test_on_azure_read_mirrored_refuses_without_a_network_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("read_mirrored sent a request on Azure")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    azure = Workspace(
        kind="azure",
        subscription_id="00000000-0000-0000-0000-000000000000",
        resource_group="rg",
        workspace_name="ws",
        ml_client=None,
        credential=None,  # type: ignore[arg-type]
    )
    with pytest.raises(RolloutError, match="only on the local emulator") as refused:
        read_mirrored(azure, "my-endpoint")
    assert "send the same inputs to both" in str(refused.value)


def test_deleting_the_endpoint_clears_its_sample(sampled: Scorer, workspace: Workspace) -> None:
    # Last in the module: it deletes the module's endpoint.
    _mirrored_pairs(sampled, workspace, ENDPOINT, 1, start=250)
    ml = workspace.ml_client
    _set_traffic(workspace, ENDPOINT, {})
    ml.online_endpoints.begin_delete(ENDPOINT).result()
    with pytest.raises(NotFound, match=ENDPOINT):
        read_mirrored(workspace, ENDPOINT)
    # An endpoint created again under the same name starts with an empty sample.
    again = load_online_endpoint(str(Path(__file__).parents[2] / "examples" / "endpoint.yml"))
    again.name = ENDPOINT
    ml.online_endpoints.begin_create_or_update(again).result()
    assert read_mirrored(workspace, ENDPOINT) == []
    ml.online_endpoints.begin_delete(ENDPOINT).result()


# An emulator of its own: a sample of 3, given by the flag and kept for the next start.

SMALL = "small-sample-ep"


def _deploy_behave(ws: Workspace, state_dir: Path, examples: Path, name: str) -> None:
    d = load_online_deployment(str(examples / "blue-deployment.yml"))
    d.name, d.endpoint_name = name, SMALL
    d.code_configuration = CodeConfiguration(
        code=str(FIXTURES / "behave"), scoring_script="score.py"
    )
    d.environment_variables = {"DEPLOYMENT_LABEL": name}
    register_local_assets(state_dir, d)
    ws.ml_client.online_deployments.begin_create_or_update(d).result()


def _capacity(ws: Workspace, endpoint: str) -> int:
    assert ws.facts is not None
    answer = httpx.get(
        _route(ws, endpoint),
        params={"api-version": "2023-04-01"},
        headers={"Authorization": f"Bearer {ws.facts.token}"},
        verify=ws.verify,
    )
    answer.raise_for_status()
    return int(answer.json()["capacity"])


def test_the_sample_keeps_the_last_n_and_the_flag_is_kept_for_the_next_start(
    emulator_factory: Callable[[str], RunningEmulator], examples: Path
) -> None:
    running = emulator_factory("mirror-sample-3")
    running.start(args=("--mirror-sample", "3"))
    try:
        ws = running.workspace()
        endpoint = load_online_endpoint(str(examples / "endpoint.yml"))
        endpoint.name = SMALL
        ws.ml_client.online_endpoints.begin_create_or_update(endpoint).result()
        for name in ("blue", "green"):
            _deploy_behave(ws, running.state_dir, examples, name)
        _set_traffic(ws, SMALL, {"green": 50})
        scorer = Scorer(ws, SMALL)
        sent = _mirrored_pairs(scorer, ws, SMALL, 5, body=lambda i: json.dumps({"n": i}).encode())
        scorer.http.close()
        # 5 of the 10 were mirrored; the newest 3 are kept.
        got = read_mirrored(ws, SMALL)
        assert [g.body.encode() for g in got] == [b for b, _ in reversed(sent)][:3]
        assert [json.loads(g.live.body) for g in got] == [{"ok": True, "deployment": "blue"}] * 3
        assert [json.loads(g.mirror.body) for g in got] == [{"ok": True, "deployment": "green"}] * 3
        assert _capacity(ws, SMALL) == 3
        running.stop()
        running.start()
        assert _capacity(running.workspace(), SMALL) == 3  # kept without the flag
        assert read_mirrored(running.workspace(), SMALL) == []  # memory only
        running.stop()
        running.start(args=("--mirror-sample", "0"))
        assert _capacity(running.workspace(), SMALL) == 0
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("command", "value"), [("serve", "1001"), ("start", "-1"), ("serve", "all")]
)
def test_a_bad_sample_size_is_refused_naming_the_flag_and_the_value(
    tmp_path: Path, command: str, value: str
) -> None:
    state = tmp_path / "state"
    args = [command, "--state-dir", str(state), "--mirror-sample", value]
    done = subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--mirror-sample" in done.stderr and value in done.stderr, done.stderr
    assert not state.exists(), "a refused flag must not create the state directory"


def test_serve_refuses_a_bad_sample_size_before_touching_the_state(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--mirror-sample is 1001"):
        server.serve(tmp_path / "state", mirror_sample=1001)
    assert not (tmp_path / "state").exists()
