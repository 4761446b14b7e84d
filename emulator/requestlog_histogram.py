"""Latency histograms and percentiles: the math behind the latency rollups.

Histogram bin i holds the latencies in (γ^(i-1), γ^i] ms, with γ = (1+α)/(1-α) and
α = 1%, and reads back as 2γ^i/(γ+1), which is within α of every value in the bin
(latencies under 1 µs count as 1 µs). A percentile read from rollups is the value of the
bin holding the nearest-rank element, clamped to the exact minimum and maximum, so it is
within 1% (relative) of the exact nearest-rank percentile of the same requests. Counts,
sums, minima, maxima and bytes are exact in every tier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from emulator.requestlog_schema import FloatArray, IntArray, LatencyRollup

# Relative error bound of latencies read back from a histogram bin (and so of percentiles
# computed from rollups).
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
_MIN_LATENCY_MS = 0.001


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
