"""Changes made outside the dashboard: noticed when an endpoint read differs from the last one
the dashboard recorded, with no change of its own in between.

What is compared is what a change can alter: live and mirror traffic and the deployments
with their instance counts (not provisioning states, which move by themselves). Each state
seen is kept in the audit log's database (`observed`), one row per state, with the times it
was first and last seen; a row is written only when the state differs from the last one, so
a dashboard left open writes nothing while nothing changes. `seen` of the last row is
brought forward at most once a minute, which bounds the "between" of a change noticed later.

A difference with an entry of the dashboard's own for that endpoint since the last state
seen is the dashboard's doing; one without is a change made elsewhere (the CLI, studio,
another tool), told as "traffic changed outside the dashboard between 10:02 and 10:14".
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rollout import history
from rollout.endpoints import EndpointView

SEEN_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observed (
    id INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    state TEXT NOT NULL,
    outside INTEGER NOT NULL,  -- 1: it differs from the previous row with no entry between
    since REAL                 -- for outside: the previous state's last sighting
);
CREATE INDEX IF NOT EXISTS observed_by_endpoint ON observed(workspace, endpoint, first_seen);
"""


@dataclass(frozen=True)
class State:
    """What a change can alter on one endpoint."""

    traffic: dict[str, int]
    mirror: dict[str, int]
    deployments: dict[str, int]  # name -> instance count

    @classmethod
    def of(cls, view: EndpointView) -> State:
        return cls(
            {k: int(v) for k, v in sorted(view.traffic.items()) if v},
            {k: int(v) for k, v in sorted(view.mirror.items()) if v},
            {d.name: d.instance_count for d in sorted(view.deployments, key=lambda d: d.name)},
        )

    def to_json(self) -> str:
        return json.dumps(
            {"traffic": self.traffic, "mirror": self.mirror, "deployments": self.deployments},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data: dict[str, Any] = json.loads(text)
        return cls(data["traffic"], data["mirror"], data["deployments"])

    def what_differs(self, other: State) -> list[str]:
        """The parts that differ from `other`: traffic, mirror, deployments, instances."""
        found = []
        if self.traffic != other.traffic:
            found.append("traffic")
        if self.mirror != other.mirror:
            found.append("mirror")
        if set(self.deployments) != set(other.deployments):
            found.append("deployments")
        elif self.deployments != other.deployments:
            found.append("instances")
        return found

    def words(self) -> str:
        live = ", ".join(f"{k} {v}%" for k, v in self.traffic.items()) or "off"
        mirror = ", ".join(f"{k} {v}%" for k, v in self.mirror.items()) or "none"
        deps = ", ".join(f"{k} ×{n}" for k, n in self.deployments.items()) or "none"
        return f"live {live}; mirror {mirror}; deployments {deps}"


@dataclass(frozen=True)
class OutsideChange:
    workspace: str
    endpoint: str
    since: float  # the earlier state was last seen then
    at: float  # the new one was first seen then
    before: State
    after: State

    @property
    def parts(self) -> list[str]:
        return self.after.what_differs(self.before)

    def words(self) -> str:
        def clock(t: float) -> str:
            return datetime.fromtimestamp(t).strftime("%H:%M")

        parts = " and ".join(self.parts) or "state"
        verb = "changed" if len(self.parts) < 2 else "were changed"
        return (
            f"{parts} of {self.endpoint} {verb} outside the dashboard between "
            f"{clock(self.since)} and {clock(self.at)}"
        )


@contextmanager
def _connect(path: Path | None) -> Iterator[sqlite3.Connection]:
    path = path or history.history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
        history.ensure_schema(db)
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")  # one writer decides per difference, across sessions
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def observe(
    workspace: str, view: EndpointView, *, now: float, path: Path | None = None
) -> OutsideChange | None:
    """Record what `view` shows; the outside change it reveals, if it is one."""
    state = State.of(view)
    text = state.to_json()
    with _connect(path) as db:
        last = db.execute(
            "SELECT id, last_seen, state FROM observed WHERE workspace = ? AND endpoint = ? "
            "ORDER BY first_seen DESC, id DESC LIMIT 1",
            (workspace, view.name),
        ).fetchone()
        if last is not None and last[2] == text:
            if now - last[1] >= SEEN_EVERY_S:
                db.execute("UPDATE observed SET last_seen = ? WHERE id = ?", (now, last[0]))
            return None
        outside = False
        if last is not None:
            ours = db.execute(
                "SELECT 1 FROM changes WHERE workspace = ? AND endpoint = ? AND at >= ? LIMIT 1",
                (workspace, view.name, last[1]),
            ).fetchone()
            outside = ours is None
        db.execute(
            "INSERT INTO observed(workspace, endpoint, first_seen, last_seen, state, outside, "
            "since) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (workspace, view.name, now, now, text, int(outside), last[1] if last else None),
        )
    if not outside or last is None:
        return None
    return OutsideChange(workspace, view.name, last[1], now, State.from_json(last[2]), state)


def outside_changes(
    *, workspace: str, endpoint: str | None, since: float = 0.0, path: Path | None = None
) -> list[OutsideChange]:
    """The changes noticed as made outside the dashboard, newest first."""
    where, args = "o.workspace = ? AND o.outside = 1 AND o.first_seen >= ?", [workspace, since]
    if endpoint is not None:
        where += " AND o.endpoint = ?"
        args.append(endpoint)
    with _connect(path) as db:
        history_rows: Sequence[tuple[Any, ...]] = db.execute(
            "SELECT o.endpoint, o.since, o.first_seen, o.state, "
            "(SELECT p.state FROM observed p WHERE p.workspace = o.workspace "
            " AND p.endpoint = o.endpoint AND (p.first_seen < o.first_seen "
            " OR (p.first_seen = o.first_seen AND p.id < o.id)) "
            " ORDER BY p.first_seen DESC, p.id DESC LIMIT 1) "
            f"FROM observed o WHERE {where} ORDER BY o.first_seen DESC, o.id DESC",
            args,
        ).fetchall()
    return [
        OutsideChange(workspace, ep, since, at, State.from_json(before), State.from_json(after))
        for ep, since, at, after, before in history_rows
        if before is not None
    ]


def state_at(*, workspace: str, endpoint: str, at: float, path: Path | None = None) -> State | None:
    """The last state seen of `endpoint` at or before `at`; None when none was seen by then."""
    with _connect(path) as db:
        row = db.execute(
            "SELECT state FROM observed WHERE workspace = ? AND endpoint = ? AND first_seen <= ? "
            "ORDER BY first_seen DESC, id DESC LIMIT 1",
            (workspace, endpoint, at),
        ).fetchone()
    return None if row is None else State.from_json(row[0])
