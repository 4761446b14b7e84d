"""Rollups and retention of the request log: folding finished buckets, deleting old ones.

So that an emulator left running for weeks neither grows without bound nor slows down,
after each write the writer folds every finished 10-second bucket of raw requests into
two rollups: `counts_10s` (requests and bytes per endpoint, deployment, live or mirror,
status and model status) and `latency_10s` (count, sum, minimum, maximum and a histogram
of latency per endpoint, deployment and live or mirror: the latency metrics'
dimensions). Finished minutes of those fold into `counts_1m` and `latency_1m`, finished
hours of latency into `latency_1h`, gauge samples into per-minute `gauges_1m`.
Watermarks in `rollup_state` say how far each tier is complete; they change in the same
transaction as its rows, so a crash neither loses nor doubles a bucket, and queries read
raw requests for whatever is not folded yet. Then the writer deletes what has aged out:
raw requests and gauge samples after `raw_hours` (6 by default), 10-second rollups after
24 hours, minute and hour rollups after `retention_days` (7 by default; `python -m
emulator serve --retention-days N`).
"""

from __future__ import annotations

import itertools
import math
import sqlite3

from emulator.requestlog_histogram import merge_latencies, rollup_latencies
from emulator.requestlog_schema import COUNT_TIERS, RAW_LATENCY, TIERS, LatencyRollup

DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_RAW_HOURS = 6.0
TEN_SECOND_HOURS = 24.0
# Gauge samples are measured off the event loop and appended a moment after their
# timestamp, so their minutes are folded only once this much older than the write.
_GAUGE_LAG_S = 30.0
# Catching up (after a restart, or on a log from an older version) goes in steps of this
# much record time, at most _CATCH_UP_STEPS of them per write; queries read raw requests
# for what is not folded yet.
_CATCH_UP_STEP_S = 3600
_CATCH_UP_STEPS = 6
_INSERT_LATENCY = "INSERT OR REPLACE INTO latency_{} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class Rollups:
    """The tiers' watermarks, and the folding and deleting that move them (the writer's side).

    Every method runs inside the writer's transaction; after a failed one, `reload` the
    watermarks from the database.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.state: dict[str, float] = {}
        self.reload()

    def reload(self) -> None:
        self.state = dict(self._db.execute("SELECT name, value FROM rollup_state").fetchall())

    def _set(self, name: str, value: float) -> None:
        self._db.execute(
            "INSERT INTO rollup_state VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        self.state[name] = value

    def _start_from(self, table: str, grain: int, now: float) -> float:
        """Where a tier's watermark starts: the oldest data there is, or now."""
        (oldest,) = self._db.execute(f"SELECT MIN(ts) FROM {table}").fetchone()
        first = now if oldest is None else min(float(oldest), now)
        return float(math.floor(first / grain) * grain)

    def compact(self, now: float) -> None:
        """Fold every finished bucket into its tier (a backlog: a few hours per call)."""
        if "10s" not in self.state:
            for tier, grain in TIERS:
                self._set(tier, self._start_from("requests", grain, now))
        if "gauges_1m" not in self.state:
            self._set("gauges_1m", self._start_from("gauges", 60, now))
        target = math.floor(now / 10) * 10
        for _ in range(_CATCH_UP_STEPS):
            lo = self.state["10s"]
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
            rows = self._db.execute(RAW_LATENCY, (lo, hi)).fetchall()
            self._db.executemany(_INSERT_LATENCY.format("10s"), rollup_latencies(rows, 10))
            self._set("10s", hi)
        for (source, _), (tier, grain) in itertools.pairwise(TIERS):
            target = math.floor(self.state[source] / grain) * grain
            for _ in range(_CATCH_UP_STEPS):
                lo = self.state[tier]
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
                self._set(tier, hi)
        target = math.floor((now - _GAUGE_LAG_S) / 60) * 60
        if self.state["gauges_1m"] < target:
            self._db.execute(
                "INSERT OR REPLACE INTO gauges_1m "
                "SELECT CAST(ts / 60 AS INTEGER) * 60, endpoint, deployment, instance, state, "
                "metric, SUM(value), MIN(value), MAX(value), COUNT(*) FROM gauges "
                "WHERE ts >= ? AND ts < ? GROUP BY 1, 2, 3, 4, 5, 6",
                (self.state["gauges_1m"], target),
            )
            self._set("gauges_1m", target)

    def retain(self, now: float, *, retention_days: float, raw_hours: float) -> None:
        """Delete what has aged out of each tier (never what is not folded yet)."""
        retention = retention_days * 86400
        state = self.state
        raw_cut = min(now - min(raw_hours * 3600, retention), state["10s"])
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
                self._set(marker, cut)
