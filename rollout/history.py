"""The audit log: every change made from the dashboard (when, who, what, why, outcome,
how long it took, and which entry it undid).

SQLite in `$BLUEGREEN_HOME` (default `./.bluegreen`). A connection is opened per
call: Streamlit runs sessions on different threads, and a shared connection is not
safe across them. A log written by an earlier version gains the newer columns (empty
for its old rows) the first time it is opened.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    workspace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_endpoint ON changes(workspace, endpoint, at);
"""
# Columns added after the first version: (name, declaration).
_ADDED = (("duration_s", "REAL"), ("undo_of", "INTEGER"))
_COLUMNS = (
    "id, at, who, workspace, endpoint, action, before, after, reason, outcome, duration_s, undo_of"
)


@dataclass(frozen=True)
class Change:
    at: float
    who: str
    workspace: str
    endpoint: str
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str
    outcome: str
    id: int | None = None
    duration_s: float | None = None  # from sending the change to its end; None if not timed
    undo_of: int | None = None  # the entry this change undid

    @property
    def succeeded(self) -> bool:
        return self.outcome == "Succeeded"


def history_path() -> Path:
    return Path(os.environ.get("BLUEGREEN_HOME", ".bluegreen")).resolve() / "history.db"


@contextmanager
def _connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10)) as db, db:
        ensure_schema(db)
        yield db


def ensure_schema(db: sqlite3.Connection) -> None:
    """The `changes` table as this version has it (older logs gain the newer columns)."""
    db.executescript(_SCHEMA)
    present = {row[1] for row in db.execute("PRAGMA table_info(changes)")}
    for name, declaration in _ADDED:
        if name not in present:
            db.execute(f"ALTER TABLE changes ADD COLUMN {name} {declaration}")


def record(
    *,
    workspace: str,
    endpoint: str,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str = "",
    outcome: str = "Succeeded",
    who: str | None = None,
    duration_s: float | None = None,
    undo_of: int | None = None,
    path: Path | None = None,
) -> Change:
    """Write one entry; returns it with its id."""
    change = Change(
        at=time.time(),
        who=who or getpass.getuser(),
        workspace=workspace,
        endpoint=endpoint,
        action=action,
        before=before,
        after=after,
        reason=reason,
        outcome=outcome,
        duration_s=duration_s,
        undo_of=undo_of,
    )
    with _connect(path) as db:
        cursor = db.execute(
            "INSERT INTO changes(at, who, workspace, endpoint, action, before, after, reason, "
            "outcome, duration_s, undo_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                change.at,
                change.who,
                workspace,
                endpoint,
                action,
                json.dumps(before),
                json.dumps(after),
                reason,
                outcome,
                duration_s,
                undo_of,
            ),
        )
    return replace(change, id=cursor.lastrowid)


def _change(row: tuple[Any, ...]) -> Change:
    id_, at, who, workspace, endpoint, action, before, after, reason, outcome, took, undo = row
    return Change(
        at, who, workspace, endpoint, action, json.loads(before), json.loads(after), reason,
        outcome, id_, took, undo,
    )  # fmt: skip


def list_changes(
    *,
    workspace: str,
    endpoint: str | None,
    since: float = 0.0,
    newest_first: bool = False,
    limit: int | None = None,
    path: Path | None = None,
) -> list[Change]:
    """The workspace's entries (one endpoint's, or all with `endpoint=None`) from `since`,
    oldest first unless `newest_first`; at most `limit` of them."""
    where, args = "workspace = ? AND at >= ?", [workspace, since]
    if endpoint is not None:
        where += " AND endpoint = ?"
        args.append(endpoint)
    order = "DESC" if newest_first else "ASC"
    sql = f"SELECT {_COLUMNS} FROM changes WHERE {where} ORDER BY at {order}, id {order}"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    with _connect(path) as db:
        rows = db.execute(sql, args).fetchall()
    return [_change(r) for r in rows]


def get_change(id: int, *, path: Path | None = None) -> Change | None:
    with _connect(path) as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM changes WHERE id = ?", (id,)).fetchone()
    return None if row is None else _change(row)


def endpoints_changed(*, workspace: str, path: Path | None = None) -> list[str]:
    """The endpoints the log has entries for, in name order (deleted ones included)."""
    with _connect(path) as db:
        rows = db.execute(
            "SELECT DISTINCT endpoint FROM changes WHERE workspace = ? ORDER BY endpoint",
            (workspace,),
        ).fetchall()
    return [r[0] for r in rows]
