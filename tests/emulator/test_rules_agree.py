"""rollout.rules and the emulator agree: what the rules accept is accepted, and refused, refused.

The dashboard validates a traffic plan with rollout.rules before sending it. Property-based
plans (hypothesis) are checked by both; the emulator is asked with a raw PUT of the whole
endpoint, the way the SDK sends it (zero entries dropped, keys lower-cased).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.ml import load_online_deployment, load_online_endpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.apply import register_local_assets
from rollout import rules
from tests.conftest import RunningEmulator

ENDPOINT = "agree-ep"
DEPLOYMENTS = ("blue", "green", "gray")
NAMES = [*DEPLOYMENTS, "ghost"]


@pytest.fixture(scope="module")
def arm(emulator: RunningEmulator, examples: Path) -> Iterator[httpx.Client]:
    ml = emulator.workspace().ml_client
    endpoint = load_online_endpoint(str(examples / "endpoint.yml"))
    endpoint.name = ENDPOINT
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    for name in DEPLOYMENTS:
        d = load_online_deployment(str(examples / "blue-deployment.yml"))
        d.name, d.endpoint_name = name, ENDPOINT
        ml.online_deployments.begin_create_or_update(
            register_local_assets(emulator.state_dir, d)
        ).result()
    facts = emulator.facts
    assert facts is not None
    base = (
        f"{facts.arm_url}/subscriptions/{facts.subscription_id}/resourceGroups/"
        f"{facts.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/"
        f"{facts.workspace_name}"
    )
    with httpx.Client(
        base_url=base,
        verify=facts.ca_cert,
        headers={"Authorization": f"Bearer {facts.token}"},
        params={"api-version": "2022-02-01-preview"},
        timeout=30,
    ) as client:
        yield client
    ml.online_endpoints.begin_delete(ENDPOINT).result()


shares = st.integers(min_value=-10, max_value=110)
plans = st.tuples(
    st.dictionaries(st.sampled_from(NAMES), shares, max_size=4),
    st.dictionaries(st.sampled_from(NAMES), st.integers(min_value=-5, max_value=60), max_size=2),
)
# Plans near the valid region, so that accepted ones are common too.
valid_ish = st.builds(
    lambda a, mirror_to, m: ({"blue": a, "green": 100 - a}, {mirror_to: m}),
    st.integers(min_value=0, max_value=100),
    st.sampled_from(NAMES),
    st.integers(min_value=0, max_value=55),
)


def _put(arm: httpx.Client, traffic: dict[str, int], mirror: dict[str, int]) -> httpx.Response:
    body: dict[str, Any] = {
        "location": "local",
        "properties": {
            "authMode": "Key",
            "traffic": rules.normalize_traffic(traffic),
            "mirrorTraffic": rules.normalize_traffic(mirror),
        },
    }
    return arm.put(f"/onlineEndpoints/{ENDPOINT}", json=body)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=st.one_of(plans, valid_ish))
def test_rules_and_emulator_agree_on_every_traffic_plan(
    arm: httpx.Client, plan: tuple[dict[str, int], dict[str, int]]
) -> None:
    traffic, mirror = plan
    sent_traffic = rules.normalize_traffic(traffic)
    sent_mirror = rules.normalize_traffic(mirror)
    verdict = rules.check_traffic(ENDPOINT, DEPLOYMENTS, sent_traffic, sent_mirror)
    response = _put(arm, traffic, mirror)
    if verdict:
        assert response.status_code == 400, (plan, verdict, response.text)
        assert response.json()["error"]["message"]
    else:
        assert response.status_code in (200, 201), (plan, response.text)
        stored = arm.get(f"/onlineEndpoints/{ENDPOINT}").json()["properties"]
        assert {k: v for k, v in stored["traffic"].items() if v} == sent_traffic
        assert stored["mirrorTraffic"] == sent_mirror
