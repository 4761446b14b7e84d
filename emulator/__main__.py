"""Command line of the emulator: serve, start, status, apply, stop.

    python -m emulator serve  [--state-dir DIR] [--port N]     foreground server
                              [--arm-latency-ms N] [--metrics-latency-ms N]  (and limits)
                              [--mirror-sample N]
    python -m emulator start  [--state-dir DIR] [--port N]     the same, in the background
    python -m emulator status --json [--state-dir DIR]         facts; exit 1 if not running
    python -m emulator apply -f FILE [--all-traffic] [--if-missing]  create or update from YAML
    python -m emulator stop   [--state-dir DIR]

The state directory defaults to $EMULATOR_STATE_DIR, else ./.emulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

# The emulator talks to no cloud. A parent process that built an MLClient for the emulator
# has AZUREML_CURRENT_CLOUD set to a cloud it registered in-process only (workspace.py's
# "BluegreenEmulator<port>"); inherited here, `import azure.ai.ml` would try to download
# that cloud's metadata from Azure and crash every command, `serve` and `status` included.
os.environ.pop("AZUREML_CURRENT_CLOUD", None)

from emulator import server
from emulator.apply import ApplyError, apply_file
from emulator.latency import MAX_LATENCY_MS
from emulator.mirror_sample import DEFAULT_CAPACITY, MAX_CAPACITY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local emulator of Azure ML online endpoints."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--state-dir", help="state directory (default $EMULATOR_STATE_DIR or ./.emulator)"
        )
        return sub

    for name, help_text in (
        ("serve", "run the emulator in the foreground"),
        ("start", "run the emulator in the background (no-op when it already runs)"),
    ):
        sub = add(name, help_text)
        sub.add_argument(
            "--port", type=int, default=0, help="HTTPS port on 127.0.0.1 (0 = free port)"
        )
        sub.add_argument(
            "--max-body-mb",
            type=float,
            help="scoring request body limit in MiB (default 100; kept in the state directory)",
        )
        sub.add_argument(
            "--max-response-mb",
            type=float,
            help="largest scoring answer relayed, in MiB; larger ones are 502 "
            "(default 100; kept in the state directory)",
        )
        sub.add_argument(
            "--instance-memory-mb",
            type=float,
            help="memory (RSS) an instance may use before it is restarted, in MiB "
            "(default 2048; kept in the state directory)",
        )
        sub.add_argument(
            "--instance-log-mb",
            type=float,
            help="size of each deployment log file before it rotates, in MiB; 5 files are "
            "kept (default 10; kept in the state directory)",
        )
        sub.add_argument(
            "--retention-days",
            type=float,
            help="days of metrics the request log keeps (default 7; kept in the state directory)",
        )
        sub.add_argument(
            "--max-asset-mb",
            type=float,
            help="largest model or code folder registered from a local path, in MiB "
            "(default 2048; kept in the state directory)",
        )
        sub.add_argument(
            "--arm-latency-ms",
            type=_latency_ms,
            help="delay every control-plane (ARM) answer by N ms, 0 to 10000, as a remote "
            "workspace would (default 0; kept in the state directory, 0 resets it)",
        )
        sub.add_argument(
            "--metrics-latency-ms",
            type=_latency_ms,
            help="delay every Monitor metrics answer by N ms, 0 to 10000 (default: the "
            "--arm-latency-ms value when that is given, else the kept value or 0)",
        )
        sub.add_argument(
            "--mirror-sample",
            type=_sample_size,
            help="keep the last N mirrored requests of each endpoint with the live and the "
            f"mirror answer, in memory, 0 to {MAX_CAPACITY} (default {DEFAULT_CAPACITY}; "
            "kept in the state directory, 0 turns it off); read them at "
            "GET .../onlineEndpoints/{e}/mirroredRequests",
        )
    sub = add("status", "print the connection facts; exit 1 when not running")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = add("apply", "create or update an endpoint or deployment from az ml YAML")
    sub.add_argument("-f", "--file", required=True, type=Path)
    sub.add_argument("--all-traffic", action="store_true", help="send 100%% of live traffic to it")
    sub.add_argument("--if-missing", action="store_true", help="do nothing when it already exists")
    add("stop", "stop the running emulator")

    args = parser.parse_args(argv)
    state_dir = server.state_dir_from(args.state_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)

    if args.command == "serve":
        try:
            server.serve(
                state_dir,
                args.port,
                max_body_mb=args.max_body_mb,
                retention_days=args.retention_days,
                max_asset_mb=args.max_asset_mb,
                max_response_mb=args.max_response_mb,
                instance_memory_mb=args.instance_memory_mb,
                instance_log_mb=args.instance_log_mb,
                arm_latency_ms=args.arm_latency_ms,
                metrics_latency_ms=args.metrics_latency_ms,
                mirror_sample=args.mirror_sample,
            )
        except server.AlreadyRunning as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "start":
        return _start(state_dir, args.port, args)
    if args.command == "status":
        try:
            facts = server.status(state_dir)
        except server.NotRunning as exc:
            print(json.dumps({"running": False, "error": str(exc)}) if args.json else str(exc))
            return 1
        if args.json:
            print(json.dumps(facts.as_dict(), indent=2))
        else:
            print(f"emulator running (pid {facts.pid}) at {facts.arm_url}; state {state_dir}")
        return 0
    if args.command == "apply":
        try:
            print(
                apply_file(
                    state_dir, args.file, all_traffic=args.all_traffic, if_missing=args.if_missing
                )
            )
        except (ApplyError, server.NotRunning) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "stop":
        print("stopped" if server.stop(state_dir) else "not running")
        return 0
    return 2


# The options of `serve` that `start` passes on (besides --state-dir and --port).
_SERVE_FLAGS = (
    "max_body_mb",
    "retention_days",
    "max_response_mb",
    "instance_memory_mb",
    "instance_log_mb",
    "max_asset_mb",
    "arm_latency_ms",
    "metrics_latency_ms",
    "mirror_sample",
)


def _flag(attribute: str) -> str:
    return "--" + attribute.replace("_", "-")


def _latency_ms(text: str) -> int:
    """argparse type of the latency flags (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes a whole number of milliseconds, not {text!r}"
        ) from None
    if not 0 <= value <= MAX_LATENCY_MS:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range; give 0 to {MAX_LATENCY_MS} ms (0 = no delay)"
        )
    return value


