"""SQLite state of one emulator: endpoints, deployments, keys, assets, operations.

Everything a restart must bring back lives here, in `state.db` inside the state
directory. Documents are stored as the JSON the REST API serves, so what was
accepted is what comes back. Names are case-insensitive, as ARM's are.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Doc = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT COLLATE NOCASE PRIMARY KEY,
    doc TEXT NOT NULL,
    primary_key TEXT NOT NULL,
    secondary_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    endpoint TEXT COLLATE NOCASE NOT NULL REFERENCES endpoints(name) ON DELETE CASCADE,
    name TEXT COLLATE NOCASE NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (endpoint, name)
);
CREATE TABLE IF NOT EXISTS assets (
    kind TEXT NOT NULL,
    name TEXT COLLATE NOCASE NOT NULL,
    version TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
"""


def utc_now() -> str:
    """A timestamp as ARM writes them: UTC, microseconds, 'Z'."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def parse_utc(text: str) -> dt.datetime:
    """An ISO 8601 time as Azure's APIs take it ('Z' or an offset, up to 7 digits of a
    second); UTC when it names no zone. ValueError when it is not one."""
    parsed = dt.datetime.fromisoformat(text.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """An explicit transaction on an autocommit (isolation_level=None) connection."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Store:
    """Synchronous access to the state database; used from the server's event loop only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # meta

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # endpoints

    def list_endpoints(self) -> list[Doc]:
        rows = self._db.execute("SELECT doc FROM endpoints ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]

    def get_endpoint(self, name: str) -> Doc | None:
        row = self._db.execute("SELECT doc FROM endpoints WHERE name = ?", (name,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def insert_endpoint(self, doc: Doc, primary_key: str, secondary_key: str) -> None:
        self._db.execute(
            "INSERT INTO endpoints(name, doc, primary_key, secondary_key) VALUES (?, ?, ?, ?)",
            (doc["name"], json.dumps(doc), primary_key, secondary_key),
        )

    def update_endpoint(self, doc: Doc) -> None:
        self._db.execute(
            "UPDATE endpoints SET doc = ? WHERE name = ?", (json.dumps(doc), doc["name"])
        )

    def delete_endpoint(self, name: str) -> None:
        self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))

    def get_keys(self, endpoint: str) -> tuple[str, str] | None:
        row = self._db.execute(
            "SELECT primary_key, secondary_key FROM endpoints WHERE name = ?", (endpoint,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def set_key(self, endpoint: str, which: str, value: str) -> None:
        column = {"primary": "primary_key", "secondary": "secondary_key"}[which]
        self._db.execute(f"UPDATE endpoints SET {column} = ? WHERE name = ?", (value, endpoint))

    # deployments

    def list_deployments(self, endpoint: str | None = None) -> list[Doc]:
        if endpoint is None:
            rows = self._db.execute("SELECT doc FROM deployments ORDER BY endpoint, name")
        else:
            rows = self._db.execute(
                "SELECT doc FROM deployments WHERE endpoint = ? ORDER BY name", (endpoint,)
            )
        return [json.loads(r[0]) for r in rows.fetchall()]

    def get_deployment(self, endpoint: str, name: str) -> Doc | None:
        row = self._db.execute(
            "SELECT doc FROM deployments WHERE endpoint = ? AND name = ?", (endpoint, name)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_deployment(self, endpoint: str, doc: Doc) -> None:
        self._db.execute(
            "INSERT INTO deployments(endpoint, name, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(endpoint, name) DO UPDATE SET doc = excluded.doc",
            (endpoint, doc["name"], json.dumps(doc)),
        )

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._db.execute(
            "DELETE FROM deployments WHERE endpoint = ? AND name = ?", (endpoint, name)
        )

    # assets (models, code, environments registered from local paths)

    def get_asset(self, kind: str, name: str, version: str) -> Doc | None:
        row = self._db.execute(
            "SELECT doc FROM assets WHERE kind = ? AND name = ? AND version = ?",
            (kind, name, version),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_assets(self, kind: str, name: str | None = None) -> list[Doc]:
        """The versions of one asset, or of every asset of a kind, oldest registration first."""
        if name is None:
            rows = self._db.execute(
                "SELECT doc FROM assets WHERE kind = ? ORDER BY rowid", (kind,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT doc FROM assets WHERE kind = ? AND name = ? ORDER BY rowid", (kind, name)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def put_asset(self, kind: str, name: str, version: str, doc: Doc) -> None:
        self._db.execute(
            "INSERT INTO assets(kind, name, version, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(kind, name, version) DO UPDATE SET doc = excluded.doc",
            (kind, name, version, json.dumps(doc)),
        )

    # long-running operations

    def get_operation(self, op_id: str) -> Doc | None:
        row = self._db.execute("SELECT doc FROM operations WHERE id = ?", (op_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_operations(self, status: str) -> list[Doc]:
        rows = self._db.execute(
            "SELECT doc FROM operations WHERE json_extract(doc, '$.status') = ? ORDER BY rowid",
            (status,),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def put_operation(self, op_id: str, doc: Doc) -> None:
        self._db.execute(
            "INSERT INTO operations(id, doc) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
            (op_id, json.dumps(doc)),
        )
