"""View builders: what the Endpoints page shows for an endpoint and its deployments."""

from __future__ import annotations

import pandas as pd

from rollout.endpoints import DeploymentView, EndpointView, asset_label
from rollout.readiness import ready_counts
from rollout.views import (
    deployment_rows,
    endpoint_facts,
    split_text,
    state_badge,
    state_color,
)


def _deployment(
    name: str, state: str = "Succeeded", live: int = 0, mirror: int = 0
) -> DeploymentView:
    return DeploymentView(name, state, "model-1:1", "Standard_DS3_v2", 2, live, mirror, 5000, 1)


def _endpoint(*deployments: DeploymentView) -> EndpointView:
    return EndpointView(
        name="my-endpoint",
        state="Succeeded",
        auth_mode="key",
        scoring_uri="https://127.0.0.1:1/online/my-endpoint/score",
        traffic={d.name: d.live for d in deployments},
        mirror={d.name: d.mirror for d in deployments if d.mirror},
        deployments=deployments,
    )


def test_failed_and_transitional_states_stand_out() -> None:
    assert state_badge("Succeeded") == ":green-badge[Succeeded]"
    assert state_badge("Failed") == ":red-badge[Failed]"
    assert state_color("Updating") == state_color("Scaling") == "orange"


def test_split_text_lists_only_positive_shares_in_name_order() -> None:
    assert split_text({"green": 10, "blue": 90}) == "blue 90% · green 10%"
    assert split_text({"blue": 0}) == "none"


def test_endpoint_facts_name_compute_auth_live_and_mirror() -> None:
    endpoint = _endpoint(_deployment("blue", live=100), _deployment("green", mirror=10))
    facts = endpoint_facts(endpoint)
    assert facts == {
        "compute": "Managed",
        "auth": "Key",
        "live": "blue 100%",
        "mirror": "green 10%",
        "deployments": "2",
    }


def test_deployment_rows_carry_traffic_model_and_request_settings() -> None:
    endpoint = _endpoint(_deployment("blue", live=90), _deployment("green", "Failed", live=10))
    rows = deployment_rows(endpoint)
    assert [r["deployment"] for r in rows] == ["blue", "green"]
    assert rows[0]["live %"] == 90 and rows[1]["live %"] == 10
    assert rows[1]["state"] == "Failed"
    assert rows[0]["model"] == "model-1:1"
    assert rows[0]["timeout ms"] == 5000
    assert rows[0]["instances"] == 2


def test_asset_label_reads_arm_ids() -> None:
    arm = (
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices"
        "/workspaces/w/models/model-2/versions/3"
    )
    assert asset_label(arm) == "model-2:3"
    assert asset_label(None) == "-"
    assert asset_label("azureml:whatever") == "azureml:whatever"


def test_deployment_rows_say_how_many_instances_are_ready_of_those_asked_for() -> None:
    endpoint = _endpoint(_deployment("blue", live=100), _deployment("green"))
    rows = deployment_rows(endpoint, {"blue": 1})
    assert [r["ready"] for r in rows] == ["1/2", "?/2"]
    assert [r["ready"] for r in deployment_rows(endpoint)] == ["?/2", "?/2"]


def test_ready_counts_are_the_running_instances_at_each_deployments_last_sample() -> None:
    t0, t1 = pd.Timestamp("2026-01-05 12:00", tz="UTC"), pd.Timestamp("2026-01-05 12:01", tz="UTC")
    capacity = pd.DataFrame(
        [
            (t0, "blue", "Running", 2.0),
            (t1, "blue", "Running", 1.0),
            (t1, "blue", "NotReady", 1.0),
            (t0, "green", "Starting", 1.0),
            (t0, "green", "Running", 0.0),
        ],
        columns=["time", "deployment", "state", "value"],
    )
    assert ready_counts(capacity) == {"blue": 1, "green": 0}
    assert ready_counts(capacity.iloc[0:0]) == {}
