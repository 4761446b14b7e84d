"""The metrics API's speed ("Live and mirrored metrics"): recording and querying.

1. Recording: how many request records per second the request log's flush path
   stores, rollups and retention included (`RequestLog.write`, the call the flush
   task makes every 0.5 s): (a) 0.5 s flushes of a peak load, and (b) the backfill
   of 1,000,000 synthetic requests over the last 24 hours across three deployments
   (blue and green live, shadow mirrored, a few 4xx/5xx and dropped copies).
2. Querying: `python -m emulator serve` on that state directory, and the real
   `azure.monitor.querymetrics.MetricsClient` over HTTPS, timing whole round trips:
   the chart's query (1 hour at PT1M, split by deployment, RequestLatency_P95 and
   RequestsPerMinute) and the 24-hour views (PT1M, PT5M, PT1H).

Targets: the 1-hour chart query <= 200 ms and the 24-hour view <= 1 s (median), and
recording faster than the data plane serves. Also timed: what the dashboard's Metrics
page asks by default (the finest granularity with at most 360 points: PT10S for an hour
on the emulator, PT5M for a day) and the finest it offers for a day (PT1M, 1440 points,
where the SDK's own parsing of 8,646 points is a good part of the time).

    .venv/bin/python -m bench.bench_metrics [--rows 1000000] [--repeat 20]

Everything runs in a temporary state directory, removed at the end; the emulator it
starts is stopped, also on error. Results: bench/results/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil

if __package__ in (None, ""):  # run as a file: python bench/bench_metrics.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.monitor.querymetrics import MetricsClient

from bench.servers import BENCH, BenchError, EmulatorServer
from emulator.requestlog import RequestLog
from emulator.requestlog_schema import DROPPED
from rollout.workspace import StaticTokenCredential

log = logging.getLogger("bench.metrics")

RESULTS = BENCH / "results" / "metrics.json"
ENDPOINT = "bench-ep"
NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
TARGETS_MS = {"1h": 200.0, "24h": 1000.0}
# (name, share of requests, mirrored, median latency in ms)
DEPLOYMENTS = (
    ("blue", 0.85, False, 8.0),
    ("green", 0.10, False, 12.0),
    ("shadow", 0.05, True, 14.0),
)


def synthetic_requests(rows: int, start: float, end: float, seed: int = 7) -> list[tuple[Any, ...]]:
    """`rows` request records in [start, end), in time order, as the data plane records them."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(start, end, rows))
    which = rng.choice(len(DEPLOYMENTS), size=rows, p=[d[1] for d in DEPLOYMENTS])
    median = np.array([d[3] for d in DEPLOYMENTS])[which]
    latency = median * rng.lognormal(0.0, 0.5, rows)
    status = rng.choice([200, 424, 429, 408], size=rows, p=[0.97, 0.015, 0.01, 0.005])
    mirrored = np.array([d[2] for d in DEPLOYMENTS])[which]
    dropped = mirrored & (rng.random(rows) < 0.05)
    status = np.where(dropped, DROPPED, status)
    model_status = np.where(status == 200, 200, np.where(status == 424, 500, 0))
    bytes_in = rng.integers(100, 400, rows)
    bytes_out = np.where(dropped, 0, 40)
    names = [d[0] for d in DEPLOYMENTS]
    return [
        (t, ENDPOINT, names[w], bool(m), int(s), int(ms) or None, lat, int(bi), int(bo))
        for t, w, m, s, ms, lat, bi, bo in zip(
            ts.tolist(),
            which.tolist(),
            mirrored.tolist(),
            status.tolist(),
            model_status.tolist(),
            latency.tolist(),
            bytes_in.tolist(),
            bytes_out.tolist(),
            strict=True,
        )
    ]


