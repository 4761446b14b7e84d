"""What instances did and printed, kept for the Logs query API (emulator/logs_api.py).

`EventLog` keeps the life-cycle events of every deployment's instances (started, ready,
probe failed, restarted, out of memory, init failed) in `events.db`, for as long as the
request log keeps requests; they are the rows of AmlOnlineEndpointEventLog. `ConsoleLines`
keeps the last lines each deployment's instances printed, in memory only, for
AmlOnlineEndpointConsoleLog (the deployment's log files, shown by getLogs, keep more).
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

# The events Azure's inference-server container life cycle knows, as the emulator names
# them (Azure's own names for these events are not documented).
STARTED = "InstanceStarted"
READY = "InstanceReady"
NOT_READY = "ReadinessProbeFailed"
LIVENESS_FAILED = "LivenessProbeFailed"
EXITED = "InstanceExited"
RESTARTED = "InstanceRestarted"
OUT_OF_MEMORY = "OutOfMemory"
INIT_FAILED = "InitFailed"
STOPPED = "InstanceStopped"
EVENT_NAMES = (
    STARTED,
    READY,
    NOT_READY,
    LIVENESS_FAILED,
    EXITED,
    RESTARTED,
    OUT_OF_MEMORY,
    INIT_FAILED,
    STOPPED,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    instance TEXT NOT NULL,
    name TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events(ts);
"""
_PRUNE_EVERY = 500  # events written between two deletes of expired ones
CONSOLE_LINES = 2000  # kept per deployment


class Event(NamedTuple):
    ts: float
    endpoint: str
    deployment: str
    instance: str
    name: str
    message: str


class EventLog:
    """Instance life-cycle events in SQLite, written on the event loop (they are rare)."""

    def __init__(self, path: Path, *, retention_days: float) -> None:
        self.retention_days = retention_days
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._written = 0

    def record(
        self, endpoint: str, deployment: str, instance: str, name: str, message: str
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (now, endpoint, deployment, instance, name, message),
            )
            self._written += 1
            if self._written % _PRUNE_EVERY == 0:
                cutoff = now - self.retention_days * 86400
                self._db.execute("DELETE FROM events WHERE ts < ?", (cutoff,))

    def between(self, start: float, end: float) -> list[Event]:
        """The events from `start` to `end` (epoch seconds), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM events WHERE ts >= ? AND ts <= ? ORDER BY ts",
                (start, end),
            ).fetchall()
        return [Event(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ConsoleLine(NamedTuple):
    ts: float
    endpoint: str
    deployment: str
    instance: str
    message: str


class ConsoleLines:
    """The last `CONSOLE_LINES` lines each deployment's instances printed (thread-safe:
    the instances' log pumps add to it from their own threads)."""

    def __init__(self, per_deployment: int = CONSOLE_LINES) -> None:
        self._per_deployment = per_deployment
        self._lines: dict[tuple[str, str], collections.deque[ConsoleLine]] = {}
        self._lock = threading.Lock()

    def add(self, endpoint: str, deployment: str, instance: str, lines: Iterable[bytes]) -> None:
        now = time.time()
        key = (endpoint.lower(), deployment.lower())
        with self._lock:
            kept = self._lines.get(key)
            if kept is None:
                kept = self._lines[key] = collections.deque(maxlen=self._per_deployment)
            for line in lines:
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                kept.append(ConsoleLine(now, endpoint, deployment, instance, text))

    def forget(self, endpoint: str, deployment: str | None = None) -> None:
        """Drop a deployment's lines (or all of an endpoint's) once it is deleted."""
        with self._lock:
            for key in list(self._lines):
                if key[0] == endpoint.lower() and (
                    deployment is None or deployment.lower() == key[1]
                ):
                    del self._lines[key]

    def between(self, start: float, end: float) -> list[ConsoleLine]:
        with self._lock:
            every = [line for kept in self._lines.values() for line in kept]
        return sorted((x for x in every if start <= x.ts <= end), key=lambda x: x.ts)
