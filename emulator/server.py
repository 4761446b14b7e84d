"""Running the emulator: the HTTPS listener and the app, for one state directory.

`serve` holds the state directory's lock for as long as it runs, writes `server.json`
with its pid and URLs, and serves ARM, scoring and metrics on 127.0.0.1. Finding,
checking and stopping a running emulator is `emulator.control` (re-exported here);
the instances' socket folder is `emulator.socket_dirs`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from emulator import arm, logs_api, monitor, scoring, socket_dirs, unrouted
from emulator.auth import arm_token
from emulator.control import (
    DEFAULT_STATE_DIR,
    AlreadyRunning,
    NotRunning,
    Status,
    lock,
    state_dir_from,
    status,
    stop,
    wait_until_running,
)
from emulator.latency import check_latency_ms, delayed
from emulator.mirror_sample import MirrorSample, check_capacity
from emulator.privacy import make_private
from emulator.service import Emulator
from emulator.tls import ensure_tls

__all__ = [
    "DEFAULT_STATE_DIR",
    "AlreadyRunning",
    "NotRunning",
    "Status",
    "serve",
    "state_dir_from",
    "status",
    "stop",
    "wait_until_running",
]

log = logging.getLogger(__name__)


def _bind(port: int, previous: int | None) -> socket.socket:
    """Listen on 127.0.0.1; port 0 prefers the port of the last run so URLs stay stable."""
    candidates = [port] if port else ([previous] if previous else []) + [0]
    error: OSError | None = None
    for candidate in candidates:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only
        # when proto is IPPROTO_TCP; with proto 0 every response waits ~40 ms (Nagle
        # against delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.listen(2048)
        return sock
    raise OSError(f"cannot listen on 127.0.0.1:{port}: {error}")


def serve(
    state_dir: Path,
    port: int = 0,
    *,
    max_body_mb: float | None = None,
    retention_days: float | None = None,
    max_asset_mb: float | None = None,
    max_response_mb: float | None = None,
    instance_memory_mb: float | None = None,
    instance_log_mb: float | None = None,
    arm_latency_ms: int | None = None,
    metrics_latency_ms: int | None = None,
    mirror_sample: int | None = None,
) -> None:
    """Run the emulator in the foreground until SIGINT or SIGTERM.

    `metrics_latency_ms` follows `arm_latency_ms` when only that is given; either is
    kept in the state directory for the next start (0 resets it). So is `mirror_sample`,
    the number of mirrored requests each endpoint keeps with both answers (0 keeps none).
    """
    if arm_latency_ms is not None:
        check_latency_ms("--arm-latency-ms", arm_latency_ms)
        if metrics_latency_ms is None:
            metrics_latency_ms = arm_latency_ms
    if metrics_latency_ms is not None:
        check_latency_ms("--metrics-latency-ms", metrics_latency_ms)
    if mirror_sample is not None:
        check_capacity("--mirror-sample", mirror_sample)
    # The state holds endpoint keys, the token secret and the TLS keys: everything this
    # process creates from here on (SQLite's -wal and -shm, logs, instances' files) is
    # for its owner only, and what an earlier version left readable is fixed below.
    os.umask(0o077)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with lock(state_dir):
        make_private(state_dir)
        tls = ensure_tls(state_dir)
        token = arm_token(state_dir)
        info_path = state_dir / "server.json"
        last: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            last = dict(json.loads(info_path.read_text()))
        previous = last.get("port") if isinstance(last.get("port"), int) else None
        sock = _bind(port, previous)
        bound = sock.getsockname()[1]
        base_url = f"https://127.0.0.1:{bound}"
        # A crash (SIGKILL) of the last run may have left instances and their sockets.
        earlier = [socket_dirs.legacy_socket_dir(state_dir), state_dir / "sockets"]
        if isinstance(last.get("socket_dir"), str):
            earlier.append(Path(last["socket_dir"]))
        killed = socket_dirs.kill_strays(earlier)
        if killed:
            log.warning("killed %d instance process(es) left by an earlier run", killed)
        for folder in earlier:
            socket_dirs.remove_if_ours(folder)
        socket_dir = socket_dirs.socket_dir(state_dir)
        emulator = Emulator(state_dir, socket_dir)
        emulator.base_url = base_url
        # Limits given in MiB are kept in the state directory, in bytes, for the next start.
        for attribute, mib in (
            ("max_body_bytes", max_body_mb),
            ("max_response_bytes", max_response_mb),
            ("instance_memory_bytes", instance_memory_mb),
            ("instance_log_bytes", instance_log_mb),
        ):
            if mib is not None:
                setattr(emulator, attribute, int(mib * 2**20))
                emulator.store.set_meta(attribute, str(getattr(emulator, attribute)))
        if retention_days is not None:
            emulator.requests.retention_days = retention_days
            emulator.events.retention_days = retention_days
            emulator.store.set_meta("retention_days", str(retention_days))
        if max_asset_mb is not None:
            emulator.assets.files.max_bytes = int(max_asset_mb * 2**20)
            emulator.store.set_meta("max_asset_mb", str(max_asset_mb))
        for attribute, ms in (
            ("arm_latency_ms", arm_latency_ms),
            ("metrics_latency_ms", metrics_latency_ms),
        ):
            if ms is not None:
                setattr(emulator, attribute, ms)
                emulator.store.set_meta(attribute, str(ms))
        if mirror_sample is not None:
            emulator.mirror_sample = MirrorSample(mirror_sample)
            emulator.store.set_meta("mirror_sample", str(mirror_sample))
        if emulator.arm_latency_ms or emulator.metrics_latency_ms:
            log.info(
                "answers delayed: control plane %d ms, metrics %d ms",
                emulator.arm_latency_ms,
                emulator.metrics_latency_ms,
            )

        # Written before serving: /health answers only once startup is done, so status
        # never reports this pid before the emulator is ready.
        info = {
            "pid": os.getpid(),
            "port": bound,
            "arm_url": base_url,
            "metrics_url": f"{base_url}/monitor",
            "started_at": time.time(),
            "socket_dir": str(socket_dir),
        }
        tmp = info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(info_path)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await emulator.start()
            log.info("emulator listening on %s (state %s)", base_url, state_dir)
            try:
                yield
            finally:
                await emulator.stop()

        app = Starlette(
            routes=[*arm.routes, *scoring.routes, *monitor.routes, *logs_api.routes],
            exception_handlers=unrouted.exception_handlers,
            lifespan=lifespan,
        )
        app.state.emulator = emulator
        app.state.arm_token = token
        # Connections are counted per endpoint for the ConnectionsActive metrics.
        connections = emulator.sampler.connections
        # The delay wraps the Starlette app only: scoring.data_plane answers scoring
        # requests before they reach it, so the data plane is never delayed.
        control = delayed(
            app, arm_ms=emulator.arm_latency_ms, metrics_ms=emulator.metrics_latency_ms
        )
        config = uvicorn.Config(
            connections.middleware(scoring.data_plane(control, emulator)),
            http=connections.protocol(AutoHTTPProtocol),
            ssl_certfile=str(tls.server_cert),
            ssl_keyfile=str(tls.server_key),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises the SIGTERM it shut down on; with the default handler that ends
        # the process before the clean-up below runs (sockets folder, pid in server.json).
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            # uvloop and httptools when installed (uvicorn's "auto"), asyncio otherwise.
            server.run(sockets=[sock])
        finally:
            sock.close()
            shutil.rmtree(socket_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                # Keep the port for the next start; only the pid goes stale.
                info = json.loads(info_path.read_text())
                info["pid"] = None
                info_path.write_text(json.dumps(info, indent=2))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)