def measure_flushes(workdir: Path, rate: int, seconds: int) -> dict[str, Any]:
    """0.5 s flushes of `rate` requests per second for `seconds` of record time."""
    request_log = RequestLog(workdir / "flush.db")
    now = time.time() - seconds
    records = synthetic_requests(rate * seconds, now, now + seconds, seed=11)
    per_flush = rate // 2
    durations = []
    for i in range(0, len(records), per_flush):
        batch = records[i : i + per_flush]
        started = time.perf_counter()
        request_log.write(batch, now=batch[-1][0])  # type: ignore[arg-type]
        durations.append(time.perf_counter() - started)
    request_log._db.close()
    total = sum(durations)
    ordered = sorted(durations)
    return {
        "rate_offered_rps": rate,
        "flushes": len(durations),
        "rows_per_s": round(len(records) / total),
        "flush_ms_p50": round(statistics.median(durations) * 1000, 1),
        "flush_ms_p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
        "flush_ms_max": round(ordered[-1] * 1000, 1),
        "data_plane_peak_rps": _data_plane_peak(),
    }


def _data_plane_peak() -> float | None:
    """The routed scoring path's best req/s in bench.run's last results, when there are any."""
    try:
        runs = json.loads((BENCH / "results" / "latest.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return None
    rates = [r["throughput_rps"] for r in runs if str(r.get("target", "")).startswith("routed")]
    return round(max(rates), 1) if rates else None


def backfill(state_dir: Path, rows: int, hours: float) -> dict[str, Any]:
    """Write `rows` requests over the last `hours` through the write path, in batches."""
    end = time.time() - 1
    records = synthetic_requests(rows, end - hours * 3600, end)
    request_log = RequestLog(state_dir / "requests.db")
    started = time.perf_counter()
    batch_rows = 10_000
    for i in range(0, len(records), batch_rows):
        batch = records[i : i + batch_rows]
        request_log.write(batch, now=batch[-1][0] + 1e-3)  # type: ignore[arg-type]
    request_log.write([], now=time.time())
    elapsed = time.perf_counter() - started
    served = sum(1 for r in records if r[4] != DROPPED)
    request_log._db.close()
    return {
        "rows": rows,
        "served": served,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
    }


def time_query(
    client: MetricsClient, server: psutil.Process, resource: str, repeat: int, **query: Any
) -> dict[str, Any]:
    for _ in range(2):  # warm-up: connection, caches
        client.query_resources(resource_ids=[resource], metric_namespace=NAMESPACE, **query)
    times = []
    result = None
    client_cpu = time.process_time()
    server_cpu = sum(server.cpu_times()[:2])
    for _ in range(repeat):
        started = time.perf_counter()
        result = client.query_resources(
            resource_ids=[resource], metric_namespace=NAMESPACE, **query
        )
        times.append((time.perf_counter() - started) * 1000)
    client_cpu = (time.process_time() - client_cpu) * 1000 / repeat
    server_cpu = (sum(server.cpu_times()[:2]) - server_cpu) * 1000 / repeat
    assert result is not None
    series = sum(len(m.timeseries) for m in result[0].metrics)
    points = sum(len(t.data) for m in result[0].metrics for t in m.timeseries)
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(sorted(times)[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(max(times), 1),
        "server_cpu_ms": round(server_cpu, 1),
        "client_cpu_ms": round(client_cpu, 1),
        "series": series,
        "points": points,
        "result": result,
    }


def run(rows: int, repeat: int, peak_rps: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    emulator = EmulatorServer(workdir / "state")
    try:
        (workdir / "state").mkdir()
        log.info("flush path: 0.5 s flushes at %d req/s", peak_rps)
        flushes = measure_flushes(workdir, peak_rps, 60)
        log.info("backfill: %d requests over 24 h", rows)
        filled = backfill(workdir / "state", rows, 24)
        log.info("starting the emulator")
        facts = emulator.start()
        server = psutil.Process(int(facts["pid"]))
        client = MetricsClient(
            facts["metrics_url"],
            StaticTokenCredential(facts["token"]),
            connection_verify=facts["ca_cert"],
        )
        resource = (
            f"/subscriptions/{facts['subscription_id']}/resourceGroups/{facts['resource_group']}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{facts['workspace_name']}"
            f"/onlineEndpoints/{ENDPOINT}"
        )
        chart = {
            "metric_names": ["RequestLatency_P95", "RequestsPerMinute"],
            "aggregations": ["Average", "Total"],
            "filter": "deployment eq '*'",
        }
        hour, day = timedelta(hours=1), timedelta(hours=24)
        minute = timedelta(minutes=1)
        queries = {
            "1h @ PT1M (the chart)": ("1h", {"timespan": hour, "granularity": minute}),
            "1h @ PT10S (dashboard default, emulator)": (
                "1h",
                {"timespan": hour, "granularity": timedelta(seconds=10)},
            ),
            "24h @ PT5M (dashboard default)": (
                "24h",
                {"timespan": day, "granularity": 5 * minute},
            ),
            "24h @ PT1M (finest offered)": ("24h", {"timespan": day, "granularity": minute}),
            "24h @ PT1H": ("24h", {"timespan": day, "granularity": 60 * minute}),
        }
        timings: dict[str, Any] = {}
        for name, (target, window) in queries.items():
            log.info("query %s", name)
            timed = time_query(client, server, resource, repeat, **chart, **window)
            result = timed.pop("result")
            timed["target_ms"] = TARGETS_MS[target]
            timed["ok"] = timed["p50_ms"] <= TARGETS_MS[target]
            timings[name] = timed
            if name.startswith("24h @ PT1H"):
                counted = sum(
                    p.total or 0
                    for t in result[0].metrics["RequestsPerMinute"].timeseries
                    for p in t.data
                )
                if counted != filled["served"]:
                    raise BenchError(
                        f"the 24-hour view counts {counted:.0f} requests; "
                        f"{filled['served']} were served"
                    )
        client.close()
        size_mb = sum(p.stat().st_size for p in (workdir / "state").glob("requests.db*")) / 2**20
        return {
            "flush": flushes,
            "backfill": filled,
            "queries": timings,
            "requests_db_mib": round(size_mb, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            "repeat": repeat,
        }
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def render(results: dict[str, Any]) -> str:
    f, b = results["flush"], results["backfill"]
    peak = f["data_plane_peak_rps"]
    lines = [
        f"recording, 0.5 s flushes at {f['rate_offered_rps']} req/s: {f['rows_per_s']:,} rows/s "
        f"(flush p50 {f['flush_ms_p50']} ms, p95 {f['flush_ms_p95']} ms, max "
        f"{f['flush_ms_max']} ms); the data plane's peak (bench.run, routed): "
        + (f"{peak:,.0f} req/s" if peak else "not measured yet"),
        f"recording, backfill of {b['rows']:,} requests over 24 h: {b['rows_per_s']:,} rows/s "
        f"({b['seconds']} s, rollups and retention included); "
        f"requests.db {results['requests_db_mib']} MiB",
        "",
        f"machine: {results['cpus']} CPUs, load average {results['load_average_1m']} at the end",
        "",
        "| query (MetricsClient round trip) | series | points | p50 ms | p95 ms | max ms "
        "| CPU ms server + client | target (p50) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t in results["queries"].items():
        verdict = "ok" if t["ok"] else "MISSED"
        lines.append(
            f"| {name} | {t['series']} | {t['points']} | {t['p50_ms']} | {t['p95_ms']} "
            f"| {t['max_ms']} | {t['server_cpu_ms']} + {t['client_cpu_ms']} "
            f"| <= {t['target_ms']:.0f} ms {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_metrics", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic requests over 24 h")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per query")
    parser.add_argument("--peak-rps", type=int, default=5000, help="request rate of the flush test")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        results = run(args.rows, args.repeat, args.peak_rps)
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nraw results: {args.output}")
    return 0 if all(t["ok"] for t in results["queries"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
