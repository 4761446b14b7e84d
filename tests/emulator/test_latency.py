"""`serve --arm-latency-ms N` / `--metrics-latency-ms M`: answers as slow as a remote workspace's.

One emulator for the module, seeded at 0 ms with an endpoint whose deployment runs
tests/emulator/fixtures/behave, then restarted (same state directory) with the latency
each test needs. The bounds are lower bounds on an added delay, except where a test
shows something is NOT delayed: there the margin is 500 ms or more.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.monitor.querymetrics import MetricsClient

from emulator import server
from emulator.apply import apply_file
from emulator.store import Store
from rollout.workspace import StaticTokenCredential
from tests.conftest import REPO, RunningEmulator, example_yaml, wait_until

pytestmark = pytest.mark.emulator

FIXTURES = Path(__file__).parent / "fixtures"
ENDPOINT = "latency-ep"
ENDPOINT_NS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"


class Slowed:
    """The module's emulator, restarted with other latency flags on demand."""

    def __init__(self, running: RunningEmulator) -> None:
        self.running = running
        self.args: tuple[str, ...] | None = None
        self.ml: Any = None
        self.scoring_uri = ""
        self.key = ""

    def at(self, *args: str) -> None:
        """Running with exactly these flags (restarted when they differ from the last start)."""
        if args == self.args and self.running.process is not None:
            return
        self.running.stop()
        self.running.start(args=args)
        self.args = args
        self.ml = self.running.workspace().ml_client
        # Instances start in the background after a restart.
        wait_until(lambda: self.score().status_code == 200, 60.0, "the deployment to answer")

    @property
    def facts(self) -> Any:
        assert self.running.facts is not None
        return self.running.facts

    def score(self) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(verify=self.facts.ca_cert, timeout=30) as http:
            return http.post(self.scoring_uri, json={}, headers=headers)

    def metrics(self) -> None:
        client = MetricsClient(
            endpoint=self.facts.metrics_url,
            credential=StaticTokenCredential(self.facts.token),
            connection_verify=self.facts.ca_cert,
        )
        f = self.facts
        resource = (
            f"/subscriptions/{f.subscription_id}/resourceGroups/{f.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{f.workspace_name}"
            f"/onlineEndpoints/{ENDPOINT}"
        )
        (result,) = client.query_resources(
            resource_ids=[resource],
            metric_namespace=ENDPOINT_NS,
            metric_names=["RequestsPerMinute"],
            timespan=timedelta(minutes=30),
            granularity=timedelta(minutes=1),
        )
        assert result.metrics, "the metrics query answered nothing"


def _ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


@pytest.fixture(scope="module")
def slowed(
    emulator_factory: Callable[[str], RunningEmulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Slowed]:
    running = emulator_factory("latency")
    running.start()
    folder = tmp_path_factory.mktemp("latency-yaml")
    state = running.state_dir
    apply_file(state, example_yaml("endpoint", folder, name=ENDPOINT))
    code = {"code": str(FIXTURES / "behave"), "scoring_script": "score.py"}
    blue = example_yaml("blue-deployment", folder, endpoint_name=ENDPOINT, code_configuration=code)
    apply_file(state, blue, all_traffic=True)
    s = Slowed(running)
    s.args = ()
    ml = running.workspace().ml_client
    s.scoring_uri = ml.online_endpoints.get(ENDPOINT).scoring_uri
    s.key = ml.online_endpoints.get_keys(ENDPOINT).primary_key
    yield s
    running.stop()


def test_control_plane_answers_are_delayed_and_scoring_and_health_are_not(slowed: Slowed) -> None:
    slowed.at("--arm-latency-ms", "1500", "--metrics-latency-ms", "700")
    assert _ms(lambda: list(slowed.ml.online_endpoints.list())) >= 1500
    assert _ms(lambda: slowed.ml.online_deployments.get("blue", ENDPOINT)) >= 1500
    scoring = min(_ms(lambda: slowed.score().raise_for_status()) for _ in range(3))
    assert scoring < 1000, f"a scoring call took {scoring:.0f} ms with --arm-latency-ms 1500"
    health = _ms(lambda: httpx.get(f"{slowed.facts.arm_url}/health", verify=slowed.facts.ca_cert))
    assert health < 1000, f"/health took {health:.0f} ms with --arm-latency-ms 1500"


def test_metrics_answers_are_delayed_by_their_own_flag(slowed: Slowed) -> None:
    slowed.at("--arm-latency-ms", "1500", "--metrics-latency-ms", "700")
    took = _ms(slowed.metrics)
    assert 700 <= took < 1500, f"a metrics query took {took:.0f} ms; expected 700 ms, not 1500"


def test_metrics_latency_follows_the_arm_latency_when_not_given(slowed: Slowed) -> None:
    slowed.at("--arm-latency-ms", "800")
    assert _ms(slowed.metrics) >= 800


def test_concurrent_requests_are_delayed_side_by_side_not_queued(slowed: Slowed) -> None:
    slowed.at("--arm-latency-ms", "800")
    ml = slowed.ml

    def get(_: int) -> float:
        return _ms(lambda: ml.online_endpoints.get(ENDPOINT))

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        each = list(pool.map(get, range(8)))
    total = (time.perf_counter() - started) * 1000
    assert min(each) >= 800
    assert total < 3000, f"8 parallel GETs at 800 ms took {total:.0f} ms: queued, not concurrent"


def test_the_latency_survives_a_restart_and_0_resets_it(slowed: Slowed) -> None:
    slowed.at("--arm-latency-ms", "1500")
    slowed.at()  # no flag: the kept value
    assert _ms(lambda: list(slowed.ml.online_endpoints.list())) >= 1500
    assert _ms(slowed.metrics) >= 1500
    slowed.at("--arm-latency-ms", "0")
    assert _ms(lambda: list(slowed.ml.online_endpoints.list())) < 1000
    assert _ms(slowed.metrics) < 1000
    store = Store(slowed.running.state_dir / "state.db")
    try:
        assert store.get_meta("arm_latency_ms") == "0"
        assert store.get_meta("metrics_latency_ms") == "0"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("serve", "--arm-latency-ms", "10001"),
        ("start", "--arm-latency-ms", "-1"),
        ("serve", "--metrics-latency-ms", "fast"),
    ],
)
def test_a_bad_latency_is_refused_naming_the_flag_and_the_value(
    tmp_path: Path, command: str, flag: str, value: str
) -> None:
    state = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-m", "emulator", command, "--state-dir", str(state), flag, value],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert flag in done.stderr and value in done.stderr, done.stderr
    assert not state.exists(), "a refused flag must not create the state directory"


def test_serve_refuses_a_bad_latency_before_touching_the_state(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--metrics-latency-ms is 10001"):
        server.serve(tmp_path / "state", metrics_latency_ms=10001)
    assert not (tmp_path / "state").exists()
