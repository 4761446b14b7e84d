"""The prediction comparison against a real emulator: every input to both deployments by
header, in the background, with progress and cancel (rollout/prediction_run.py).

Uses its own endpoint `predict-ep` (blue = model-1 with all live traffic, green = model-2
at 0%): the two models predict different numbers for the same rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rollout.endpoints import get_endpoint, scoring_credential
from rollout.errors import RolloutError
from rollout.invoke import invoke
from rollout.prediction_inputs import parse_jsonl
from rollout.prediction_run import MAX_IN_FLIGHT, PredictionRun, in_flight_for
from rollout.predictions import Tolerance
from rollout.workspace import Workspace
from tests.conftest import RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "predict-ep"


@pytest.fixture(scope="module")
def predict_ep(
    emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp(ENDPOINT))
    return emulator


@pytest.fixture(scope="module")
def target(predict_ep: RunningEmulator, workspace: Workspace) -> tuple[str, str]:
    """(scoring URI, credential) of predict-ep."""
    endpoint = get_endpoint(workspace, ENDPOINT)
    return endpoint.scoring_uri, scoring_credential(workspace, ENDPOINT)


def _lines(count: int, *, seed: int = 9) -> str:
    rows = random.Random(seed)
    return "\n".join(
        json.dumps({"data": [[rows.randint(0, 20) for _ in range(10)]]}) for _ in range(count)
    )


def _run(
    ws: Workspace, target: tuple[str, str], text: str, baseline: str, candidate: str
) -> PredictionRun:
    uri, credential = target
    inputs = parse_jsonl(text, name="inputs.jsonl")
    run = PredictionRun(ws, uri, credential, inputs, baseline=baseline, candidate=candidate).start()
    assert run.wait(120), f"the run did not finish: {run.progress}"
    return run


def test_blue_against_blue_agrees_on_every_input(
    workspace: Workspace, target: tuple[str, str]
) -> None:
    run = _run(workspace, target, _lines(12), "blue", "blue")
    found = run.comparison()
    assert run.error is None
    assert (found.compared, found.both_ok, found.agreed) == (12, 12, 12), found.failed_text()
    assert found.agreement == 1.0 and not found.top
    assert set(found.differences) == {0.0}
    assert found.baseline_latency.answered == found.candidate_latency.answered == 12
    assert found.progress_text() == "compared 12 inputs"


def test_blue_against_green_differs_by_what_each_answers_directly(
    workspace: Workspace, target: tuple[str, str]
) -> None:
    text = _lines(8, seed=3)
    found = _run(workspace, target, text, "blue", "green").comparison()
    assert found.both_ok == 8 and found.agreed == 0, found.failed_text()

    uri, credential = target
    expected = []
    for line in text.splitlines():
        answers = {
            d: json.loads(invoke(workspace, uri, credential, line.encode(), deployment=d).body)
            for d in ("blue", "green")
        }
        expected += [g - b for b, g in zip(answers["blue"], answers["green"], strict=True)]
    assert list(found.differences) == pytest.approx(expected)
    largest = max(abs(d) for d in expected)
    assert found.top[0].kind == "numeric"
    assert found.top[0].largest == pytest.approx(largest)
    assert [row.index for row in found.top] == sorted(
        range(1, 9), key=lambda i: -abs(expected[i - 1])
    )


def test_a_tolerance_wider_than_every_difference_makes_them_agree(
    workspace: Workspace, target: tuple[str, str]
) -> None:
    uri, credential = target
    run = PredictionRun(
        workspace,
        uri,
        credential,
        parse_jsonl(_lines(4, seed=5)),
        baseline="blue",
        candidate="green",
        tolerance=Tolerance(absolute=1e9, relative=0),
    ).start()
    assert run.wait(120)
    assert run.comparison().agreed == 4


def test_cancel_stops_sending_and_keeps_what_finished(
    workspace: Workspace, target: tuple[str, str]
) -> None:
    uri, credential = target
    inputs = parse_jsonl(_lines(1000, seed=1), name="many.jsonl")
    run = PredictionRun(
        workspace, uri, credential, inputs, baseline="blue", candidate="green", in_flight=1
    ).start()
    deadline = 60.0
    while run.progress[0] < 5 and deadline > 0:
        run.wait(0.05)
        deadline -= 0.05
    run.cancel()
    assert run.wait(30), "the run did not stop after cancel"
    done, total = run.progress
    assert 5 <= done < 100 and total == 1000
    found = run.comparison()
    assert found.compared == done and found.cancelled
    assert found.progress_text() == f"cancelled after {done} of 1,000"
    assert found.both_ok == done, found.failed_text()


def test_an_unreachable_endpoint_is_a_failed_answer_not_an_exception(
    workspace: Workspace, target: tuple[str, str]
) -> None:
    _, credential = target
    run = PredictionRun(
        workspace,
        "https://127.0.0.1:9/score",
        credential,
        parse_jsonl(_lines(2)),
        baseline="blue",
        candidate="green",
    ).start()
    assert run.wait(60)
    found = run.comparison()
    assert run.error is None
    assert (found.baseline_failed, found.candidate_failed, found.agreed) == (2, 2, 0)
    assert found.baseline_statuses == ((0, 2),)


def test_a_jsonl_with_a_bad_line_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_lines(3) + "\n{'data': [[1]]}\n")
    with pytest.raises(RolloutError, match=r"line 4 of bad.jsonl is not JSON: Expecting property"):
        parse_jsonl(path.read_bytes(), name=path.name)


def test_inputs_in_flight_leave_room_for_live_traffic(workspace: Workspace) -> None:
    endpoint = get_endpoint(workspace, ENDPOINT)
    # The tutorial's deployments: 1 instance, 1 concurrent request: 429 beyond 2 pending.
    assert in_flight_for(endpoint.deployments) == 1
    with pytest.raises(RolloutError, match=f"inputs in flight are 1 to {MAX_IN_FLIGHT}, not 5"):
        PredictionRun(
            workspace, "https://x", "k", parse_jsonl("{}"), baseline="a", candidate="b",
            in_flight=5,
        )  # fmt: skip
