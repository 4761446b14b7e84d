"""Promotion plans kept in the dashboard's own SQLite store, next to the audit log.

The table `plans` lives in the same `history.db` as the audit log (`$BLUEGREEN_HOME`):
one file to back up or move, and a plan's transitions land in the audit log of that
same file. A connection is opened per call, as history.py does (Streamlit sessions run on
different threads). Every session reads the same plan; a save carries the version it
read, so two sessions promoting at once cannot both win: the second gets `Conflict`.
At most one open (ready or running) plan per endpoint, enforced by a partial unique
index. Each transition saved is also written to the audit log (action `plan <verb>`).

The table `prediction_comparisons` keeps the summary of each finished comparison of the
baseline's and the candidate's predictions (rollout/predictions.py), for a review later.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rollout import history
from rollout.errors import Conflict, NotFound
from rollout.evidence import Evidence
from rollout.gates import Gates, Verdict
from rollout.predictions import Comparison
from rollout.promotion import Plan, Step, Transition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    endpoint TEXT NOT NULL COLLATE NOCASE,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plans_by_endpoint ON plans(workspace, endpoint, id);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_plan_per_endpoint
    ON plans(workspace, endpoint) WHERE state IN ('ready', 'running');
CREATE TABLE IF NOT EXISTS prediction_comparisons (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    workspace TEXT NOT NULL,
    endpoint TEXT NOT NULL COLLATE NOCASE,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_by_endpoint
    ON prediction_comparisons(workspace, endpoint, at);
"""

_OPEN = ("ready", "running")


@contextmanager
def _connect(path: Path | None) -> Iterator[sqlite3.Connection]:
    path = path or history.history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.executescript(_SCHEMA)
        yield db


# --- plans as JSON --------------------------------------------------------------------------


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON-able values (id and version belong to the row, not the body)."""
    body = asdict(plan)
    body.pop("id")
    body.pop("version")
    return body


def plan_from_dict(body: dict[str, Any], *, id: int | None = None, version: int = 0) -> Plan:
    steps = tuple(
        Step(s["kind"], s["percent"], s["min_minutes"], Gates(**s["gates"])) for s in body["steps"]
    )
    transitions = tuple(
        Transition(
            **{
                **t,
                "verdicts": tuple(Verdict(**v) for v in t["verdicts"]),
                "evidence": tuple(Evidence(**e) for e in t.get("evidence", ())),
            }
        )
        for t in body["transitions"]
    )
    return Plan(
        endpoint=body["endpoint"],
        baseline=body["baseline"],
        candidate=body["candidate"],
        steps=steps,
        workspace=body["workspace"],
        state=body["state"],
        current=body["current"],
        entered_at=body["entered_at"],
        transitions=transitions,
        id=id,
        version=version,
    )


def _plan(row: tuple[int, int, str]) -> Plan:
    return plan_from_dict(json.loads(row[2]), id=row[0], version=row[1])


# --- reading and writing --------------------------------------------------------------------


def save_plan(plan: Plan, *, path: Path | None = None, now: float | None = None) -> Plan:
    """Store a new plan (`id` None) or the next version of a stored one; returns the plan
    with its id and new version. Conflict when the endpoint has another open plan, or when
    the stored plan changed since `plan` was read (`plan.version` is not the stored one)."""
    now = time.time() if now is None else now
    body = json.dumps(plan_to_dict(plan))
    with _connect(path) as db:
        if plan.id is None:
            try:
                cursor = db.execute(
                    "INSERT INTO plans(workspace, endpoint, state, version, created_at, "
                    "updated_at, body) VALUES (?, ?, ?, 1, ?, ?, ?)",
                    (plan.workspace, plan.endpoint, plan.state, now, now, body),
                )
            except sqlite3.IntegrityError:
                other = _open_row(db, plan.workspace, plan.endpoint)
                where = f" (plan {other[0]}, {_plan(other).where()})" if other else ""
                raise Conflict(
                    f"endpoint {plan.endpoint!r} already has an open promotion plan{where}; "
                    "finish or abort it before starting another"
                ) from None
            saved = _with_row(plan, int(cursor.lastrowid or 0), 1)
            before: tuple[Transition, ...] = ()
        else:
            row = db.execute("SELECT id, version, body FROM plans WHERE id = ?", (plan.id,))
            stored = row.fetchone()
            if stored is None:
                raise NotFound(f"promotion plan {plan.id} for {plan.endpoint!r} does not exist")
            if stored[1] != plan.version:
                raise Conflict(
                    f"promotion plan {plan.id} for {plan.endpoint!r} was changed in another "
                    f"session (you have version {plan.version}, the store has {stored[1]}, "
                    f"{_plan(stored).where()}); reload it and try again"
                )
            updated = db.execute(
                "UPDATE plans SET state = ?, version = version + 1, updated_at = ?, body = ? "
                "WHERE id = ? AND version = ?",
                (plan.state, now, body, plan.id, plan.version),
            )
            if updated.rowcount != 1:  # another session saved between the read and here
                raise Conflict(
                    f"promotion plan {plan.id} for {plan.endpoint!r} was changed in another "
                    f"session while saving version {plan.version}; reload it and try again"
                )
            saved = _with_row(plan, plan.id, plan.version + 1)
            before = _plan(stored).transitions
    _audit(saved, saved.transitions[len(before) :], path)
    return saved


def _with_row(plan: Plan, id: int, version: int) -> Plan:
    return plan_from_dict(plan_to_dict(plan), id=id, version=version)


def _audit(plan: Plan, moves: tuple[Transition, ...], path: Path | None) -> None:
    for move in moves:
        steps = plan.steps
        history.record(
            workspace=plan.workspace,
            endpoint=plan.endpoint,
            action=f"plan {move.action}",
            before={"plan": plan.id, "step": _label(steps, move.from_step)},
            after={
                "plan": plan.id,
                "step": _label(steps, move.to_step),
                "verdicts": {v.gate: v.status for v in move.verdicts},
            },
            reason=move.reason,
            who=move.who or None,
            path=path,
        )


def _label(steps: tuple[Step, ...], index: int) -> str:
    return steps[index].label if 0 <= index < len(steps) else "not started"


def _open_row(db: sqlite3.Connection, workspace: str, endpoint: str) -> Any:
    return db.execute(
        "SELECT id, version, body FROM plans WHERE workspace = ? AND endpoint = ? "
        "AND state IN (?, ?) ORDER BY id DESC LIMIT 1",
        (workspace, endpoint, *_OPEN),
    ).fetchone()


def get_plan(plan_id: int, *, path: Path | None = None) -> Plan:
    """The stored plan; NotFound when there is none with that id."""
    with _connect(path) as db:
        row = db.execute("SELECT id, version, body FROM plans WHERE id = ?", (plan_id,)).fetchone()
    if row is None:
        raise NotFound(f"promotion plan {plan_id} does not exist")
    return _plan(row)


def plan_times(plan_id: int, *, path: Path | None = None) -> tuple[float, float]:
    """(created, last saved) of a stored plan, seconds since the epoch; NotFound without it."""
    with _connect(path) as db:
        row = db.execute(
            "SELECT created_at, updated_at FROM plans WHERE id = ?", (plan_id,)
        ).fetchone()
    if row is None:
        raise NotFound(f"promotion plan {plan_id} does not exist")
    return float(row[0]), float(row[1])


def active_plan(workspace: str, endpoint: str, *, path: Path | None = None) -> Plan | None:
    """The endpoint's open (ready or running) plan, if it has one."""
    with _connect(path) as db:
        row = _open_row(db, workspace, endpoint)
    return _plan(row) if row else None


