"""Undo of an audit entry: what would put the endpoint back, checked against its state now.

Pure: the entry and the endpoint as read now in, an `Undo` (what to send, in words) or a
`Refusal` (why not) out. The History page confirms and sends it through the same change
flow as any other change, so the If-Match check still refuses an undo the endpoint moved
away from after this check.

What each kind of entry undoes to:
- traffic (the editor, a plan step, a roll back): the live and mirror traffic before it,
  checked with Azure's traffic rules against the deployments there now;
- scale: the instance count before it;
- a deployment created here: deleting it, once it has no live or mirror traffic.
Deletes cannot be undone (Azure keeps nothing of a deleted deployment or endpoint), plan
moves are undone by their traffic entry or the plan's Abort, and a new endpoint is deleted
on the Deploy page, with its name typed to confirm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from rollout.endpoints import EndpointView
from rollout.history import Change
from rollout.rules import check_delete_deployment, check_instance_count, check_traffic
from rollout.views import describe

Kind = Literal["traffic", "scale", "delete_deployment"]


@dataclass(frozen=True)
class Undo:
    change: Change
    kind: Kind
    words: str  # what it will do, for the confirmation
    traffic: Mapping[str, int] | None = None
    mirror: Mapping[str, int] | None = None
    deployment: str | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class Refusal:
    change: Change
    reason: str


def _shares(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v > 0}


def plan_undo(change: Change, endpoint: EndpointView | None) -> Undo | Refusal:
    """What undoing `change` would send to `endpoint` as it is now, or why it cannot."""

    def refuse(reason: str) -> Refusal:
        return Refusal(change, reason)

    if change.undo_of is None and not change.succeeded:
        return refuse(f"it did not apply ({change.outcome}), so there is nothing to undo")
    if change.undo_of is not None and not change.succeeded:
        return refuse(f"this undo did not apply ({change.outcome})")
    if change.action.startswith("plan "):
        return refuse(
            "a plan's move is undone by the traffic entry it made (undo that one), or by "
            "the plan's Abort on the Rollout page"
        )
    if change.action in ("delete", "delete_endpoint"):
        what = "endpoint" if change.action == "delete_endpoint" else "deployment"
        return refuse(
            f"Azure keeps nothing of a deleted {what}: deploy it again from the Deploy page"
        )
    if change.action == "create_endpoint":
        return refuse(
            f"delete endpoint '{change.endpoint}' on the Deploy page (Delete endpoint), where "
            "its name is typed to confirm"
        )
    if endpoint is None:
        return refuse(f"endpoint '{change.endpoint}' is gone")
    names = [d.name for d in endpoint.deployments]
    if change.action == "traffic":
        return _undo_traffic(change, endpoint, names)
    if change.action == "scale":
        return _undo_scale(change, endpoint, names)
    if change.action == "create_deployment":
        return _undo_create(change, endpoint, names)
    return refuse(f"an entry of kind '{change.action}' has no undo")


def _undo_traffic(change: Change, endpoint: EndpointView, names: list[str]) -> Undo | Refusal:
    traffic, mirror = _shares(change.before.get("traffic")), _shares(change.before.get("mirror"))
    gone = sorted({*traffic, *mirror} - set(names))
    if gone:
        listed = ", ".join(f"'{g}'" for g in gone)
        return Refusal(
            change, f"it would give traffic to {listed}, no longer a deployment of {endpoint.name}"
        )
    if traffic == _shares(endpoint.traffic) and mirror == _shares(endpoint.mirror):
        return Refusal(change, f"{endpoint.name} already has that traffic")
    problems = check_traffic(endpoint.name, names, traffic, mirror)
    if problems:
        return Refusal(change, "; ".join(v.message for v in problems))
    return Undo(
        change, "traffic", f"set {endpoint.name} to {describe(traffic, mirror)}",
        traffic={n: traffic.get(n, 0) for n in names}, mirror=mirror,
    )  # fmt: skip


def _undo_scale(change: Change, endpoint: EndpointView, names: list[str]) -> Undo | Refusal:
    deployment = str(change.before.get("deployment", ""))
    count = change.before.get("instance_count")
    if deployment not in names:
        return Refusal(change, f"deployment '{deployment}' of {endpoint.name} is gone")
    problems = check_instance_count(endpoint.name, deployment, count)
    if problems or not isinstance(count, int):
        return Refusal(change, "; ".join(v.message for v in problems) or "no count recorded")
    now = next(d.instance_count for d in endpoint.deployments if d.name == deployment)
    if now == count:
        return Refusal(change, f"'{deployment}' already has {count} instance(s)")
    return Undo(
        change, "scale", f"scale '{deployment}' from {now} back to {count} instance(s)",
        deployment=deployment, instance_count=count,
    )  # fmt: skip


def _undo_create(change: Change, endpoint: EndpointView, names: list[str]) -> Undo | Refusal:
    deployment = str(change.after.get("deployment", ""))
    if deployment not in names:
        return Refusal(change, f"deployment '{deployment}' of {endpoint.name} is gone already")
    problems = check_delete_deployment(
        endpoint.name, deployment, dict(endpoint.traffic), dict(endpoint.mirror)
    )
    if problems:
        return Refusal(change, "; ".join(v.message for v in problems))
    return Undo(
        change, "delete_deployment", f"delete deployment '{deployment}' of {endpoint.name}",
        deployment=deployment,
    )  # fmt: skip
