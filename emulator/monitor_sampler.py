"""The gauges: what the emulator measures every few seconds for the metrics API.

Each instance's CPU (in percent of this machine's CPUs) and memory (resident set, in
percent of this machine's memory) from psutil, each instance's state for
DeploymentCapacity, and per endpoint the open client connections and the new ones per
second (`ConnectionCounter`: a uvicorn protocol subclass and an ASGI middleware). The
samples go to the request log's gauge buffer (`RequestLog.add_gauges`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from typing import Any, cast

import psutil  # type: ignore[import-untyped]
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.endpoints import Endpoints
from emulator.instance import Instance
from emulator.requestlog import RequestLog
from emulator.requestlog_schema import Gauge
from emulator.runtimes import Runtimes

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 5.0


class ConnectionCounter:
    """Client connections per endpoint, for ConnectionsActive and NewConnectionsPerSecond.

    A subclass of uvicorn's HTTP protocol notes each TCP connection as it opens and
    closes (one dict operation each); an ASGI middleware attributes a connection to an
    endpoint at its first scoring request (a prefix test per request). A connection that
    never scores (ARM, metrics) counts for no endpoint.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], str | None] = {}
        self.opened: collections.Counter[str] = collections.Counter()

    def active(self) -> collections.Counter[str]:
        return collections.Counter(e for e in self._open.values() if e is not None)

    def protocol(self, base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        counter = self

        def connection_made(proto: Any, transport: asyncio.BaseTransport) -> None:
            base.connection_made(proto, transport)
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                proto._bluegreen_peer = (str(peer[0]), int(peer[1]))
                counter._open[proto._bluegreen_peer] = None

        def connection_lost(proto: Any, exc: Exception | None) -> None:
            counter._open.pop(getattr(proto, "_bluegreen_peer", ("", 0)), None)
            base.connection_lost(proto, exc)

        name = f"Counting{base.__name__}"
        methods = {"connection_made": connection_made, "connection_lost": connection_lost}
        return cast(type[asyncio.Protocol], type(name, (base,), methods))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/online/"):
                client = scope.get("client")
                if client:
                    peer = (str(client[0]), int(client[1]))
                    if peer in self._open and self._open[peer] is None:
                        endpoint = scope["path"].split("/", 3)[2].lower()
                        self._open[peer] = endpoint
                        self.opened[endpoint] += 1
            await app(scope, receive, send)

        return counted


def instance_state(instance: Instance) -> str:
    """DeploymentCapacity's State: Running, Starting, NotReady or Failed."""
    if instance.ready:
        return "Running"
    process = instance.process
    if process is not None and process.returncode is not None:
        return "Failed"
    return "NotReady" if instance.launched else "Starting"


class Sampler:
    """Every few seconds: each instance's CPU, memory and state, and connection counts."""

    def __init__(
        self,
        runtimes: Runtimes,
        endpoints: Endpoints,
        requests: RequestLog,
        *,
        interval: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self._runtimes = runtimes
        self._endpoints = endpoints
        self._requests = requests
        self.interval = interval
        self.connections = ConnectionCounter()
        self._task: asyncio.Task[None] | None = None
        self._processes: dict[int, Any] = {}
        self._opened: collections.Counter[str] = collections.Counter()
        self._last = time.time()
        self._cpus = os.cpu_count() or 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception:
                log.exception("metrics sampling failed")

    async def sample(self) -> None:
        """Take one sample of everything and hand it to the request log."""
        now = time.time()
        targets = [
            (runtime.pool.spec.endpoint, runtime.name, i.id, i.pid, instance_state(i))
            for runtime in self._runtimes.values()
            for i in runtime.pool.instances
            if not i.retired
        ]
        rows = await asyncio.to_thread(self._measure, now, targets)
        elapsed = max(now - self._last, 1e-3)
        self._last = now
        active = self.connections.active()
        for route in list(self._endpoints.routes.values()):
            name = route.name.lower()
            opened = self.connections.opened[name] - self._opened[name]
            self._opened[name] = self.connections.opened[name]
            rows.append(Gauge(now, route.name, "", "", "", "connections", float(active[name])))
            rows.append(Gauge(now, route.name, "", "", "", "new_connections", opened / elapsed))
        self._requests.add_gauges(rows)

    def _measure(
        self, now: float, targets: list[tuple[str, str, str, int | None, str]]
    ) -> list[Gauge]:
        rows: list[Gauge] = []
        alive = set()
        for endpoint, deployment, instance, pid, state in targets:
            rows.append(Gauge(now, endpoint, deployment, instance, state, "capacity", 1.0))
            if pid is None or state == "Failed":
                continue
            alive.add(pid)
            process = self._processes.get(pid)
            try:
                if process is None:
                    # The first reading only starts cpu_percent's clock.
                    process = self._processes[pid] = psutil.Process(pid)
                    process.cpu_percent(None)
                else:
                    cpu = process.cpu_percent(None) / self._cpus
                    rows.append(Gauge(now, endpoint, deployment, instance, "", "cpu", cpu))
                memory = float(process.memory_percent())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._processes.pop(pid, None)
                continue
            rows.append(Gauge(now, endpoint, deployment, instance, "", "memory", memory))
        for pid in list(self._processes):
            if pid not in alive:
                del self._processes[pid]
        return rows
