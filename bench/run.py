"""Issue 3 ("Speed"): the emulator's scoring path against Microsoft's inference server.

Same score.py (examples/model-1), same request (examples/sample-request.json), one
instance each, the same client and concurrency:

  (a) routed     - the emulator's scoring URI over HTTPS with key auth: auth, traffic
                   routing, admission, the request log, forwarding to the instance
                   over its Unix socket;
  (b) direct     - that same instance process, called on its own Unix socket;
  (c) azmlinfsrv - azureml-inference-server-http, 1 gunicorn worker, on the same
                   score.py and AZUREML_MODEL_DIR as the instance;

and (a) on a second endpoint that mirrors 50% of its live traffic to a model-2
deployment, plus the idle memory of an instance and of azmlinfsrv. Rows are measured
in interleaved slices, so that other work on the (shared) machine weighs on all alike.

    make bench                              # or:
    .venv/bin/python -m bench.run [--duration 9] [--rounds 3] [--concurrency 1 8]
                                  [--quick] [--only ...] [--profile] [--emulator-root DIR]

Everything runs on 127.0.0.1 and in a temporary state directory; every process the
benchmark starts is stopped at the end, also on error, Ctrl-C or SIGTERM. Results:
bench/results/latest.json; bench/README.md explains them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

if __package__ in (None, ""):  # run as a file: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import LoadResult, Target, pool, request_once, run_load
from bench.servers import (
    BENCH,
    REPO,
    Azmlinfsrv,
    BenchError,
    EmulatorServer,
    cpu_seconds,
    ensure_azmlinfsrv_venv,
    memory_mib,
)

log = logging.getLogger("bench")

EXAMPLES = REPO / "examples"
RESULTS = BENCH / "results" / "latest.json"
ENDPOINT = "bench-endpoint"
MIRROR_ENDPOINT = "bench-mirror"
MIRROR_PERCENT = 50

SCENARIOS = ("routed", "direct", "azmlinfsrv", "mirror")
LABELS = {
    "routed": "(a) emulator, routed (HTTPS, key auth, request log)",
    "direct": "(b) emulator instance, direct (Unix socket)",
    "azmlinfsrv": "(c) azmlinfsrv, 1 worker",
    "routed+mirror": f"(a) routed, mirror {MIRROR_PERCENT}% to a model-2 deployment",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--duration", type=float, default=9.0, help="measured seconds per server and concurrency"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="slices the duration is measured in, interleaved"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up before each slice"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8], help="concurrent clients (list)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s per measurement in one round (a smoke test)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the emulator with py-spy under routed load (needs py-spy in .venv)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="measure only these (default: all)",
    )
    parser.add_argument(
        "--renice-mirror",
        type=int,
        default=0,
        metavar="N",
        help="experiment: run the mirror target's instance at nice N (a proposal, not Azure)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON results go")
    parser.add_argument(
        "--emulator-root",
        type=Path,
        default=REPO,
        help="run the emulator package from this tree (to measure a candidate change)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 3.0, 1, 1.0
    if args.duration <= 0 or args.duration > 120 or args.warmup < 0 or args.warmup > 30:
        parser.error("--duration must be in (0, 120] and --warmup in [0, 30] seconds")
    if args.rounds < 1 or args.duration / args.rounds < 0.5:
        parser.error("--rounds must be at least 1, with at least 0.5 s per slice")
    if any(c < 1 or c > 64 for c in args.concurrency):
        parser.error("--concurrency values must be between 1 and 64")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # A SIGTERM (a CI timeout, say) unwinds like Ctrl-C, so every server is stopped.
    signal.signal(signal.SIGTERM, _terminate)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    started = time.monotonic()
    try:
        results = run(
            duration=args.duration,
            rounds=args.rounds,
            warmup=args.warmup,
            concurrency=sorted(set(args.concurrency)),
            profile=args.profile,
            only=set(args.only),
            renice_mirror=args.renice_mirror,
            emulator_root=args.emulator_root.resolve(),
        )
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    tmp.replace(args.output)
    print(render(results))
    print(f"\nraw results: {_shown(args.output)} ({results['wall_time_s']} s in all)")
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(
    *,
    duration: float,
    rounds: int,
    warmup: float,
    concurrency: list[int],
    profile: bool,
    only: set[str],
    emulator_root: Path,
    renice_mirror: int = 0,
) -> dict[str, Any]:
    sklearn_version = (EXAMPLES / "model-1" / "model" / "sklearn_version.txt").read_text().strip()
    installed = importlib.metadata.version("scikit-learn")
    if installed != sklearn_version:
        raise BenchError(
            f"model-1 was trained with scikit-learn {sklearn_version} but .venv has {installed}; "
            "run `make models` to retrain"
        )
    # What is measured, taken before the emulator starts (its code may change meanwhile).
    software: dict[str, Any] = {
        "emulator_root": _shown(emulator_root),
        "emulator_source_sha256": _emulator_digest(emulator_root),
        "git_head": _git_head(),
        **{
            name: importlib.metadata.version(name)
            for name in ("uvicorn", "starlette", "httpx", "scikit-learn")
        },
    }
    az_python = ensure_azmlinfsrv_venv(sklearn_version) if "azmlinfsrv" in only else None
    body = (EXAMPLES / "sample-request.json").read_bytes()
    max_concurrency = max(concurrency)

    with contextlib.ExitStack() as cleanup:
        tmp = Path(tempfile.mkdtemp(prefix="bluegreen-bench-"))
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        emulator = EmulatorServer(tmp / "state", root=emulator_root)
        cleanup.callback(emulator.stop)
        log.info("starting the emulator in %s", emulator.state_dir)
        facts = emulator.start()
        files = _write_yaml(tmp, max_concurrency)
        steps = [("endpoint", False), ("blue", True)]
        if "mirror" in only:
            # A second endpoint with its own blue and a green mirror: the benchmark
            # alternates between the two without reconfiguring anything.
            steps += [
                ("m-endpoint", False),
                ("m-blue", True),
                ("m-green", False),
                ("m-mirror", False),
            ]
        for name, all_traffic in steps:
            log.info("%s", emulator.apply(files[name], all_traffic=all_traffic))
        tls = ssl.create_default_context(cafile=facts["ca_cert"])
        blue = emulator.worker(ENDPOINT, "blue")
        targets = {
            "direct": Target("direct", body, host="instance", uds=blue.socket),
            "routed": _scoring_target("routed", emulator, ENDPOINT, body, tls),
        }
        processes = {"router": emulator.pid, "instance": blue.pid}
        if "mirror" in only:
            targets["routed+mirror"] = _scoring_target(
                "routed+mirror", emulator, MIRROR_ENDPOINT, body, tls
            )
            processes["mirror_endpoint_instance"] = emulator.worker(MIRROR_ENDPOINT, "blue").pid
            processes["mirror_instance"] = emulator.worker(MIRROR_ENDPOINT, "green").pid
            if renice_mirror:
                os.setpriority(os.PRIO_PROCESS, processes["mirror_instance"], renice_mirror)
        azmlinfsrv: Azmlinfsrv | None = None
        if az_python is not None:
            azmlinfsrv = Azmlinfsrv(az_python, tmp / "azmlinfsrv.log")
            cleanup.callback(azmlinfsrv.stop)
            log.info("starting azmlinfsrv on %s (model dir %s)", blue.code_dir, blue.model_dir)
            azmlinfsrv.start(code_dir=blue.code_dir, script=blue.script, model_dir=blue.model_dir)
            targets["azmlinfsrv"] = Target("azmlinfsrv", body, port=azmlinfsrv.port)
            processes["azmlinfsrv_master"] = azmlinfsrv.master_pid
            for i, pid in enumerate(azmlinfsrv.worker_pids()):
                processes[f"azmlinfsrv_worker{i}"] = pid
        _check_same_answers(targets)
        for target in targets.values():
            asyncio.run(run_load(target, concurrency=1, duration_s=0.5, warmup_s=0.5))

        time.sleep(1.0)
        memory_idle = {name: memory_mib(pid) for name, pid in processes.items()}

        # Rounds interleave the servers, so that other work on the machine (it is shared)
        # weighs on every server alike; each cell pools its slices.
        scenario = {"routed+mirror": "mirror"}
        order = [
            n
            for n in ("direct", "routed", "routed+mirror", "azmlinfsrv")
            if n in targets and scenario.get(n, n) in only
        ]
        slice_s = duration / rounds
        slices: dict[tuple[str, int], list[_Slice]] = {}
        for round_number in range(1, rounds + 1):
            for c in concurrency:
                for name in order:
                    piece = _measure(targets[name], c, slice_s, warmup, processes)
                    slices.setdefault((name, c), []).append(piece)
                    log.info(
                        "round %d/%d %-13s c=%d: %5.0f req/s, p50 %6.2f ms, p99 %6.2f ms, "
                        "%d errors, other load %.2f cores",
                        round_number,
                        rounds,
                        name,
                        c,
                        piece.result.throughput_rps,
                        piece.result.p50_ms,
                        piece.result.p99_ms,
                        piece.result.errors,
                        piece.other_cores,
                    )
        runs = {key: _pooled(pieces) for key, pieces in slices.items()}

        profile_summary: dict[str, Any] | None = None
        if profile:
            profile_summary = _profile_router(
                emulator.pid, targets["routed"], max_concurrency, duration, warmup, processes
            )
        memory_after = {name: memory_mib(pid) for name, pid in processes.items()}
        request_log = _request_log_rows(emulator.state_dir)

    return {
        "machine": _machine(),
        "software": {**software, "azmlinfsrv": azmlinfsrv.version() if azmlinfsrv else None},
        "settings": {
            "duration_s": duration,
            "rounds": rounds,
            "warmup_s_per_slice": warmup,
            "concurrency": concurrency,
            "request_body_bytes": len(body),
            "max_concurrent_requests_per_instance": max_concurrency,
            "mirror_percent": MIRROR_PERCENT,
            "scenarios": sorted(only),
            "renice_mirror": renice_mirror,
            "pythonpath": os.environ.get("PYTHONPATH"),
            "client": "bench/loadgen.py: asyncio streams, HTTP/1.1 keep-alive, one connection "
            "per concurrent worker",
        },
        "request_log_rows": request_log,
        "runs": [
            runs[name, c].as_dict()
            for c in concurrency
            for name in ("routed", "direct", "azmlinfsrv", "routed+mirror")
            if (name, c) in runs
        ],
        "memory_idle_mib": memory_idle,
        "memory_after_load_mib": memory_after,
        "targets": _targets(runs, concurrency, memory_idle),
        "profile": profile_summary,
    }


def _scoring_target(
    name: str, emulator: EmulatorServer, endpoint: str, body: bytes, tls: ssl.SSLContext
) -> Target:
    """The endpoint's scoring URI with its primary key, and no deployment header."""
    key = emulator.primary_key(endpoint)
    return Target(
        name,
        body,
        path=f"/online/{endpoint}/score",
        headers=(("Authorization", f"Bearer {key}"),),
        port=emulator.port,
        tls=tls,
    )


