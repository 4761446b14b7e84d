"""A traffic change, from the plan to what is in force: check, send with If-Match, follow,
read back, write the audit log. The one flow every traffic change of the dashboard takes
(the editor, a plan's step, a roll back, an undo); the page only shows its progress.

`TrafficState` is an endpoint's live and mirror traffic as plain dicts; the audit log keeps
it (`record`) and gives it back (`from_record`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rollout import history
from rollout.changes import Operation, begin_set_traffic
from rollout.endpoints import EndpointView, get_endpoint, weight
from rollout.errors import Conflict, RolloutError
from rollout.rules import TrafficPlan
from rollout.views import describe
from rollout.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrafficState:
    """An endpoint's live and mirror traffic over its deployments, as plain dicts.

    `traffic` has every deployment (0 included); `mirror` only positive shares.
    """

    endpoint: str
    deployments: tuple[str, ...]
    traffic: dict[str, int]
    mirror: dict[str, int] = field(default_factory=dict)
    kubernetes: bool = False  # a Kubernetes endpoint: Azure refuses any mirror traffic

    @classmethod
    def build(
        cls,
        endpoint: str,
        deployments: Sequence[str],
        traffic: Mapping[str, int],
        mirror: Mapping[str, int],
        *,
        kubernetes: bool = False,
    ) -> TrafficState:
        names = tuple(deployments)
        spelling = {n.lower(): n for n in names}
        # A name the endpoint no longer has is kept only when it has a share, so that the
        # rules refuse it by name instead of it silently vanishing from the change.
        extra = {k: int(v) for k, v in traffic.items() if int(v) and k.lower() not in spelling}
        return cls(
            endpoint=endpoint,
            deployments=names,
            traffic={n: weight(traffic, n) for n in names} | extra,
            mirror={spelling.get(k.lower(), k): int(v) for k, v in mirror.items() if int(v)},
            kubernetes=kubernetes,
        )

    @classmethod
    def of(cls, view: EndpointView) -> TrafficState:
        names = [d.name for d in view.deployments]
        return cls.build(view.name, names, view.traffic, view.mirror, kubernetes=view.kubernetes)

    @classmethod
    def from_record(
        cls, endpoint: str, deployments: Sequence[str], side: Mapping[str, Any]
    ) -> TrafficState:
        """The state an audit-log entry's `before` or `after` describes."""
        return cls.build(
            endpoint, deployments, dict(side.get("traffic") or {}), dict(side.get("mirror") or {})
        )

    def plan(self) -> TrafficPlan:
        return TrafficPlan(
            self.endpoint, self.deployments, self.traffic, self.mirror, kubernetes=self.kubernetes
        )

    def record(self) -> dict[str, dict[str, int]]:
        """As the audit log keeps it."""
        return {"traffic": dict(self.traffic), "mirror": dict(self.mirror)}

    def same_traffic(self, other: TrafficState) -> bool:
        return not self.plan().changes_from(other.plan())


def rollback_source(changes: Sequence[history.Change]) -> history.Change | None:
    """The last traffic change that was applied (succeeded); its `before` is what to restore."""
    applied = [c for c in changes if c.action == "traffic" and c.outcome == "Succeeded"]
    return applied[-1] if applied else None


def change_rows(before: TrafficState, after: TrafficState) -> list[dict[str, str]]:
    """One row per deployment whose live or mirror share changes, as 'before → after'."""

    def arrow(old: int, new: int) -> str:
        return f"{old}% → {new}%" if old != new else f"{new}% (unchanged)"

    return [
        {"deployment": name, "live": arrow(lb, la), "mirror": arrow(mb, ma)}
        for name, lb, la, mb, ma in after.plan().changes_from(before.plan())
    ]


@dataclass(frozen=True)
class Outcome:
    """How an apply ended: what to tell the user and the traffic read back afterwards."""

    kind: Literal["succeeded", "conflict", "failed"]
    message: str
    state: TrafficState | None


# --- applying it ----------------------------------------------------------------------------


def apply(
    ws: Workspace,
    before: TrafficState,
    after: TrafficState,
    *,
    reason: str = "",
    undo_of: int | None = None,
    follow: Callable[[Operation], bool],
    keep: Callable[[EndpointView | None], None],
) -> Outcome:
    """Send `after`, refused as a Conflict unless the endpoint still has `before`.

    `follow` waits for the operation (showing its progress) and says whether it succeeded;
    whatever happened, the endpoint is read back and handed to `keep` (None when it could not
    be read), and the attempt is written to the audit log (`undo_of`: the entry it undoes).
    The rules are checked by begin_set_traffic before anything is sent.
    """
    endpoint = after.endpoint
    audit = _Audit(ws, before, after, reason, time.monotonic(), undo_of)
    try:
        operation = begin_set_traffic(
            ws,
            endpoint,
            traffic=after.traffic,
            mirror=after.mirror,
            expected_traffic=before.traffic,
            expected_mirror=before.mirror,
        )
    except Conflict as exc:
        audit.record(f"Failed: {exc}")
        state, _ = _read_back(ws, endpoint, keep)
        return Outcome("conflict", f"Not applied: {exc}", state)
    except RolloutError as exc:
        return _failed(ws, audit, str(exc), keep)
    if not follow(operation):
        return _failed(ws, audit, _failure_of(operation), keep)
    state, problem = _read_back(ws, endpoint, keep)
    note = audit.record("Succeeded")
    if state is None:
        message = f"The traffic change was applied, but {problem}"
    else:
        message = f"Traffic of {endpoint} is now {describe(state.traffic, state.mirror)}."
    return Outcome("succeeded", message + note, state)


def _failure_of(operation: Any) -> str:
    try:
        operation.result(timeout=0)
    except RolloutError as exc:
        return str(exc)
    return f"{operation.description} did not finish within {operation.elapsed:.0f} s"


def _failed(
    ws: Workspace, audit: _Audit, message: str, keep: Callable[[EndpointView | None], None]
) -> Outcome:
    note = audit.record(f"Failed: {message}")
    state, problem = _read_back(ws, audit.after.endpoint, keep)
    if state is None:
        still = f"The traffic in force could not be read back: {problem}"
    else:
        still = f"The traffic in force is still {describe(state.traffic, state.mirror)}."
    return Outcome("failed", f"Not applied: {message}. {still}{note}", state)


def _read_back(
    ws: Workspace, endpoint: str, keep: Callable[[EndpointView | None], None]
) -> tuple[TrafficState | None, str]:
    """The endpoint read fresh, handed to `keep` (what the pages show next)."""
    try:
        view = get_endpoint(ws, endpoint)
    except RolloutError as exc:
        keep(None)
        return None, str(exc)
    keep(view)
    return TrafficState.of(view), ""


@dataclass(frozen=True)
class _Audit:
    """What the audit entry of one apply says, whatever its outcome."""

    ws: Workspace
    before: TrafficState
    after: TrafficState
    reason: str
    started: float  # time.monotonic() when it was sent
    undo_of: int | None

    def record(self, outcome: str) -> str:
        """Write the entry; a note for the user when the log could not be written."""
        try:
            history.record(
                workspace=self.ws.key,
                endpoint=self.after.endpoint,
                action="traffic",
                before=self.before.record(),
                after=self.after.record(),
                reason=self.reason,
                outcome=outcome,
                who=self.ws.who(),
                duration_s=time.monotonic() - self.started,
                undo_of=self.undo_of,
            )
        except (sqlite3.Error, OSError) as exc:
            log.warning("audit log not written: %s", exc)
            return f" (The audit log could not be written: {exc}.)"
        return ""
