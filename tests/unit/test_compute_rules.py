"""Where a deployment may run: Kubernetes or managed, and the compute's instance types; and
the Kubernetes mirror rule as the traffic editor's plans apply it."""

from __future__ import annotations

from rollout.compute_rules import check_compute_type, check_instance_type, compute_label
from rollout.endpoints import DeploymentView, EndpointView
from rollout.traffic_change import TrafficState
from rollout.views import deployment_rows, endpoint_facts

COMPUTE_ID = "/subscriptions/s/resourceGroups/g/providers/P/workspaces/w/computes/k8s-compute"


def _endpoint(compute: str | None) -> EndpointView:
    kind = "Kubernetes" if compute else "Managed"
    blue = DeploymentView("blue", "Succeeded", "m:1", "t", 1, 100, 0, 5000, 1, kind)
    green = DeploymentView("green", "Succeeded", "m:2", "t", 1, 0, 0, 5000, 1, kind)
    return EndpointView(
        "k8s-ep", "Succeeded", "key", "", {"blue": 100, "green": 0}, {}, (blue, green), compute
    )


def test_the_compute_label_names_the_kubernetes_compute_or_says_managed() -> None:
    assert compute_label(None) == "Managed"
    assert compute_label(COMPUTE_ID) == "Kubernetes: k8s-compute"
    assert compute_label("k8s-compute") == "Kubernetes: k8s-compute"


def test_a_kubernetes_deployment_on_a_kubernetes_endpoint_is_accepted() -> None:
    found = check_compute_type(
        "ep", "blue", endpoint_compute=COMPUTE_ID, deployment_type="Kubernetes"
    )
    assert found == []
    assert check_compute_type("ep", "blue", endpoint_compute=None, deployment_type="Managed") == []


def test_a_managed_deployment_on_a_kubernetes_endpoint_is_refused_naming_both() -> None:
    found = check_compute_type("ep", "blue", endpoint_compute=COMPUTE_ID, deployment_type="Managed")
    assert [v.code for v in found] == ["DeploymentComputeTypeMismatch"]
    assert "'blue'" in found[0].message and "'ep'" in found[0].message
    assert "Kubernetes: k8s-compute" in found[0].message


def test_a_kubernetes_deployment_on_a_managed_endpoint_is_refused() -> None:
    found = check_compute_type("ep", "blue", endpoint_compute=None, deployment_type="Kubernetes")
    assert [v.code for v in found] == ["DeploymentComputeTypeMismatch"]
    assert "managed online endpoint" in found[0].message


def test_an_instance_type_must_be_one_the_compute_defines() -> None:
    valid = ["defaultinstancetype", "largecpu"]
    assert check_instance_type("ep", "b", "LargeCPU", compute="k8s-compute", valid=valid) == []
    found = check_instance_type("ep", "b", "Standard_DS3_v2", compute="k8s-compute", valid=valid)
    assert [v.code for v in found] == ["InstanceTypeNotFound"]
    message = found[0].message
    assert "'Standard_DS3_v2'" in message and "'k8s-compute'" in message
    assert "'defaultinstancetype', 'largecpu'" in message


def test_a_mirror_planned_on_a_kubernetes_endpoint_breaks_the_rule() -> None:
    state = TrafficState.of(_endpoint(COMPUTE_ID))
    assert state.kubernetes
    mirrored = TrafficState(
        state.endpoint, state.deployments, state.traffic, {"green": 10}, kubernetes=True
    )
    assert [v.code for v in mirrored.plan().violations()] == ["MirrorOnKubernetes"]
    managed = TrafficState.of(_endpoint(None))
    assert not managed.kubernetes
    on_managed = TrafficState(managed.endpoint, managed.deployments, managed.traffic, {"green": 10})
    assert on_managed.plan().violations() == []


def test_the_pages_rows_show_the_compute() -> None:
    assert endpoint_facts(_endpoint(COMPUTE_ID))["compute"] == "Kubernetes: k8s-compute"
    assert endpoint_facts(_endpoint(None))["compute"] == "Managed"
    rows = deployment_rows(_endpoint(COMPUTE_ID))
    assert [r["compute"] for r in rows] == ["Kubernetes: k8s-compute"] * 2
    assert [r["compute"] for r in deployment_rows(_endpoint(None))] == ["Managed"] * 2
