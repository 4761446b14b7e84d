"""The decisions behind the Deployments page's scale and delete controls."""

from __future__ import annotations

from dataclasses import replace

from components.deployment_actions import (
    confirmation_problem,
    delete_blocker,
    delete_refusal,
    name_matches,
    pending_capacity,
    scale_blocker,
)
from rollout.endpoints import DeploymentView, EndpointView

BLUE = DeploymentView("blue", "Succeeded", "model-1:1", "Standard_DS3_v2", 1, 90, 0, 5000, 1)
GREEN = DeploymentView("green", "Succeeded", "model-2:1", "Standard_DS3_v2", 1, 10, 0, 5000, 1)
OLD = DeploymentView("old", "Succeeded", "model-0:1", "Standard_DS3_v2", 2, 0, 0, 5000, 4)
SHADOW = DeploymentView("shadow", "Succeeded", "model-3:1", "Standard_DS3_v2", 1, 0, 20, None, None)
ENDPOINT = EndpointView(
    name="my-endpoint",
    state="Succeeded",
    auth_mode="key",
    scoring_uri="https://127.0.0.1/online/my-endpoint/score",
    traffic={"blue": 90, "green": 10, "old": 0, "shadow": 0},
    mirror={"shadow": 20},
    deployments=(BLUE, GREEN, OLD, SHADOW),
)
READ_ONLY = "Read-only mode is on: no changes."


def test_a_deployment_with_live_traffic_cannot_be_deleted_and_the_reason_says_why() -> None:
    reason = delete_refusal(ENDPOINT, "green")
    assert reason is not None
    assert "10% live traffic" in reason
    assert "set its traffic to 0 first" in reason


def test_a_mirror_target_cannot_be_deleted() -> None:
    reason = delete_refusal(ENDPOINT, "shadow")
    assert reason is not None and "20% mirror traffic" in reason


def test_a_deployment_without_traffic_can_be_deleted() -> None:
    assert delete_refusal(ENDPOINT, "old") is None
    assert delete_blocker(ENDPOINT, OLD, None) is None


def test_read_only_mode_blocks_delete_and_scale_with_its_reason() -> None:
    assert delete_blocker(ENDPOINT, OLD, READ_ONLY) == READ_ONLY
    assert scale_blocker(OLD, 3, READ_ONLY) == READ_ONLY


def test_a_busy_deployment_cannot_be_scaled_or_deleted() -> None:
    updating = replace(OLD, state="Updating")
    assert "updating" in (scale_blocker(updating, 3, None) or "")
    assert "updating" in (delete_blocker(ENDPOINT, updating, None) or "")


def test_scale_is_offered_within_1_to_50_instances() -> None:
    assert scale_blocker(BLUE, 2, None) is None
    assert scale_blocker(BLUE, 50, None) is None
    assert "1 to 50" in (scale_blocker(BLUE, 51, None) or "")
    assert "1 to 50" in (scale_blocker(BLUE, 0, None) or "")


def test_a_wrong_or_missing_name_says_what_was_typed_and_what_is_needed() -> None:
    assert confirmation_problem(" old ", "old") is None
    assert confirmation_problem("Old", "old") == "You typed 'Old', not 'old'; nothing was deleted."
    assert "Type 'old' in the box above" in (confirmation_problem("", "old") or "")
    assert "Type 'old' in the box above" in (confirmation_problem(None, "old") or "")


def test_delete_is_confirmed_only_by_the_exact_name() -> None:
    assert name_matches("old", "old")
    assert name_matches("  old ", "old")
    assert not name_matches("Old", "old")
    assert not name_matches("ol", "old")
    assert not name_matches("", "old")
    assert not name_matches(None, "old")


def test_pending_capacity_is_twice_concurrency_times_instances() -> None:
    assert pending_capacity(OLD, 2) == 16
    assert pending_capacity(SHADOW, 3) == 6  # default concurrency 1