def list_plans(workspace: str, endpoint: str, *, path: Path | None = None) -> list[Plan]:
    """Every plan the endpoint has had, oldest first."""
    with _connect(path) as db:
        rows = db.execute(
            "SELECT id, version, body FROM plans WHERE workspace = ? AND endpoint = ? ORDER BY id",
            (workspace, endpoint),
        ).fetchall()
    return [_plan(r) for r in rows]


# --- prediction comparisons -----------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRecord:
    """What a finished prediction comparison found, as a review report shows it."""

    at: float
    workspace: str
    endpoint: str
    baseline: str
    candidate: str
    source: str  # "sample request", the JSON Lines file's name, "mirrored sample"
    compared: int
    planned: int
    agreed: int
    agreement: float | None
    baseline_failed: int
    candidate_failed: int
    absolute_tolerance: float
    relative_tolerance: float
    cancelled: bool

    @classmethod
    def of(
        cls,
        comparison: Comparison,
        *,
        workspace: str,
        endpoint: str,
        baseline: str,
        candidate: str,
        source: str,
        at: float | None = None,
    ) -> ComparisonRecord:
        return cls(
            at=time.time() if at is None else at,
            workspace=workspace,
            endpoint=endpoint,
            baseline=baseline,
            candidate=candidate,
            source=source,
            compared=comparison.compared,
            planned=comparison.planned,
            agreed=comparison.agreed,
            agreement=comparison.agreement,
            baseline_failed=comparison.baseline_failed,
            candidate_failed=comparison.candidate_failed,
            absolute_tolerance=comparison.tolerance.absolute,
            relative_tolerance=comparison.tolerance.relative,
            cancelled=comparison.cancelled,
        )


def record_comparison(record: ComparisonRecord, *, path: Path | None = None) -> None:
    """Keep a finished comparison's summary next to the endpoint's plans."""
    with _connect(path) as db:
        db.execute(
            "INSERT INTO prediction_comparisons(at, workspace, endpoint, body) VALUES (?, ?, ?, ?)",
            (record.at, record.workspace, record.endpoint, json.dumps(asdict(record))),
        )


def list_comparisons(
    workspace: str, endpoint: str, *, since: float = 0.0, path: Path | None = None
) -> list[ComparisonRecord]:
    """The endpoint's recorded prediction comparisons since `since`, oldest first."""
    with _connect(path) as db:
        rows = db.execute(
            "SELECT body FROM prediction_comparisons WHERE workspace = ? AND endpoint = ? "
            "AND at >= ? ORDER BY at, id",
            (workspace, endpoint, since),
        ).fetchall()
    return [ComparisonRecord(**json.loads(r[0])) for r in rows]
