"""The data plane at production fidelity: limits, failures, probes, mirroring, routing, recording.

These run against an emulator of their own (a 1 MiB body limit) and deployments whose
score.py does what each request asks (tests/emulator/fixtures/behave/score.py).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import CodeConfiguration, OnlineRequestSettings, ProbeSettings
from scipy.stats import chisquare

from emulator.apply import register_local_assets
from tests.conftest import RunningEmulator, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
ENDPOINT = "plane-ep"


class Plane:
    """The module's emulator, its MLClient and an HTTPS client for the scoring URI."""

    def __init__(self, emulator: RunningEmulator, examples: Path) -> None:
        self.emulator = emulator
        self.examples = examples
        self.ml = emulator.workspace().ml_client
        facts = emulator.facts
        assert facts is not None
        self.http = httpx.Client(verify=facts.ca_cert, timeout=60)

    def endpoint(self, name: str) -> None:
        endpoint = load_online_endpoint(str(self.examples / "endpoint.yml"))
        endpoint.name = name
        self.ml.online_endpoints.begin_create_or_update(endpoint).result()

    def deploy(
        self,
        endpoint: str,
        name: str,
        *,
        code: str = "behave",
        instances: int = 1,
        timeout_ms: int = 5000,
        concurrency: int = 1,
        probe: ProbeSettings | None = None,
        wait: bool = True,
    ) -> Any:
        d = load_online_deployment(str(self.examples / "blue-deployment.yml"))
        d.name, d.endpoint_name = name, endpoint
        d.code_configuration = CodeConfiguration(
            code=str(FIXTURES / code), scoring_script="score.py"
        )
        d.instance_count = instances
        d.environment_variables = {"DEPLOYMENT_LABEL": name}
        d.request_settings = OnlineRequestSettings(
            request_timeout_ms=timeout_ms, max_concurrent_requests_per_instance=concurrency
        )
        if probe is not None:
            d.liveness_probe = probe
        register_local_assets(self.emulator.state_dir, d)
        poller = self.ml.online_deployments.begin_create_or_update(d)
        return poller.result() if wait else poller

    def traffic(
        self, endpoint: str, live: dict[str, int], mirror: dict[str, int] | None = None
    ) -> None:
        entity = self.ml.online_endpoints.get(endpoint)
        entity.traffic = live
        entity.mirror_traffic = mirror or {}
        self.ml.online_endpoints.begin_create_or_update(entity).result()

    def score(
        self,
        endpoint: str,
        body: Any = None,
        *,
        deployment: str | None = None,
        raw: bytes | None = None,
    ) -> httpx.Response:
        uri = self.ml.online_endpoints.get(endpoint).scoring_uri
        key = self.ml.online_endpoints.get_keys(endpoint).primary_key
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        content = raw if raw is not None else httpx.Request("POST", "/", json=body or {}).content
        return self.http.post(uri, content=content, headers=headers)

    def many(
        self, endpoint: str, count: int, *, body: Any = None, concurrency: int = 8
    ) -> list[httpx.Response]:
        uri = self.ml.online_endpoints.get(endpoint).scoring_uri
        key = self.ml.online_endpoints.get_keys(endpoint).primary_key
        headers = {"Authorization": f"Bearer {key}"}
        facts = self.emulator.facts
        assert facts is not None
        limits = httpx.Limits(max_connections=concurrency)
        with httpx.Client(verify=facts.ca_cert, timeout=60, limits=limits) as client:

            def one(_: int) -> httpx.Response:
                return client.post(uri, json=body or {}, headers=headers)

            with ThreadPoolExecutor(concurrency) as pool:
                return list(pool.map(one, range(count)))

    def records(self, endpoint: str, since: float) -> list[tuple[Any, ...]]:
        path = self.emulator.state_dir / "requests.db"
        with sqlite3.connect(path) as db:
            return db.execute(
                "SELECT deployment, mirrored, status, model_status FROM requests "
                "WHERE endpoint = ? AND ts >= ? ORDER BY ts",
                (endpoint, since),
            ).fetchall()


