"""The read side of the request log: one snapshot per metric query, tier by tier.

A `Snapshot` answers for any time range from whichever tiers hold it: the coarsest
rollup as far as it is complete, finer ones after that, and raw requests for what is not
folded yet, so a query reads the same numbers whatever the writer has compacted.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from emulator.requestlog_histogram import rollup_latencies
from emulator.requestlog_schema import (
    COUNT_TIERS,
    DROPPED,
    RAW_LATENCY,
    TIERS,
    FloatArray,
    Gauge,
    IntArray,
    LatencyRollup,
)


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

    def requests_between(
        self, start: float, end: float, limit: int
    ) -> list[tuple[float, str, str, int, int, int | None, float, int, int]]:
        """The newest `limit` live requests in [start, end], newest first, as stored:
        (ts, endpoint, deployment, mirrored, status, model_status, latency_ms, bytes_in,
        bytes_out). Raw requests are kept for `raw_hours` only (see `raw_since`)."""
        rows = self._db.execute(
            "SELECT ts, endpoint, deployment, mirrored, status, model_status, latency_ms, "
            "bytes_in, bytes_out FROM requests WHERE ts >= ? AND ts <= ? AND mirrored = 0 "
            "ORDER BY ts DESC LIMIT ?",
            (start, end, limit),
        ).fetchall()
        return [tuple(row) for row in rows]

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
                raw = self._db.execute(RAW_LATENCY + " AND endpoint = ?", (lo, hi, endpoint))
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
