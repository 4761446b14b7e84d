"""The request log's tables and rows: what `requests.db` holds, tier by tier.

`requests` holds every scoring request (live or mirrored; status 0 marks a dropped mirror
copy), `gauges` the sampler's readings. The rollup tables fold those into 10-second,
minute and hour buckets (`requestlog_rollups.py`), and `rollup_state` holds the
watermarks that say how far each tier is complete and from when each table keeps data.
Every table is created IF NOT EXISTS, so a log an older version wrote opens as it is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

# The tiers: (name, grain in seconds). Request counts (every dimension) have 10 s and
# 1 min tiers; latencies (per deployment and live/mirror only, the latency metrics'
# dimensions) have 10 s, 1 min and 1 h tiers.
TIERS: tuple[tuple[str, int], ...] = (("10s", 10), ("1m", 60), ("1h", 3600))
COUNT_TIERS = ("10s", "1m")

SCHEMA = (
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

# The served requests' latencies of [lo, hi), what the latency rollups fold.
RAW_LATENCY = (
    "SELECT ts, endpoint, deployment, mirrored, latency_ms FROM requests "
    f"WHERE ts >= ? AND ts < ? AND status != {DROPPED}"
)


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