@dataclass
class _Slice:
    result: LoadResult
    cpu_s: dict[str, float]  # per process, over the measured window
    other_cores: float
    wall_s: float


def _measure(
    target: Target, c: int, duration: float, warmup: float, processes: dict[str, int]
) -> _Slice:
    """One load run, with the CPU time each process spent in it."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    client_before = time.process_time()
    machine_before = _busy_cpu_seconds()
    result = asyncio.run(run_load(target, concurrency=c, duration_s=duration, warmup_s=warmup))
    machine = _busy_cpu_seconds() - machine_before
    client = time.process_time() - client_before
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in processes.items()}
    spent["client"] = client
    wall = duration + warmup
    # Other work on the machine (other test runs, say) competes for the same two cores.
    other = max(0.0, machine - sum(spent.values())) / wall
    # CPU is counted over warm-up + window, requests over the window: scale to the window.
    scaled = {name: seconds * duration / wall for name, seconds in spent.items()}
    return _Slice(result, scaled, other, wall)


def _pooled(pieces: list[_Slice]) -> LoadResult:
    result = pool([p.result for p in pieces])
    ok = result.throughput_rps * result.duration_s
    cpu: Counter[str] = Counter()
    for piece in pieces:
        cpu.update(piece.cpu_s)
    result.extra["cpu_ms_per_request"] = (
        {name: round(s * 1000 / ok, 3) for name, s in cpu.items() if s * 1000 / ok >= 0.001}
        if ok
        else {}
    )
    result.extra["other_load_cores"] = round(
        sum(p.other_cores * p.wall_s for p in pieces) / sum(p.wall_s for p in pieces), 2
    )
    return result


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _write_yaml(tmp: Path, max_concurrency: int) -> dict[str, Path]:
    """Copies of the example YAML for the benchmark's two endpoints, with absolute local paths."""
    files: dict[str, Path] = {}
    endpoint = yaml.safe_load((EXAMPLES / "endpoint.yml").read_text())
    files["endpoint"] = _dump(tmp / "endpoint.yml", dict(endpoint, name=ENDPOINT))
    files["m-endpoint"] = _dump(tmp / "m-endpoint.yml", dict(endpoint, name=MIRROR_ENDPOINT))
    mirrored = dict(
        endpoint,
        name=MIRROR_ENDPOINT,
        traffic={"blue": 100},
        mirror_traffic={"green": MIRROR_PERCENT},
    )
    files["m-mirror"] = _dump(tmp / "m-mirror.yml", mirrored)
    for prefix, endpoint_name in (("", ENDPOINT), ("m-", MIRROR_ENDPOINT)):
        for name in ("blue", "green"):
            doc = yaml.safe_load((EXAMPLES / f"{name}-deployment.yml").read_text())
            doc["endpoint_name"] = endpoint_name
            doc["model"]["path"] = str((EXAMPLES / doc["model"]["path"]).resolve())
            code = doc["code_configuration"]
            code["code"] = str((EXAMPLES / code["code"]).resolve())
            conda = doc["environment"]["conda_file"]
            doc["environment"]["conda_file"] = str((EXAMPLES / conda).resolve())
            # Azure answers 429 past 2 x this x instances in flight; the benchmark measures
            # serving, so the instance may take every concurrent client's request.
            doc.setdefault("request_settings", {})["max_concurrent_requests_per_instance"] = (
                max_concurrency
            )
            files[prefix + name] = _dump(tmp / f"{prefix}{name}-deployment.yml", doc)
    return files


