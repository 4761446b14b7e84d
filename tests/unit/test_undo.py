"""Undo of an audit entry (rollout/undo.py): what it sends, and why it refuses."""

from __future__ import annotations

from rollout.endpoints import DeploymentView, EndpointView
from rollout.history import Change
from rollout.undo import Refusal, Undo, plan_undo


def _dep(name: str, live: int = 0, mirror: int = 0, count: int = 1) -> DeploymentView:
    return DeploymentView(name, "Succeeded", f"{name}:1", "Standard_DS3_v2", count, live, mirror,
                          5000, 1)  # fmt: skip


def _endpoint(*deployments: DeploymentView) -> EndpointView:
    return EndpointView(
        "my-endpoint", "Succeeded", "key", "https://x/score",
        {d.name: d.live for d in deployments},
        {d.name: d.mirror for d in deployments if d.mirror},
        deployments,
    )  # fmt: skip


def _change(
    action: str, before: dict[str, object], after: dict[str, object], outcome: str = "Succeeded"
) -> Change:
    return Change(1.0, "ana", "ws", "my-endpoint", action, before, after, "", outcome, id=7)


TO_90_10 = _change(
    "traffic",
    {"traffic": {"blue": 100, "green": 0}, "mirror": {"green": 10}},
    {"traffic": {"blue": 90, "green": 10}, "mirror": {}},
)


def test_a_traffic_change_undoes_to_the_traffic_before_it() -> None:
    found = plan_undo(TO_90_10, _endpoint(_dep("blue", 90), _dep("green", 10)))
    assert isinstance(found, Undo) and found.kind == "traffic"
    assert found.traffic == {"blue": 100, "green": 0}
    assert found.mirror == {"green": 10}
    assert found.words == "set my-endpoint to live blue 100% · mirror green 10%"


def test_a_traffic_undo_naming_a_deployment_that_is_gone_is_refused_by_name() -> None:
    found = plan_undo(TO_90_10, _endpoint(_dep("green", 100)))
    assert isinstance(found, Refusal)
    assert "'blue'" in found.reason and "no longer a deployment of my-endpoint" in found.reason


def test_an_undo_to_the_traffic_already_in_force_is_refused() -> None:
    found = plan_undo(TO_90_10, _endpoint(_dep("blue", 100), _dep("green", 0, mirror=10)))
    assert isinstance(found, Refusal) and "already has that traffic" in found.reason


def test_a_failed_entry_has_nothing_to_undo() -> None:
    failed = _change("traffic", TO_90_10.before, TO_90_10.after, outcome="Failed: Conflict")
    found = plan_undo(failed, _endpoint(_dep("blue", 90), _dep("green", 10)))
    assert isinstance(found, Refusal) and "did not apply (Failed: Conflict)" in found.reason


def test_a_scale_undoes_to_the_count_before_and_checks_the_deployment() -> None:
    scale = _change(
        "scale", {"deployment": "green", "instance_count": 1},
        {"deployment": "green", "instance_count": 3},
    )  # fmt: skip
    found = plan_undo(scale, _endpoint(_dep("blue", 100), _dep("green", count=3)))
    assert isinstance(found, Undo) and (found.deployment, found.instance_count) == ("green", 1)
    assert found.words == "scale 'green' from 3 back to 1 instance(s)"
    gone = plan_undo(scale, _endpoint(_dep("blue", 100)))
    assert isinstance(gone, Refusal) and "'green' of my-endpoint is gone" in gone.reason


def test_a_new_deployment_undoes_to_its_delete_once_it_has_no_traffic() -> None:
    created = _change("create_deployment", {"deployments": ["blue"]}, {"deployment": "green"})
    found = plan_undo(created, _endpoint(_dep("blue", 100), _dep("green")))
    assert isinstance(found, Undo) and found.kind == "delete_deployment"
    busy = plan_undo(created, _endpoint(_dep("blue", 90), _dep("green", 10)))
    assert isinstance(busy, Refusal) and "10% live traffic" in busy.reason


def test_deletes_and_plan_moves_say_why_they_have_no_undo() -> None:
    deleted = plan_undo(_change("delete", {"deployment": "blue"}, {"deleted": True}), None)
    assert (
        isinstance(deleted, Refusal) and "keeps nothing of a deleted deployment" in deleted.reason
    )
    move = plan_undo(_change("plan promote", {"step": "a"}, {"step": "b"}), None)
    assert isinstance(move, Refusal) and "Abort" in move.reason
    gone = plan_undo(TO_90_10, None)
    assert isinstance(gone, Refusal) and "endpoint 'my-endpoint' is gone" in gone.reason