def _workers(plane: Plane, endpoint: str, deployment: str = "") -> list[psutil.Process]:
    """The live instance processes of an endpoint (optionally of one deployment)."""
    parent = plane.emulator.process.pid if plane.emulator.process else -1
    found = []
    for proc in psutil.process_iter(["cmdline", "ppid", "status"]):
        cmd = proc.info["cmdline"] or []
        if (
            proc.info["ppid"] == parent
            and "emulator.worker" in cmd
            and proc.info["status"] != psutil.STATUS_ZOMBIE
            and any(f"/{endpoint}-{deployment}" in a for a in cmd)
        ):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def plane(emulator_factory: Callable[[str], RunningEmulator], examples: Path) -> Iterator[Plane]:
    running = emulator_factory("data-plane")
    running.start(args=("--max-body-mb", "1"))
    p = Plane(running, examples)
    p.endpoint(ENDPOINT)
    p.deploy(ENDPOINT, "blue", timeout_ms=1000)
    p.traffic(ENDPOINT, {"blue": 100})
    yield p
    p.http.close()
    running.stop()


def test_a_request_slower_than_request_timeout_is_408(plane: Plane) -> None:
    response = plane.score(ENDPOINT, {"sleep": 2.5})
    assert response.status_code == 408
    assert "1000 ms" in response.json()["message"]
    assert response.headers["azureml-model-deployment"] == "blue"
    # The instance is busy until its run() returns, as on Azure; then it serves again.
    wait_until(lambda: plane.score(ENDPOINT, {}).status_code == 200, what="a 200 again")


def test_more_pending_than_twice_the_concurrency_is_429(plane: Plane) -> None:
    plane.endpoint("busy-ep")
    plane.deploy("busy-ep", "slow", timeout_ms=10000)
    plane.traffic("busy-ep", {"slow": 100})
    answers = plane.many("busy-ep", 6, body={"sleep": 1.5}, concurrency=6)
    statuses = Counter(a.status_code for a in answers)
    # 2 x max_concurrent_requests_per_instance (1) x instance_count (1) = 2 admitted.
    assert statuses == {200: 2, 429: 4}, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["message"].startswith("Too many pending requests")


def test_a_failing_score_py_is_424_with_the_model_error_headers(plane: Plane) -> None:
    response = plane.score(ENDPOINT, {"fail": True})
    assert response.status_code == 424
    assert response.headers["ms-azureml-model-error-statuscode"] == "500"
    # As azmlinfsrv: the client is told run() failed; the exception is in the logs only.
    assert response.json() == {
        "message": "An unexpected error occurred in scoring script. Check the logs for more info."
    }
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert response.headers["ms-azureml-model-error-reason"].startswith("An unexpected error")


def test_a_non_200_answer_of_the_model_is_424_with_its_status(plane: Plane) -> None:
    response = plane.score(ENDPOINT, {"status": 400})
    assert response.status_code == 424
    assert response.headers["ms-azureml-model-error-statuscode"] == "400"
    assert response.headers["ms-azureml-model-error-reason"] == "model said no"


def test_a_body_over_the_limit_is_413_and_a_body_under_it_is_served(plane: Plane) -> None:
    big = b'{"pad": "' + b"x" * (2**20) + b'"}'
    response = plane.score(ENDPOINT, raw=big)
    assert response.status_code == 413
    assert "1 MiB" in response.json()["message"]
    assert plane.score(ENDPOINT, raw=b'{"pad": "' + b"x" * 1000 + b'"}').status_code == 200


def test_malformed_json_reaches_score_py_which_decides(plane: Plane) -> None:
    # behave's run() treats undecodable input as {} and answers 200, as score.py chooses.
    assert plane.score(ENDPOINT, raw=b"{not json").status_code == 200


