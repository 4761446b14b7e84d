"""The request log: every scoring request, live or mirrored, recorded for metrics.

The data plane appends a tuple to an in-memory buffer (no I/O on the request path);
a background task writes the buffer to SQLite (`requests.db`, apart from the state
database) in one transaction every `flush_interval` seconds, on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    mirrored INTEGER NOT NULL,
    status INTEGER NOT NULL,
    model_status INTEGER,
    latency_ms REAL NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests(endpoint, ts);
"""

# status 0 marks a mirror copy that was dropped because the mirror target was saturated.
DROPPED = 0


class Record(NamedTuple):
    ts: float
    endpoint: str
    deployment: str
    mirrored: bool
    status: int
    model_status: int | None
    latency_ms: float
    bytes_in: int
    bytes_out: int


class RequestLog:
    def __init__(self, path: Path, *, flush_interval: float = 0.5) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self._buffer: list[Record] = []
        self._task: asyncio.Task[None] | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def add(self, record: Record) -> None:
        self._buffer.append(record)

    def record(
        self,
        endpoint: str,
        deployment: str,
        *,
        mirrored: bool,
        status: int,
        model_status: int | None,
        started: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        self._buffer.append(
            Record(
                time.time(),
                endpoint,
                deployment,
                mirrored,
                status,
                model_status,
                elapsed,
                bytes_in,
                bytes_out,
            )
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._write, self._take())
        self._db.close()

    def _take(self) -> list[Record]:
        batch, self._buffer = self._buffer, []
        return batch

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            batch = self._take()
            if batch:
                try:
                    await asyncio.to_thread(self._write, batch)
                except sqlite3.Error:
                    log.exception("could not write %d request records", len(batch))

    def _write(self, batch: list[Record]) -> None:
        if not batch:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