def _sample_size(text: str) -> int:
    """argparse type of --mirror-sample (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes a whole number of requests, not {text!r}"
        ) from None
    if not 0 <= value <= MAX_CAPACITY:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range; give 0 to {MAX_CAPACITY} (0 = keep none)"
        )
    return value


def _start(state_dir: Path, port: int, args: argparse.Namespace) -> int:
    try:
        facts = server.status(state_dir, timeout=2.0)
        print(f"emulator already running (pid {facts.pid}) at {facts.arm_url}")
        given = [_flag(f) for f in _SERVE_FLAGS if getattr(args, f) is not None]
        if given:
            print(f"note: {', '.join(given)} not applied; stop the emulator first to change them")
        return 0
    except server.NotRunning:
        pass
    os.umask(0o077)  # the state directory and emulator.log are its owner's only, as in serve
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = state_dir / "emulator.log"
    command = [sys.executable, "-m", "emulator", "serve", "--state-dir", str(state_dir)]
    command += ["--port", str(port)]
    for flag in _SERVE_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            command += [_flag(flag), str(value)]
    with open(log_path, "ab") as log_file:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    try:
        facts = server.wait_until_running(state_dir, timeout=60.0)
    except server.NotRunning as exc:
        print(f"error: the emulator did not start: {exc}; see {log_path}", file=sys.stderr)
        return 1
    print(f"emulator started (pid {facts.pid}) at {facts.arm_url}; log {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