def test_wrong_key_is_401_and_unknown_deployment_is_404_naming_it(plane: Plane) -> None:
    uri = plane.ml.online_endpoints.get(ENDPOINT).scoring_uri
    assert (
        plane.http.post(uri, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    response = plane.score(ENDPOINT, {}, deployment="ghost")
    assert response.status_code == 404
    assert "'ghost'" in response.json()["message"]


def test_a_deployment_whose_init_fails_ends_failed_with_the_error_in_its_logs(plane: Plane) -> None:
    poller = plane.deploy(ENDPOINT, "broken", code="init_fails", wait=False)
    with pytest.raises(Exception, match="init"):
        poller.result()
    deployment = plane.ml.online_deployments.get("broken", ENDPOINT)
    assert str(deployment.provisioning_state).lower().endswith("failed")
    logs = plane.ml.online_deployments.get_logs("broken", ENDPOINT, lines=200)
    assert "model file sklearn_regression_model.pkl is missing" in logs
    response = plane.score(ENDPOINT, {}, deployment="broken")
    assert response.status_code == 503
    assert not _workers(plane, ENDPOINT, "broken")
    # The endpoint's live deployment is untouched.
    assert plane.score(ENDPOINT, {}).status_code == 200
    plane.ml.online_deployments.begin_delete("broken", ENDPOINT).result()


def test_a_hung_instance_is_replaced_by_its_liveness_probe(plane: Plane) -> None:
    probe = ProbeSettings(initial_delay=1, period=1, timeout=1, failure_threshold=2)
    plane.endpoint("hung-ep")
    plane.deploy("hung-ep", "blue", instances=2, probe=probe)
    plane.traffic("hung-ep", {"blue": 100})
    pids = {p.pid for p in _workers(plane, "hung-ep")}
    assert len(pids) == 2
    hung = sorted(pids)[0]
    os.kill(hung, signal.SIGSTOP)
    try:
        wait_until(
            lambda: (
                hung not in {p.pid for p in _workers(plane, "hung-ep")}
                and len(_workers(plane, "hung-ep")) == 2
            ),
            timeout=30,
            what="the hung instance to be replaced",
        )
    finally:
        if psutil.pid_exists(hung):
            os.kill(hung, signal.SIGCONT)
    logs = plane.ml.online_deployments.get_logs("blue", "hung-ep", lines=200)
    assert "failed its liveness probe" in logs
    answers = plane.many("hung-ep", 20, concurrency=2)
    assert {a.status_code for a in answers} == {200}


def test_a_dead_instance_under_load_fails_no_request_to_the_other_deployment(plane: Plane) -> None:
    plane.endpoint("dead-ep")
    plane.deploy("dead-ep", "blue", concurrency=4)
    plane.deploy("dead-ep", "green", instances=2, concurrency=4)
    plane.traffic("dead-ep", {"blue": 50, "green": 50})
    green = _workers(plane, "dead-ep", "green")
    assert len(green) == 2
    with ThreadPoolExecutor(1) as killer:
        kill = killer.submit(lambda: (time.sleep(0.3), green[0].kill()))
        answers = plane.many("dead-ep", 300, concurrency=4)
        kill.result()
    blue = [a for a in answers if a.headers.get("azureml-model-deployment") == "blue"]
    assert blue and all(a.status_code == 200 for a in blue)
    # The instance is replaced.
    wait_until(
        lambda: (
            len(_workers(plane, "dead-ep", "green")) == 2
            and green[0].pid not in {p.pid for p in _workers(plane, "dead-ep", "green")}
        ),
        what="the dead instance to be replaced",
    )


def test_a_failing_mirror_target_never_reaches_the_client(plane: Plane) -> None:
    plane.endpoint("mirror-ep")
    plane.deploy("mirror-ep", "blue")
    plane.deploy("mirror-ep", "green")
    plane.traffic("mirror-ep", {"blue": 100})
    # green fails every request: behave fails when asked, and every request asks.
    plane.traffic("mirror-ep", {"blue": 100}, {"green": 50})
    since = time.time()
    answers = plane.many("mirror-ep", 60, body={"fail": True, "sleep": 0}, concurrency=1)
    assert all(a.headers["azureml-model-deployment"] == "blue" for a in answers)
    # blue also fails on {"fail": true}: the client sees blue's answer, never green's.
    assert {a.status_code for a in answers} == {424}
    records = wait_until(
        lambda: (r := plane.records("mirror-ep", since)) and len(r) >= 90 and r,
        what="records",
    )
    mirrored = [r for r in records if r[1]]
    assert mirrored and all(r[0] == "green" for r in mirrored)


def test_a_saturated_mirror_target_drops_copies_and_counts_them(plane: Plane) -> None:
    plane.endpoint("shadow-ep")
    plane.deploy("shadow-ep", "blue", concurrency=4)
    plane.deploy("shadow-ep", "green", timeout_ms=10000)
    plane.traffic("shadow-ep", {"blue": 100}, {"green": 50})
    since = time.time()
    started = time.perf_counter()
    answers = plane.many("shadow-ep", 40, body={}, concurrency=4)
    assert {a.status_code for a in answers} == {200}
    assert time.perf_counter() - started < 30
    # A slow green (each copy sleeps via a direct call below) saturates; copies beyond
    # 2 x 1 x 1 pending are dropped (status 0 in the log), never queued without bound.
    slow_since = time.time()
    body = {"sleep": 1.0}
    answers = plane.many("shadow-ep", 20, body=body, concurrency=4)
    assert all(a.headers["azureml-model-deployment"] == "blue" for a in answers)
    records = wait_until(
        lambda: (
            (r := plane.records("shadow-ep", slow_since))
            and len([x for x in r if x[1]]) >= 10
            and r
        ),
        timeout=60,
        what="mirror records",
    )
    mirrored = Counter(r[2] for r in records if r[1])
    assert mirrored[0] > 0, mirrored  # dropped copies are counted
    assert sum(mirrored.values()) == 10  # exactly 50% of 20 were mirrored or dropped
    assert since < slow_since


@pytest.mark.parametrize("split", [(90, 10), (50, 50)], ids=["90-10", "50-50"])
def test_routing_matches_the_split_over_5000_requests(plane: Plane, split: tuple[int, int]) -> None:
    name = f"split{split[0]}-ep"
    plane.endpoint(name)
    plane.deploy(name, "blue", concurrency=4)
    plane.deploy(name, "green", concurrency=4)
    plane.traffic(name, {"blue": split[0], "green": split[1]})
    answers = plane.many(name, 5000, concurrency=8)
    served = Counter(a.headers["azureml-model-deployment"] for a in answers)
    assert {a.status_code for a in answers} == {200}
    observed = [served["blue"], served["green"]]
    expected = [5000 * split[0] / 100, 5000 * split[1] / 100]
    assert chisquare(observed, expected).pvalue > 0.01, observed
    # Smooth weighted round robin is exact over every full cycle of 100.
    assert observed == expected


def test_each_request_is_recorded_exactly_once_live_and_mirrored_apart(plane: Plane) -> None:
    plane.endpoint("count-ep")
    plane.deploy("count-ep", "blue", concurrency=4)
    plane.deploy("count-ep", "green", concurrency=4)
    plane.traffic("count-ep", {"blue": 100}, {"green": 10})
    since = time.time()
    answers = plane.many("count-ep", 500, concurrency=8)
    assert {a.status_code for a in answers} == {200}
    records = wait_until(
        lambda: (r := plane.records("count-ep", since)) and len(r) >= 550 and r,
        what="550 records",
    )
    time.sleep(1.0)
    records = plane.records("count-ep", since)
    live = Counter(r[0] for r in records if not r[1])
    mirrored = Counter((r[0], r[2]) for r in records if r[1])
    assert live == {"blue": 500}
    # Every tenth request is copied to green exactly once: served (200), or dropped (0)
    # if green was saturated at that moment on this busy machine.
    assert sum(mirrored.values()) == 50, mirrored
    assert set(mirrored) <= {("green", 200), ("green", 0)}, mirrored
