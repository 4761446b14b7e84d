"""The request log: every scoring request, live or mirrored, recorded for metrics.

The data plane appends a tuple to an in-memory buffer (no I/O on the request path);
a background task writes the buffer to SQLite (`requests.db`, apart from the state
database) in one transaction every `flush_interval` seconds, on a worker thread. The
monitor's sampler adds gauge samples (instance CPU, memory and state; connections) to
a second buffer that is written the same way. After each write the writer folds
finished buckets into rollups and deletes what has aged out.

The parts: `requestlog_schema.py` (the tables and rows), `requestlog_rollups.py`
(rollups and retention), `requestlog_histogram.py` (latency histograms and
percentiles), `requestlog_reader.py` (what metric queries read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from emulator.requestlog_reader import Reader
from emulator.requestlog_rollups import DEFAULT_RAW_HOURS, DEFAULT_RETENTION_DAYS, Rollups
from emulator.requestlog_schema import SCHEMA, Gauge, Record
from emulator.store import transaction

log = logging.getLogger(__name__)

# How often the writer deletes what has aged out, in seconds of (record) time.
_RETAIN_EVERY_S = 10.0


class RequestLog:
    def __init__(
        self,
        path: Path,
        *,
        flush_interval: float = 0.5,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        raw_hours: float = DEFAULT_RAW_HOURS,
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self.raw_hours = raw_hours
        self._buffer: list[Record] = []
        self._gauges: list[Gauge] = []
        self._task: asyncio.Task[None] | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._rollups = Rollups(self._db)
        self._last_retain = -math.inf
        self._reader: Reader | None = None

    def add(self, record: Record) -> None:
        self._buffer.append(record)

    def add_gauges(self, gauges: Iterable[Gauge]) -> None:
        self._gauges.extend(gauges)

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
        records, gauges, now = self._take()
        await asyncio.to_thread(self.write, records, gauges, now=now)
        if self._reader is not None:
            self._reader.close()
        self._db.close()

    def reader(self) -> Reader:
        """The read side for metric queries (one connection, made on first use)."""
        if self._reader is None:
            self._reader = Reader(self.path)
        return self._reader

    def _take(self) -> tuple[list[Record], list[Gauge], float]:
        # Every record appended before this moment carries an earlier timestamp, so once
        # these are written every bucket that ended by `now` is complete.
        now = time.time()
        records, self._buffer = self._buffer, []
        gauges, self._gauges = self._gauges, []
        return records, gauges, now

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            records, gauges, now = self._take()
            try:
                await asyncio.to_thread(self.write, records, gauges, now=now)
            except sqlite3.Error:
                log.exception("could not write %d request records", len(records))

    # the write path (one thread at a time: the flush task, or a benchmark)

    def write(self, records: Sequence[Record], gauges: Sequence[Gauge] = (), *, now: float) -> None:
        """Store records and gauge samples, fold finished buckets, drop what has aged out.

        `now` is the time up to which every record has been handed in (the flush's time).
        """
        if records or gauges:
            with self._transaction():
                if records:
                    self._db.executemany(
                        "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records
                    )
                if gauges:
                    self._db.executemany("INSERT INTO gauges VALUES (?, ?, ?, ?, ?, ?, ?)", gauges)
        # Folding and deleting: a second transaction, so a failure there loses no record.
        retain = now - self._last_retain >= _RETAIN_EVERY_S
        try:
            with self._transaction():
                self._rollups.compact(now)
                if retain:
                    self._rollups.retain(
                        now, retention_days=self.retention_days, raw_hours=self.raw_hours
                    )
        except BaseException:
            self._rollups.reload()
            raise
        if retain:
            self._last_retain = now

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)