def _dump(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _check_same_answers(targets: dict[str, Target]) -> None:
    """Every target serves the same predictions before anything is timed."""
    answers = {}
    for name, target in targets.items():
        response = asyncio.run(request_once(target))
        if response.status != 200:
            raise BenchError(f"{name}: HTTP {response.status}: {response.body[:300]!r}")
        answers[name] = json.loads(response.body)
        if name.startswith("routed") and response.headers.get("azureml-model-deployment") != "blue":
            raise BenchError(f"routed request was not served by blue: {response.headers}")
    first = next(iter(answers.values()))
    for name, answer in answers.items():
        same = len(answer) == len(first) and all(
            math.isclose(x, y, rel_tol=1e-9) for x, y in zip(first, answer, strict=False)
        )
        if not same:
            raise BenchError(f"{name} answered {answer}, not {first}")


def _profile_router(
    pid: int,
    target: Target,
    c: int,
    duration: float,
    warmup: float,
    processes: dict[str, int],
) -> dict[str, Any]:
    """Sample the emulator with py-spy during an extra routed run (not one of the results)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    raw = RESULTS.parent / "profile-router.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)
    sampler_log = RESULTS.parent / "profile-router.log.tmp"
    log.info("profiling the emulator (pid %d) under routed load at concurrency %d", pid, c)
    with open(sampler_log, "wb") as out:
        sampler = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(duration))),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(0.5)
        result = _pooled([_measure(target, c, duration, warmup, processes)])
        sampler.wait(timeout=duration + 30)
    finally:
        if sampler.poll() is None:
            sampler.terminate()
            sampler.wait(10)
    if not raw.exists():
        raise BenchError(f"py-spy wrote no profile: {sampler_log.read_text()[-2000:]}")
    sampler_log.unlink(missing_ok=True)
    summary = summarize_profile(raw)
    summary["run"] = result.as_dict()
    summary["raw_stacks"] = _shown(raw)
    return summary


# Leaves where a thread waits rather than works; py-spy's idle detection misses these.
_IDLE_LEAVES = (
    "ThreadedChildWatcher._do_waitpid (asyncio/unix_events.py)",
    "_worker (concurrent/futures/thread.py)",
    "PollSelector.select (selectors.py)",
    "EpollSelector.select (selectors.py)",
    "Event.wait (threading.py)",
    "Condition.wait (threading.py)",
)


def summarize_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive shares of the busy samples per function, from py-spy's raw stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(f) for f in stack.split(";")]
        # py-spy's first frame is the thread ("process 1:"/"thread (0x..)") when present.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1] in _IDLE_LEAVES:
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    # Frames under nearly every sample (runpy, the event loop) say nothing.
    inclusive = Counter({f: n for f, n in inclusive.items() if n < 0.9 * total})

    def share(counter: Counter[str]) -> list[list[Any]]:
        return (
            [[f, round(100 * n / total, 1)] for f, n in counter.most_common(top)] if total else []
        )

    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "self_percent_by_package": share(packages),
        "self_percent": share(own),
        "inclusive_percent": share(inclusive),
    }


def _package(frame: str) -> str:
    """The top-level package of a shortened frame: `send (anyio/_backends/x.py)` -> `anyio`."""
    where = frame.rpartition(" (")[2].rstrip(")")
    if where.startswith("<frozen"):
        return "python (import machinery)"
    head = where.split("/", 1)[0]
    return head.removesuffix(".py") if "/" in where else f"python stdlib ({head})"


def _short_frame(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", str(REPO) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def _request_log_rows(state_dir: Path) -> int | None:
    """Rows in the emulator's request log (None when this emulator keeps none)."""
    import sqlite3

    path = state_dir / "requests.db"
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error:
        return None


def _targets(
    runs: dict[tuple[str, int], LoadResult], concurrency: list[int], memory: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    high = 8 if 8 in concurrency else max(concurrency)
    routed, reference = runs.get(("routed", high)), runs.get(("azmlinfsrv", high))
    if routed and reference:
        ratio = routed.throughput_rps / reference.throughput_rps
        out["throughput"] = {
            "what": f"(a) routed req/s >= (c) azmlinfsrv req/s at concurrency {high}",
            "routed_rps": round(routed.throughput_rps, 1),
            "azmlinfsrv_rps": round(reference.throughput_rps, 1),
            "ratio": round(ratio, 2),
            "met": ratio >= 1.0,
            "stretch_1_5x_met": ratio >= 1.5,
        }
    low = 1 if 1 in concurrency else min(concurrency)
    routed, direct = runs.get(("routed", low)), runs.get(("direct", low))
    if routed and direct:
        overhead = routed.p50_ms - direct.p50_ms
        out["routing_overhead"] = {
            "what": f"(a) p50 - (b) p50 at concurrency {low} <= 1 ms",
            "routed_p50_ms": round(routed.p50_ms, 3),
            "direct_p50_ms": round(direct.p50_ms, 3),
            "overhead_ms": round(overhead, 3),
            "met": overhead <= 1.0,
        }
    changes = {}
    for c in concurrency:
        base, mirrored = runs.get(("routed", c)), runs.get(("routed+mirror", c))
        if base and mirrored:
            changes[str(c)] = {
                "p50_ms": round(base.p50_ms, 3),
                "p50_mirror_ms": round(mirrored.p50_ms, 3),
                "change_percent": round(100 * (mirrored.p50_ms / base.p50_ms - 1), 1),
            }
    if changes:
        out["mirror"] = {
            "what": f"mirror {MIRROR_PERCENT}% raises the client's p50 by <= 10%",
            "by_concurrency": changes,
            "met": all(v["change_percent"] <= 10.0 for v in changes.values()),
        }
    az_workers = [v for k, v in memory.items() if k.startswith("azmlinfsrv_worker")]
    out["memory_idle_instance"] = {
        "what": "memory per idle instance (reported)",
        "emulator_instance": memory.get("instance"),
        "azmlinfsrv_worker": az_workers[0] if az_workers else None,
        "azmlinfsrv_master": memory.get("azmlinfsrv_master"),
    }
    return out


# report


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [
        "",
        f"bench: {m['cpus']} x {m['cpu_model']}, {m['ram_gib']} GiB RAM, Python {m['python']}; "
        f"{s['duration_s']:g} s measured per row, in {s['rounds']} interleaved slices, each after "
        f"{s['warmup_s_per_slice']:g} s of warm-up",
        "",
        "| server | conc. | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU ms/req | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run in results["runs"]:
        cpu = run["extra"].get("cpu_ms_per_request", {})
        server_cpu = ", ".join(
            f"{k} {v:.2f}" for k, v in cpu.items() if k != "client" and v >= 0.01
        )
        lines.append(
            f"| {LABELS.get(run['target'], run['target'])} | {run['concurrency']} "
            f"| {run['throughput_rps']:.0f} | {run['p50_ms']:.2f} | {run['p95_ms']:.2f} "
            f"| {run['p99_ms']:.2f} | {run['errors']} | {server_cpu} "
            f"| {run['extra'].get('other_load_cores', 0):.2f} |"
        )
    lines += ["", "| idle process | RSS MiB | USS MiB | PSS MiB |", "|---|---:|---:|---:|"]
    for name, mem in results["memory_idle_mib"].items():
        lines.append(f"| {name} | {mem['rss_mib']} | {mem['uss_mib']} | {mem['pss_mib']} |")
    lines += ["", "targets (issue 3):"]
    for target in results["targets"].values():
        met = target.get("met")
        mark = "reported" if met is None else ("MET" if met else "NOT MET")
        detail = {k: v for k, v in target.items() if k not in ("what", "met")}
        lines.append(f"  [{mark}] {target['what']}: {json.dumps(detail)}")
    rows = results.get("request_log_rows")
    lines.append(
        "  request log: "
        + ("not present in this emulator" if rows is None else f"{rows} requests recorded")
    )
    profile = results.get("profile")
    if profile:
        lines += ["", f"emulator profile ({profile['samples']} samples), self time by package:"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in profile["self_percent_by_package"][:12]]
        lines += ["", "top self time:"]
        lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in profile["self_percent"][:12]]
        lines += ["", "top inclusive time:"]
        lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in profile["inclusive_percent"][:20]]
    return "\n".join(lines)


# facts about the machine and the code measured


def _machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _emulator_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted((root / "emulator").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _git_head() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout.strip()
    return None


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO))
    return str(path)


def _finite(value: Any) -> Any:
    """JSON has no NaN: a percentile of no requests becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
