"""The audit log: every change made from the dashboard (when, who, what, why, outcome).

SQLite in `$BLUEGREEN_HOME` (default `./.bluegreen`). A connection is opened per
call: Streamlit runs sessions on different threads, and a shared connection is not
safe across them.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
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


def history_path() -> Path:
    return Path(os.environ.get("BLUEGREEN_HOME", ".bluegreen")).resolve() / "history.db"


@contextmanager
def _connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.executescript(_SCHEMA)
        yield db


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
    path: Path | None = None,
) -> Change:
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
    )
    with _connect(path) as db:
        db.execute(
            "INSERT INTO changes(at, who, workspace, endpoint, action, before, after, reason, "
            "outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )
    return change


def list_changes(
    *, workspace: str, endpoint: str, since: float = 0.0, path: Path | None = None
) -> list[Change]:
    with _connect(path) as db:
        rows = db.execute(
            "SELECT at, who, workspace, endpoint, action, before, after, reason, outcome "
            "FROM changes WHERE workspace = ? AND endpoint = ? AND at >= ? ORDER BY at",
            (workspace, endpoint, since),
        ).fetchall()
    return [
        Change(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7], r[8])
        for r in rows
    ]
