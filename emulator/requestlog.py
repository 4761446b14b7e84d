"""The request log: every scoring request, live or mirrored, recorded for metrics.

The data plane appends a tuple to an in-memory buffer (no I/O on the request path);
a background task writes the buffer to SQLite (`requests.db`, apart from the state
database) in one transaction every `flush_interval` seconds, on a worker thread. The
monitor's sampler adds gauge samples (instance CPU, memory and state; connections) to
a second buffer that is written the same way.

Rollups and retention, so that an emulator left running for weeks neither grows
without bound nor slows down. After each write the writer folds every finished
10-second bucket of raw requests into two rollups: `counts_10s` (requests and bytes
per endpoint, deployment, live or mirror, status and model status) and `latency_10s`
(count, sum, minimum, maximum and a histogram of latency per endpoint, deployment and
live or mirror: the latency metrics' dimensions). Finished minutes of those fold into
`counts_1m` and `latency_1m`, finished hours of latency into `latency_1h`, gauge samples
into per-minute `gauges_1m`. Watermarks in `rollup_state` say how far each tier is
complete; they change in the same transaction as its rows, so a crash neither loses nor
doubles a bucket, and queries read raw requests for whatever is not folded yet. Then
the writer deletes what has aged out: raw requests and gauge samples after `raw_hours`
(6 by default), 10-second rollups after 24 hours, minute and hour rollups after
`retention_days` (7 by default; `python -m emulator serve --retention-days N`).

Percentiles. Histogram bin i holds the latencies in (γ^(i-1), γ^i] ms, with
γ = (1+α)/(1-α) and α = 1%, and reads back as 2γ^i/(γ+1), which is within α of every
value in the bin (latencies under 1 µs count as 1 µs). A percentile read from rollups
is the value of the bin holding the nearest-rank element, clamped to the exact minimum
and maximum, so it is within 1% (relative) of the exact nearest-rank percentile of the
same requests. Counts, sums, minima, maxima and bytes are exact in every tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.store import transaction

log = logging.getLogger(__name__)

# Relative error bound of latencies read back from a histogram bin (and so of percentiles
# computed from rollups).
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
_MIN_LATENCY_MS = 0.001

DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_RAW_HOURS = 6.0
TEN_SECOND_HOURS = 24.0
# How often the writer deletes what has aged out, in seconds of (record) time.
_RETAIN_EVERY_S = 10.0
# Gauge samples are measured off the event loop and appended a moment after their
# timestamp, so their minutes are folded only once this much older than the write.
_GAUGE_LAG_S = 30.0
# Catching up (after a restart, or on a log from an older version) goes in steps of this
# much record time, at most _CATCH_UP_STEPS of them per write; queries read raw requests
# for what is not folded yet.
_CATCH_UP_STEP_S = 3600
_CATCH_UP_STEPS = 6

# The tiers: (name, grain in seconds). Request counts (every dimension) have 10 s and
# 1 min tiers; latencies (per deployment and live/mirror only, the latency metrics'
# dimensions) have 10 s, 1 min and 1 h tiers.
TIERS: tuple[tuple[str, int], ...] = (("10s", 10), ("1m", 60), ("1h", 3600))
COUNT_TIERS = ("10s", "1m")

_SCHEMA = (
    """
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
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE TABLE IF NOT EXISTS gauges (
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    instance TEXT NOT NULL,
    state TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gauges_ts ON gauges(ts);
CREATE TABLE IF NOT EXISTS gauges_1m (
    bucket INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    instance TEXT NOT NULL,
    state TEXT NOT NULL,
    metric TEXT NOT NULL,
    total REAL NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (bucket, endpoint, deployment, instance, state, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_state (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""
    + "".join(
        f"""
CREATE TABLE IF NOT EXISTS counts_{tier} (
    bucket INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    mirrored INTEGER NOT NULL,
    status INTEGER NOT NULL,
    model_status INTEGER NOT NULL,
    n INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (bucket, endpoint, deployment, mirrored, status, model_status)
) WITHOUT ROWID;
"""
        for tier in COUNT_TIERS
    )
    + "".join(
        f"""
CREATE TABLE IF NOT EXISTS latency_{tier} (
    bucket INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    mirrored INTEGER NOT NULL,
    n INTEGER NOT NULL,
    latency_sum REAL NOT NULL,
    latency_min REAL NOT NULL,
    latency_max REAL NOT NULL,
    hist_lo INTEGER NOT NULL,
    hist BLOB NOT NULL,
    PRIMARY KEY (bucket, endpoint, deployment, mirrored)
) WITHOUT ROWID;
"""
        for tier, _ in TIERS
    )
)

# status 0 marks a mirror copy that was dropped because the mirror target was saturated.
DROPPED = 0

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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


class Gauge(NamedTuple):
    """One sampled value: instance CPU, memory or capacity, or an endpoint's connections."""

    ts: float
    endpoint: str
    deployment: str
    instance: str
    state: str
    metric: str
    value: float


class LatencyRollup(NamedTuple):
    """The served requests of one deployment, live or mirrored, in one time bucket."""

    bucket: int  # its start, in epoch seconds
    endpoint: str
    deployment: str
    mirrored: int
    n: int
    latency_sum: float
    latency_min: float
    latency_max: float
    hist_lo: int
    hist: bytes


class UnitCount(NamedTuple):
    """Requests of one key in one sample unit (a minute, or 10 seconds)."""

    unit: int
    deployment: str
    mirrored: int
    status: int
    model_status: int
    n: int
    size: int  # bytes in + out


# histograms


def latency_bins(latency_ms: FloatArray) -> IntArray:
    """The histogram bin of each latency: ceil(log_γ(ms)), under 1 µs counted as 1 µs."""
    clamped = np.maximum(latency_ms, _MIN_LATENCY_MS)
    return np.ceil(np.log(clamped) / _LOG_GAMMA).astype(np.int64)


def bin_values(bins: IntArray) -> FloatArray:
    """The value each bin reads back as: within ALPHA of everything in it."""
    return np.asarray(2 * np.power(GAMMA, bins.astype(np.float64)) / (GAMMA + 1))


def encode_histogram(bins: IntArray) -> tuple[int, bytes]:
    """(lowest bin, little-endian uint32 counts from there) of some latencies' bins."""
    lo = int(bins.min())
    counts = np.bincount(bins - lo)
    return lo, counts.astype("<u4").tobytes()


def merge_histograms(parts: Iterable[tuple[int, bytes]]) -> tuple[int, bytes]:
    """Sum encoded histograms into one."""
    decoded = [(lo, np.frombuffer(blob, dtype="<u4")) for lo, blob in parts if blob]
    if not decoded:
        return 0, b""
    lo = min(p[0] for p in decoded)
    hi = max(p[0] + len(p[1]) for p in decoded)
    total = np.zeros(hi - lo, dtype=np.uint64)
    for start, counts in decoded:
        total[start - lo : start - lo + len(counts)] += counts
    return lo, total.astype("<u4").tobytes()


def nearest_rank(q: float, n: int) -> int:
    """The 1-based rank of the q-quantile of n values (nearest-rank definition)."""
    return max(1, math.ceil(q * n - 1e-9))


def grouped_quantiles(
    groups: IntArray, parts: Sequence[tuple[int, bytes]], size: int, quantiles: Sequence[float]
) -> FloatArray:
    """Quantiles of the summed histograms of each group, all groups at once.

    `parts[i]` (lowest bin, encoded counts) belongs to group `groups[i]` (0 <= g < size).
    Returns shape (len(quantiles), size), NaN for groups without counts. Each value is
    the value of the bin holding the nearest-rank element: within ALPHA of it.
    """
    out = np.full((len(quantiles), size), np.nan)
    if not parts or not quantiles:
        return out
    blobs = [blob for _, blob in parts]
    lengths = np.fromiter((len(b) // 4 for b in blobs), dtype=np.int64, count=len(blobs))
    counts = np.frombuffer(b"".join(blobs), dtype="<u4").astype(np.int64)
    firsts = np.cumsum(lengths) - lengths
    lows = np.fromiter((lo for lo, _ in parts), dtype=np.int64, count=len(parts))
    bins = np.repeat(lows - firsts, lengths) + np.arange(len(counts))
    owner = np.repeat(np.asarray(groups, dtype=np.int64), lengths)
    keep = counts > 0
    counts, bins, owner = counts[keep], bins[keep], owner[keep]
    if not len(counts):
        return out
    if len(np.unique(groups)) < len(groups) or np.any(np.diff(groups) < 0):
        order = np.lexsort((bins, owner))
        counts, bins, owner = counts[order], bins[order], owner[order]
    cumulative = np.cumsum(counts)
    totals = np.bincount(owner, weights=counts, minlength=size).astype(np.int64)
    starts = np.searchsorted(owner, np.arange(size))
    base = np.where(starts > 0, cumulative[np.maximum(starts - 1, 0)], 0)
    present = totals > 0
    for i, q in enumerate(quantiles):
        ranks = np.maximum(1, np.ceil(q * totals - 1e-9).astype(np.int64))
        index = np.searchsorted(cumulative, base + ranks)
        index = np.minimum(index, len(cumulative) - 1)
        out[i] = np.where(present, bin_values(bins[index]), np.nan)
    return out


def rollup_latencies(
    rows: Sequence[tuple[float, str, str, int, float]], grain: int
) -> list[LatencyRollup]:
    """Fold raw latencies (ts, endpoint, deployment, mirrored, latency) into rollups of
    `grain` seconds."""
    if not rows:
        return []
    keys: dict[tuple[int, str, str, int], int] = {}
    group = np.fromiter(
        (
            keys.setdefault((int(r[0] // grain) * grain, r[1], r[2], int(r[3])), len(keys))
            for r in rows
        ),
        dtype=np.int64,
        count=len(rows),
    )
    latency = np.fromiter((r[4] for r in rows), dtype=np.float64, count=len(rows))
    order = np.lexsort((latency, group))
    group, latency = group[order], latency[order]
    bins = latency_bins(latency)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)]
    sums = np.add.reduceat(latency, starts)
    by_index = list(keys)
    out: list[LatencyRollup] = []
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        lo, hist = encode_histogram(bins[start:end])
        out.append(
            LatencyRollup(
                *by_index[int(group[start])],
                n=end - start,
                latency_sum=float(sums[i]),
                latency_min=float(latency[start]),
                latency_max=float(latency[end - 1]),
                hist_lo=lo,
                hist=hist,
            )
        )
    return out


def merge_latencies(rows: Iterable[LatencyRollup], grain: int) -> list[LatencyRollup]:
    """Fold latency rollups into coarser ones of `grain` seconds."""
    groups: dict[tuple[int, str, str, int], list[LatencyRollup]] = {}
    for row in rows:
        key = (row.bucket // grain * grain, row.endpoint, row.deployment, row.mirrored)
        groups.setdefault(key, []).append(row)
    out: list[LatencyRollup] = []
    for key, parts in groups.items():
        lo, hist = merge_histograms((p.hist_lo, p.hist) for p in parts)
        out.append(
            LatencyRollup(
                *key,
                n=sum(p.n for p in parts),
                latency_sum=sum(p.latency_sum for p in parts),
                latency_min=min(p.latency_min for p in parts),
                latency_max=max(p.latency_max for p in parts),
                hist_lo=lo,
                hist=hist,
            )
        )
    return out


_RAW_LATENCY = (
    "SELECT ts, endpoint, deployment, mirrored, latency_ms FROM requests "
    f"WHERE ts >= ? AND ts < ? AND status != {DROPPED}"
)
_INSERT_LATENCY = "INSERT OR REPLACE INTO latency_{} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


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
        self._db.executescript(_SCHEMA)
        self._state = self._load_state()
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
                self._compact(now)
                if retain:
                    self._retain(now)
        except BaseException:
            self._state = self._load_state()
            raise
        if retain:
            self._last_retain = now

    def _load_state(self) -> dict[str, float]:
        return dict(self._db.execute("SELECT name, value FROM rollup_state").fetchall())

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)

    def _set_state(self, name: str, value: float) -> None:
        self._db.execute(
            "INSERT INTO rollup_state VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        self._state[name] = value

    def _start_from(self, table: str, grain: int, now: float) -> float:
        """Where a tier's watermark starts: the oldest data there is, or now."""
        (oldest,) = self._db.execute(f"SELECT MIN(ts) FROM {table}").fetchone()
        first = now if oldest is None else min(float(oldest), now)
        return float(math.floor(first / grain) * grain)

    def _compact(self, now: float) -> None:
        """Fold every finished bucket into its tier (a backlog: a few hours per call)."""
        if "10s" not in self._state:
            for tier, grain in TIERS:
                self._set_state(tier, self._start_from("requests", grain, now))
        if "gauges_1m" not in self._state:
            self._set_state("gauges_1m", self._start_from("gauges", 60, now))
        target = math.floor(now / 10) * 10
        for _ in range(_CATCH_UP_STEPS):
            lo = self._state["10s"]
            if lo >= target:
                break
            hi = min(target, lo + _CATCH_UP_STEP_S)
            self._db.execute(
                "INSERT OR REPLACE INTO counts_10s SELECT CAST(ts / 10 AS INTEGER) * 10, endpoint, "
                "deployment, mirrored, status, COALESCE(model_status, 0), COUNT(*), "
                "SUM(bytes_in + bytes_out) FROM requests WHERE ts >= ? AND ts < ? "
                "GROUP BY 1, 2, 3, 4, 5, 6",
                (lo, hi),
            )
            rows = self._db.execute(_RAW_LATENCY, (lo, hi)).fetchall()
            self._db.executemany(_INSERT_LATENCY.format("10s"), rollup_latencies(rows, 10))
            self._set_state("10s", hi)
        for (source, _), (tier, grain) in itertools.pairwise(TIERS):
            target = math.floor(self._state[source] / grain) * grain
            for _ in range(_CATCH_UP_STEPS):
                lo = self._state[tier]
                if lo >= target:
                    break
                hi = min(target, lo + max(grain, _CATCH_UP_STEP_S * grain // 60))
                if tier in COUNT_TIERS:
                    self._db.execute(
                        f"INSERT OR REPLACE INTO counts_{tier} SELECT "
                        f"CAST(bucket / {grain} AS INTEGER) * {grain}, endpoint, deployment, "
                        f"mirrored, status, model_status, SUM(n), SUM(size) FROM counts_{source} "
                        "WHERE bucket >= ? AND bucket < ? GROUP BY 1, 2, 3, 4, 5, 6",
                        (lo, hi),
                    )
                rows = self._db.execute(
                    f"SELECT * FROM latency_{source} WHERE bucket >= ? AND bucket < ?", (lo, hi)
                ).fetchall()
                merged = merge_latencies((LatencyRollup(*r) for r in rows), grain)
                self._db.executemany(_INSERT_LATENCY.format(tier), merged)
                self._set_state(tier, hi)
        target = math.floor((now - _GAUGE_LAG_S) / 60) * 60
        if self._state["gauges_1m"] < target:
            self._db.execute(
                "INSERT OR REPLACE INTO gauges_1m "
                "SELECT CAST(ts / 60 AS INTEGER) * 60, endpoint, deployment, instance, state, "
                "metric, SUM(value), MIN(value), MAX(value), COUNT(*) FROM gauges "
                "WHERE ts >= ? AND ts < ? GROUP BY 1, 2, 3, 4, 5, 6",
                (self._state["gauges_1m"], target),
            )
            self._set_state("gauges_1m", target)

    def _retain(self, now: float) -> None:
        """Delete what has aged out of each tier (never what is not folded yet)."""
        retention = self.retention_days * 86400
        state = self._state
        raw_cut = min(now - min(self.raw_hours * 3600, retention), state["10s"])
        ten_second_cut = min(now - min(TEN_SECOND_HOURS * 3600, retention), state["1m"])
        cuts = [
            ("requests", "ts", raw_cut),
            ("counts_10s", "bucket", ten_second_cut),
            ("latency_10s", "bucket", ten_second_cut),
            ("counts_1m", "bucket", now - retention),
            ("latency_1m", "bucket", min(now - retention, state["1h"])),
            ("latency_1h", "bucket", now - retention),
            ("gauges", "ts", min(raw_cut, state["gauges_1m"])),
            ("gauges_1m", "bucket", now - retention),
        ]
        for table, column, cut in cuts:
            marker = f"{table}_since"
            if cut > state.get(marker, -math.inf):
                self._db.execute(f"DELETE FROM {table} WHERE {column} < ?", (cut,))
                self._set_state(marker, cut)


class Reader:
    """The read side of the log for metric queries: one connection, one snapshot per query."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A consistent view of every tier (a read transaction), for one query."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield Snapshot(self._db)
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Snapshot:
    """What a query reads, tier by tier, hiding which tier holds which time."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.state: dict[str, float] = dict(
            db.execute("SELECT name, value FROM rollup_state").fetchall()
        )

    @property
    def raw_since(self) -> float:
        """Raw requests are kept from this time on (older ones live in rollups only)."""
        return self.state.get("requests_since", -math.inf)

    def has_data(self, endpoint: str, deployment: str | None = None) -> bool:
        """Whether the log holds anything at all for an endpoint (or deployment)."""
        if deployment is None:
            tables = ("requests", "counts_1m")
            where, args = "endpoint = ?", [endpoint]
        else:
            tables = ("gauges", "gauges_1m")
            where, args = "endpoint = ? AND deployment = ?", [endpoint, deployment]
        return any(
            self._db.execute(f"SELECT 1 FROM {t} WHERE {where} LIMIT 1", args).fetchone()
            for t in tables
        )

    def count_raw(self, endpoint: str, start: float, end: float, limit: int) -> int:
        """Raw requests of an endpoint in [start, end), counting no further than `limit`."""
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE endpoint = ? AND ts >= ? "
            "AND ts < ? LIMIT ?)",
            (endpoint, start, end, limit),
        ).fetchone()
        return int(count)

    def latency_combos(self, endpoint: str, start: float, end: float) -> set[tuple[str, int]]:
        """The (deployment, mirrored) pairs with requests served in [start, end)."""
        tiers = [(t, g) for t, g in reversed(TIERS) if t in COUNT_TIERS]
        found: set[tuple[str, int]] = set()
        for tier, lo, hi in self._pieces(tiers, start, end):
            table, column = (f"counts_{tier}", "bucket") if tier else ("requests", "ts")
            found.update(
                self._db.execute(
                    f"SELECT DISTINCT deployment, mirrored FROM {table} WHERE endpoint = ? "
                    f"AND {column} >= ? AND {column} < ? AND status != ?",
                    (endpoint, lo, hi, DROPPED),
                ).fetchall()
            )
        return found

    def raw_latencies(
        self,
        endpoint: str,
        start: float,
        interval: int,
        buckets: int,
        series: Mapping[tuple[str, int], int],
    ) -> tuple[IntArray, FloatArray]:
        """The latencies of the requests served in the window, with their group.

        The window is `buckets` intervals from `start`; `series` numbers the (deployment,
        mirrored) pairs wanted (others are left out), and a latency's group is
        series * buckets + bucket. SQLite computes the groups, so Python only ever sees
        pairs of numbers.
        """
        if not series:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cases = " ".join("WHEN deployment = ? AND mirrored = ? THEN ?" for _ in series)
        pairs = ", ".join("(?, ?)" for _ in series)
        sql = (
            f"SELECT (CASE {cases} END) * ? + CAST((ts - ?) / ? AS INTEGER), latency_ms "
            "FROM requests WHERE endpoint = ? AND ts >= ? AND ts < ? AND status != ? "
            f"AND (deployment, mirrored) IN (VALUES {pairs})"
        )
        args: list[object] = []
        for (deployment, mirrored), number in series.items():
            args += [deployment, mirrored, number]
        args += [buckets, start, interval, endpoint, start, start + buckets * interval, DROPPED]
        for deployment, mirrored in series:
            args += [deployment, mirrored]
        rows = self._db.execute(sql, args).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        table = np.array(rows, dtype=np.float64)
        return table[:, 0].astype(np.int64), table[:, 1].copy()

    def _pieces(
        self, tiers: Sequence[tuple[str, int]], start: float, end: float
    ) -> list[tuple[str, float, float]]:
        """Which tier answers for which part of [start, end): coarse tiers as far as they
        are complete, then finer ones, then raw requests ('')."""
        pieces: list[tuple[str, float, float]] = []
        cursor = start
        for tier, grain in tiers:
            mark = min(self.state.get(tier, -math.inf), end)
            if mark > cursor and cursor % grain == 0:
                pieces.append((tier, cursor, mark))
                cursor = mark
        if cursor < end:
            pieces.append(("", cursor, end))
        return pieces

    def unit_counts(
        self,
        endpoint: str,
        start: float,
        end: float,
        unit: int,
        keep: Collection[str] = ("deployment", "mirrored", "status", "model_status"),
    ) -> list[tuple[int, str, int, int, int, int, int]]:
        """Requests per key and per unit (60 or 10 seconds) in [start, end), from every tier.

        Rows are `UnitCount`s, as plain tuples (there can be many). Key columns not in
        `keep` are merged (deployment '', mirrored 0, status 200, model status 0), except
        that dropped mirror copies (status 0) always stay apart.
        """
        tiers = [(t, g) for t, g in reversed(TIERS) if t in COUNT_TIERS and unit % g == 0]
        out: list[tuple[int, str, int, int, int, int, int]] = []
        for tier, lo, hi in self._pieces(tiers, start, end):
            if tier:
                table, column, model, count, size = (
                    f"counts_{tier}",
                    "bucket",
                    "model_status",
                    "SUM(n)",
                    "SUM(size)",
                )
            else:
                table, column, model, count, size = (
                    "requests",
                    "ts",
                    "COALESCE(model_status, 0)",
                    "COUNT(*)",
                    "SUM(bytes_in + bytes_out)",
                )
            key = ", ".join(
                (
                    "deployment" if "deployment" in keep else "''",
                    "mirrored" if "mirrored" in keep else "0",
                    "status"
                    if "status" in keep
                    else f"CASE WHEN status = {DROPPED} THEN {DROPPED} ELSE 200 END",
                    model if "model_status" in keep else "0",
                )
            )
            sql = (
                f"SELECT CAST({column} / {unit} AS INTEGER) * {unit}, {key}, {count}, {size} "
                f"FROM {table} WHERE endpoint = ? AND {column} >= ? AND {column} < ? "
                "GROUP BY 1, 2, 3, 4, 5"
            )
            out.extend(self._db.execute(sql, (endpoint, lo, hi)).fetchall())
        return out

    def latency_rollups(
        self, endpoint: str, start: float, end: float, grain: int, *, histograms: bool
    ) -> list[LatencyRollup]:
        """Served requests' latencies in [start, end) as rollups no coarser than `grain` s.

        The coarsest tier whose grain divides `grain` answers for as far as it is
        complete, finer tiers for the rest, and raw requests for the last seconds.
        """
        tiers = [(t, g) for t, g in reversed(TIERS) if grain % g == 0]
        hist = "hist" if histograms else "x''"
        out: list[LatencyRollup] = []
        for tier, lo, hi in self._pieces(tiers, start, end):
            if tier:
                rows = self._db.execute(
                    "SELECT bucket, endpoint, deployment, mirrored, n, latency_sum, latency_min, "
                    f"latency_max, hist_lo, {hist} FROM latency_{tier} "
                    "WHERE bucket >= ? AND bucket < ? AND endpoint = ?",
                    (lo, hi, endpoint),
                ).fetchall()
                out.extend(LatencyRollup(*r) for r in rows)
            else:
                raw = self._db.execute(_RAW_LATENCY + " AND endpoint = ?", (lo, hi, endpoint))
                out.extend(rollup_latencies(raw.fetchall(), 10))
        return out

    def gauges(
        self,
        endpoint: str,
        deployment: str,
        metrics: Sequence[str],
        start: float,
        end: float,
        *,
        unit: int,
    ) -> list[Gauge]:
        """Gauge samples in [start, end); per-minute means where only those are left.

        Raw samples answer when they cover the window or when `unit` is under a minute;
        otherwise minute rollups answer for as far as they are complete.
        """
        marks = ", ".join("?" * len(metrics))
        where = f"endpoint = ? AND deployment = ? AND metric IN ({marks})"
        cursor = start
        out: list[Gauge] = []
        if unit >= 60 and start < self.state.get("gauges_since", -math.inf):
            mark = min(self.state.get("gauges_1m", -math.inf), end)
            if mark > cursor:
                rows = self._db.execute(
                    "SELECT bucket, endpoint, deployment, instance, state, metric, total / n "
                    f"FROM gauges_1m WHERE bucket >= ? AND bucket < ? AND {where}",
                    (cursor, mark, endpoint, deployment, *metrics),
                ).fetchall()
                out.extend(Gauge(*r) for r in rows)
                cursor = mark
        rows = self._db.execute(
            f"SELECT * FROM gauges WHERE ts >= ? AND ts < ? AND {where}",
            (cursor, end, endpoint, deployment, *metrics),
        ).fetchall()
        out.extend(Gauge(*r) for r in rows)
        return out
