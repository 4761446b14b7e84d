"""The promotion gates on real metrics: a candidate that fails one request in five fails the
error-rate gate with the numbers behind it, and a plan will not promote it without a reason.

The emulator serves the requests; the real MetricsClient reads its Monitor batch API; the
evidence, the test and the gates are rollout/'s (evidence.py, compare.py, gates.py).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from emulator.apply import apply_file
from rollout import promotion
from rollout.endpoints import get_endpoint, scoring_credential
from rollout.errors import RuleViolation
from rollout.evidence import evidence_from_metrics
from rollout.gates import Gates, evaluate_gates, overall
from rollout.invoke import burst
from rollout.metrics import Window, endpoint_metrics, metrics_client
from rollout.promotion import Plan, Step
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, example_yaml, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "gates-ep"
FIXTURE = Path(__file__).parent / "fixtures" / "fail_fifth"
SAMPLE = (REPO / "examples" / "sample-request.json").read_bytes()
REQUESTS = 250


@pytest.fixture(scope="module")
def gates_ep(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    folder = tmp_path_factory.mktemp("gates-ep")
    seed_tutorial_endpoint(emulator, ENDPOINT, folder)
    flaky = example_yaml(
        "green-deployment",
        folder,
        name="flaky",
        endpoint_name=ENDPOINT,
        code_configuration={"code": str(FIXTURE), "scoring_script": "score.py"},
    )
    apply_file(emulator.state_dir, flaky, if_missing=True)
    return emulator.workspace()


def _send(ws: Workspace, deployment: str) -> dict[int, int]:
    endpoint = get_endpoint(ws, ENDPOINT)
    result = burst(
        ws,
        endpoint.scoring_uri,
        scoring_credential(ws, ENDPOINT),
        SAMPLE,
        count=REQUESTS,
        concurrency=1,
        deployment=deployment,
    )
    return dict(result.statuses)


def test_a_candidate_failing_one_request_in_five_fails_the_error_gate(gates_ep: Workspace) -> None:
    ws = gates_ep
    assert _send(ws, "blue") == {200: REQUESTS}
    assert _send(ws, "flaky") == {200: REQUESTS * 4 // 5, 424: REQUESTS // 5}
    time.sleep(1.5)  # the emulator writes its request log every half second

    window = Window.last(timedelta(minutes=10), timedelta(seconds=10))
    data = endpoint_metrics(ws, metrics_client(ws), ENDPOINT, ["blue", "flaky"], window)
    assert not data.problems, data.problems
    frames = {"requests": data.requests, "status": data.status, "latency": data.latency}
    blue = evidence_from_metrics("blue", window=window, **frames)
    flaky = evidence_from_metrics("flaky", window=window, **frames)
    assert (blue.requests, blue.errors) == (REQUESTS, 0)
    assert (flaky.requests, flaky.errors, flaky.errors_4xx) == (REQUESTS, 50, 50)
    # every one of them a model error (424), counted apart from other 4xx by status code
    assert (blue.model_errors, flaky.model_errors) == (0, 50)

    verdicts = {
        v.gate: v for v in evaluate_gates(Gates(), blue, flaky, min_minutes=0, minutes_in_step=1)
    }
    error = verdicts["error-rate increase"]
    assert error.status == "fail"
    assert error.value == pytest.approx(0.2)
    assert error.words.startswith("+20.0 pp > +1.0 pp: ")
    assert "flaky's error rate is higher: 20.0% vs 0% (p < 0.001)" in error.words
    assert verdicts["minimum requests"].status == "pass"
    assert overall(tuple(verdicts.values())) == "fail"

    plan = Plan(ENDPOINT, "blue", "flaky", (Step("live", 10, 0.0), Step("live", 100, 0.0)))
    started = promotion.start(plan, now=time.time())
    with pytest.raises(RuleViolation, match=r"'error-rate increase' .* is fail: \+20.0 pp"):
        promotion.promote(started, baseline=blue, candidate=flaky, now=time.time())
    moved = promotion.promote(
        started, baseline=blue, candidate=flaky, now=time.time(), reason="known flaky demo"
    )
    assert moved.current == 1
    assert moved.transitions[-1].verdicts[2].status == "fail"
