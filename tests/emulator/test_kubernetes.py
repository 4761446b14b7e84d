"""Kubernetes online endpoints through the real SDK: the attached compute, an endpoint on
it, its deployments' instance types, traffic, the refused mirror, and delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.ml.entities import (
    KubernetesCompute,
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from rollout.workspace import Workspace
from tests.conftest import RunningEmulator, kubernetes_deployment

pytestmark = pytest.mark.emulator

ENDPOINT = "k8s-ep"
COMPUTE = "k8s-compute"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}


def _deployment(emulator: RunningEmulator, examples: Path, name: str, **kw: Any) -> Any:
    return kubernetes_deployment(emulator.state_dir, ENDPOINT, name, **kw)


@pytest.fixture(scope="module")
def ml(workspace: Workspace, emulator: RunningEmulator, examples: Path) -> Iterator[Any]:
    """ENDPOINT on the Kubernetes compute, with blue (default instance type) and green
    (largecpu) deployed."""
    client = workspace.ml_client
    client.online_endpoints.begin_create_or_update(
        KubernetesOnlineEndpoint(name=ENDPOINT, compute=COMPUTE, auth_mode="key")
    ).result()
    pollers = [
        client.online_deployments.begin_create_or_update(_deployment(emulator, examples, "blue")),
        client.online_deployments.begin_create_or_update(
            _deployment(emulator, examples, "green", instance_type="largecpu")
        ),
    ]
    for poller in pollers:
        poller.result()
    yield client
    client.online_endpoints.begin_delete(ENDPOINT).result()


def _refusal(call: Any) -> str:
    with pytest.raises(HttpResponseError) as refused:
        call()
    assert refused.value.status_code == 400
    return str(refused.value.message)


def test_the_workspace_lists_one_kubernetes_compute_with_its_instance_types(
    workspace: Workspace,
) -> None:
    computes = list(workspace.ml_client.compute.list())
    assert [c.name for c in computes] == [COMPUTE]
    compute = workspace.ml_client.compute.get(COMPUTE)
    assert isinstance(compute, KubernetesCompute)
    assert compute.type == "kubernetes"
    assert compute.namespace == "default"
    props = compute.properties
    assert props["defaultInstanceType"] == "defaultinstancetype"
    types = props["instanceTypes"]
    assert sorted(types) == ["defaultinstancetype", "largecpu"]
    assert types["largecpu"]["resources"]["limits"]["memory"] == "16Gi"
    assert [c.name for c in workspace.ml_client.compute.list(compute_type="Kubernetes")] == [
        COMPUTE
    ]
    with pytest.raises(ResourceNotFoundError, match="no-such-compute"):
        workspace.ml_client.compute.get("no-such-compute")


def test_an_endpoint_on_a_compute_that_does_not_exist_is_refused_naming_it(
    workspace: Workspace,
) -> None:
    ml = workspace.ml_client
    endpoint = KubernetesOnlineEndpoint(name="k8s-missing", compute="no-such-compute")
    message = _refusal(lambda: ml.online_endpoints.begin_create_or_update(endpoint).result())
    assert "no-such-compute" in message and "k8s-compute" in message
    with pytest.raises(ResourceNotFoundError):
        ml.online_endpoints.get("k8s-missing")


def test_the_endpoint_reads_back_as_a_kubernetes_endpoint_on_its_compute(ml: Any) -> None:
    endpoint = ml.online_endpoints.get(ENDPOINT)
    assert isinstance(endpoint, KubernetesOnlineEndpoint)
    assert endpoint.compute.endswith(f"/computes/{COMPUTE}")
    assert endpoint.provisioning_state == "Succeeded"


def test_deployments_take_the_default_or_the_named_instance_type(ml: Any) -> None:
    blue = ml.online_deployments.get("blue", ENDPOINT)
    green = ml.online_deployments.get("green", ENDPOINT)
    assert isinstance(blue, KubernetesOnlineDeployment)
    assert blue.instance_type == "defaultinstancetype"
    assert green.instance_type == "largecpu"
    assert blue.provisioning_state == green.provisioning_state == "Succeeded"


def test_an_instance_type_the_compute_does_not_define_is_refused_listing_the_valid_ones(
    ml: Any, emulator: RunningEmulator, examples: Path
) -> None:
    bad = _deployment(emulator, examples, "gray", instance_type="Standard_DS3_v2")
    message = _refusal(lambda: ml.online_deployments.begin_create_or_update(bad).result())
    assert "'Standard_DS3_v2'" in message and f"'{COMPUTE}'" in message
    assert "'defaultinstancetype'" in message and "'largecpu'" in message
    assert "gray" not in [d.name for d in ml.online_deployments.list(ENDPOINT)]


def test_a_managed_deployment_on_a_kubernetes_endpoint_is_refused(
    ml: Any, emulator: RunningEmulator, examples: Path
) -> None:
    managed = _deployment(
        emulator, examples, "gray", kubernetes=False, instance_type="Standard_DS3_v2"
    )
    message = _refusal(lambda: ml.online_deployments.begin_create_or_update(managed).result())
    assert "Managed online deployment" in message and "Kubernetes online endpoint" in message


def test_traffic_is_set_and_served_but_a_mirror_is_refused_keeping_the_old_traffic(
    ml: Any, emulator: RunningEmulator
) -> None:
    endpoint = ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {"blue": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    assert ml.online_endpoints.get(ENDPOINT).traffic == {"blue": 100, "green": 0}

    endpoint = ml.online_endpoints.get(ENDPOINT)
    endpoint.mirror_traffic = {"green": 10}
    message = _refusal(lambda: ml.online_endpoints.begin_create_or_update(endpoint).result())
    assert "Kubernetes online endpoint" in message and "cannot mirror" in message
    after = ml.online_endpoints.get(ENDPOINT)
    assert after.traffic == {"blue": 100, "green": 0}

    assert emulator.facts is not None
    key = ml.online_endpoints.get_keys(ENDPOINT).primary_key
    answer = httpx.post(
        after.scoring_uri,
        json=SAMPLE,
        headers={"Authorization": f"Bearer {key}"},
        verify=emulator.facts.ca_cert,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_a_managed_endpoint_takes_no_kubernetes_deployment(
    workspace: Workspace, emulator: RunningEmulator, examples: Path
) -> None:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    ml = workspace.ml_client
    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="k8s-managed")).result()
    try:
        deployment = _deployment(emulator, examples, "blue")
        deployment.endpoint_name = "k8s-managed"
        message = _refusal(
            lambda: ml.online_deployments.begin_create_or_update(deployment).result()
        )
        assert "Kubernetes online deployment" in message and "managed online endpoint" in message
    finally:
        ml.online_endpoints.begin_delete("k8s-managed").result()


def test_deleting_the_endpoint_deletes_its_deployments(
    workspace: Workspace, emulator: RunningEmulator, examples: Path
) -> None:
    ml = workspace.ml_client
    name = "k8s-delete"
    ml.online_endpoints.begin_create_or_update(
        KubernetesOnlineEndpoint(name=name, compute=COMPUTE)
    ).result()
    deployment = _deployment(emulator, examples, "blue")
    deployment.endpoint_name = name
    ml.online_deployments.begin_create_or_update(deployment).result()
    ml.online_endpoints.begin_delete(name).result()
    with pytest.raises(ResourceNotFoundError):
        ml.online_endpoints.get(name)
