"""Azure's safe-rollout tutorial, end to end, through the unchanged azure-ai-ml MLClient.

Create the endpoint, deploy blue and give it all traffic, scale blue, deploy green
at 0%, test green alone, mirror 10% to green, send it 10% live, then 100%, delete
blue, delete the endpoint. The steps run in order and share one endpoint of the
session emulator (its own name, so other modules are not disturbed); each checks
what `get` reports afterwards and what the scoring URI does.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from azure.ai.ml import MLClient, load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import ManagedOnlineEndpoint, OnlineDeployment
from azure.core.exceptions import ResourceNotFoundError

from emulator.apply import register_local_assets
from rollout.workspace import Workspace
from tests.conftest import EXAMPLES, RunningEmulator, sdk_invoke

pytestmark = pytest.mark.emulator

ENDPOINT = "tutorial-ep"
REQUEST_FILE = EXAMPLES / "sample-request.json"
BLUE_ANSWER = [10980.66, 4459.33]  # model-1 on sample-request.json
GREEN_ANSWER = [4952.81, 3830.04]  # model-2 on sample-request.json
SERVED_BY = "azureml-model-deployment"
# Green runs 1 instance with max_concurrent_requests_per_instance 1: Azure answers 429
# beyond 2 × 1 × 1 requests pending on it, so bursts that reach green stay at or below 2.
BURST_CONCURRENCY = 2


@dataclass
class Tutorial:
    """What the steps share: the client, and the data-plane facts of the endpoint."""

    ml_client: MLClient
    state_dir: Path
    ca_cert: str
    scoring_uri: str = ""
    key: str = ""

    def endpoint(self) -> ManagedOnlineEndpoint:
        endpoint = self.ml_client.online_endpoints.get(ENDPOINT)
        assert endpoint.provisioning_state == "Succeeded"
        return endpoint

    def set_traffic(
        self, traffic: dict[str, int] | None = None, mirror: dict[str, int] | None = None
    ) -> ManagedOnlineEndpoint:
        """get -> modify -> PUT the whole endpoint, as the tutorial does; returns the new get."""
        endpoint = self.ml_client.online_endpoints.get(ENDPOINT)
        if traffic is not None:
            endpoint.traffic = traffic
        if mirror is not None:
            endpoint.mirror_traffic = mirror
        self.ml_client.online_endpoints.begin_create_or_update(endpoint).result()
        return self.endpoint()

    def deploy(self, yaml_file: str) -> OnlineDeployment:
        deployment = load_online_deployment(str(EXAMPLES / yaml_file))
        deployment.endpoint_name = ENDPOINT
        deployment = register_local_assets(self.state_dir, deployment)
        self.ml_client.online_deployments.begin_create_or_update(deployment).result()
        return self.deployment(deployment.name)

    def deployment(self, name: str) -> OnlineDeployment:
        deployment = self.ml_client.online_deployments.get(name, ENDPOINT)
        assert deployment.provisioning_state == "Succeeded"
        return deployment

    def invoke(self, deployment: str | None = None) -> list[float]:
        answer = sdk_invoke(self.ml_client, ENDPOINT, REQUEST_FILE, deployment=deployment)
        return json.loads(answer)

    def logs(self, deployment: str, lines: int = 5000) -> str:
        return self.ml_client.online_deployments.get_logs(deployment, ENDPOINT, lines)

    def requests_received(self, deployment: str, model: int) -> int:
        return self.logs(deployment).count(f"model {model}: request received")

    def score(self, count: int, *, concurrency: int = 1) -> list[httpx.Response]:
        """`count` routed requests (no deployment header) to the scoring URI."""
        body = REQUEST_FILE.read_bytes()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        with httpx.Client(verify=self.ca_cert, headers=headers, timeout=30.0) as client:

            def one(_: int) -> httpx.Response:
                return client.post(self.scoring_uri, content=body)

            if concurrency == 1:
                return [one(i) for i in range(count)]
            with ThreadPoolExecutor(concurrency) as pool:
                return list(pool.map(one, range(count)))

    def served_by(self, count: int, *, concurrency: int = 1) -> Counter[str]:
        responses = self.score(count, concurrency=concurrency)
        failed = [(r.status_code, r.text) for r in responses if r.status_code != 200]
        assert not failed, f"{len(failed)} of {count} requests failed, e.g. {failed[0]}"
        return Counter(r.headers[SERVED_BY] for r in responses)


@pytest.fixture(scope="module")
def tutorial(workspace: Workspace, emulator: RunningEmulator) -> Iterator[Tutorial]:
    assert emulator.facts is not None
    steps = Tutorial(workspace.ml_client, emulator.state_dir, emulator.facts.ca_cert)
    yield steps
    # Leave nothing running in the shared emulator when a step failed half way.
    try:
        endpoint = steps.ml_client.online_endpoints.get(ENDPOINT)
    except ResourceNotFoundError:
        return
    if endpoint.provisioning_state != "Deleting":
        steps.ml_client.online_endpoints.begin_delete(ENDPOINT).result()


def _close_to(answer: list[float], expected: list[float]) -> bool:
    return len(answer) == len(expected) and all(
        math.isclose(a, e, abs_tol=0.01) for a, e in zip(answer, expected, strict=True)
    )


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_endpoint_is_created_with_key_auth(tutorial: Tutorial) -> None:
    endpoint = load_online_endpoint(str(EXAMPLES / "endpoint.yml"))
    endpoint.name = ENDPOINT
    tutorial.ml_client.online_endpoints.begin_create_or_update(endpoint).result()

    got = tutorial.endpoint()
    assert got.name == ENDPOINT
    assert got.auth_mode == "key"
    assert got.traffic == {}
    assert got.mirror_traffic == {}
    assert got.scoring_uri is not None
    assert got.scoring_uri.startswith("https://127.0.0.1:")
    tutorial.scoring_uri = got.scoring_uri
    tutorial.key = tutorial.ml_client.online_endpoints.get_keys(ENDPOINT).primary_key
    assert tutorial.key


def test_routed_request_without_live_traffic_is_refused(tutorial: Tutorial) -> None:
    [response] = tutorial.score(1)
    assert response.status_code == 404
    assert "positive weight" in response.text


def test_blue_takes_all_traffic_and_answers(tutorial: Tutorial) -> None:
    blue = tutorial.deploy("blue-deployment.yml")
    assert blue.instance_count == 1
    assert tutorial.endpoint().traffic == {"blue": 0}

    endpoint = tutorial.set_traffic({"blue": 100})
    assert endpoint.traffic == {"blue": 100}
    assert endpoint.mirror_traffic == {}

    assert _close_to(tutorial.invoke(), BLUE_ANSWER)
    assert tutorial.served_by(5) == {"blue": 5}


def test_scaling_blue_to_two_starts_a_second_instance(tutorial: Tutorial) -> None:
    blue = tutorial.deployment("blue")
    blue.instance_count = 2
    tutorial.ml_client.online_deployments.begin_create_or_update(blue).result()

    assert tutorial.deployment("blue").instance_count == 2
    started = set(re.findall(r"Starting instance (blue-\S+) ", tutorial.logs("blue")))
    assert len(started) == 2, started
    assert tutorial.endpoint().traffic == {"blue": 100}
    assert tutorial.served_by(4) == {"blue": 4}


def test_green_is_created_at_zero_percent(tutorial: Tutorial) -> None:
    green = tutorial.deploy("green-deployment.yml")
    assert green.instance_count == 1

    endpoint = tutorial.endpoint()
    assert endpoint.traffic == {"blue": 100, "green": 0}
    assert endpoint.mirror_traffic == {}
    assert tutorial.served_by(10) == {"blue": 10}
    assert tutorial.requests_received("green", 2) == 0


def test_green_answers_when_invoked_by_name(tutorial: Tutorial) -> None:
    assert _close_to(tutorial.invoke("green"), GREEN_ANSWER)
    assert _close_to(tutorial.invoke("blue"), BLUE_ANSWER)
    assert tutorial.requests_received("green", 2) == 1
    assert tutorial.endpoint().traffic == {"blue": 100, "green": 0}


def test_mirroring_ten_percent_copies_requests_to_green_only(tutorial: Tutorial) -> None:
    endpoint = tutorial.set_traffic(mirror={"green": 10})
    # The SDK's get zero-fills live traffic only for deployments that are not mirrored.
    assert endpoint.traffic == {"blue": 100}
    assert endpoint.mirror_traffic == {"green": 10}
    before = tutorial.requests_received("green", 2)

    assert tutorial.served_by(400) == {"blue": 400}

    # Mirrored copies are sent in the background: wait until green has seen them all.
    _wait_for(lambda: tutorial.requests_received("green", 2) - before >= 40)
    time.sleep(0.5)  # and make sure no more than that arrive
    mirrored = tutorial.requests_received("green", 2) - before
    assert 36 <= mirrored <= 44, mirrored


def test_mirror_set_to_zero_is_removed(tutorial: Tutorial) -> None:
    endpoint = tutorial.set_traffic(mirror={"green": 0})
    assert endpoint.mirror_traffic == {}
    assert endpoint.traffic == {"blue": 100, "green": 0}

    before = tutorial.requests_received("green", 2)
    assert tutorial.served_by(50) == {"blue": 50}
    time.sleep(0.5)
    assert tutorial.requests_received("green", 2) == before


def test_ten_percent_live_traffic_goes_to_green(tutorial: Tutorial) -> None:
    endpoint = tutorial.set_traffic({"blue": 90, "green": 10})
    assert endpoint.traffic == {"blue": 90, "green": 10}
    assert endpoint.mirror_traffic == {}

    n, p = 2000, 0.10
    served = tutorial.served_by(n, concurrency=BURST_CONCURRENCY)
    assert served.keys() == {"blue", "green"}
    assert served.total() == n
    # Consistent with 10%: within 4 binomial standard deviations (the emulator's
    # smooth weighted round robin lands much closer than that).
    assert abs(served["green"] - n * p) <= 4 * math.sqrt(n * p * (1 - p)), served


def test_all_live_traffic_goes_to_green(tutorial: Tutorial) -> None:
    endpoint = tutorial.set_traffic({"blue": 0, "green": 100})
    assert endpoint.traffic == {"blue": 0, "green": 100}
    assert endpoint.mirror_traffic == {}

    assert tutorial.served_by(50, concurrency=2) == {"green": 50}
    assert _close_to(tutorial.invoke(), GREEN_ANSWER)
    assert tutorial.deployment("blue").instance_count == 2
    assert tutorial.deployment("green").instance_count == 1


def test_deleting_blue_leaves_only_green(tutorial: Tutorial) -> None:
    tutorial.ml_client.online_deployments.begin_delete("blue", ENDPOINT).result()

    names = [d.name for d in tutorial.ml_client.online_deployments.list(ENDPOINT)]
    assert names == ["green"]
    with pytest.raises(ResourceNotFoundError):
        tutorial.ml_client.online_deployments.get("blue", ENDPOINT)
    endpoint = tutorial.endpoint()
    assert endpoint.traffic == {"green": 100}
    assert endpoint.mirror_traffic == {}
    assert tutorial.served_by(10) == {"green": 10}


def test_deleting_the_endpoint_removes_it_and_its_scoring_uri(tutorial: Tutorial) -> None:
    tutorial.ml_client.online_endpoints.begin_delete(ENDPOINT).result()

    with pytest.raises(ResourceNotFoundError):
        tutorial.ml_client.online_endpoints.get(ENDPOINT)
    assert ENDPOINT not in [e.name for e in tutorial.ml_client.online_endpoints.list()]
    [response] = tutorial.score(1)
    assert response.status_code == 404
