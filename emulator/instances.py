"""Instance processes of deployments: start, scale, replace, restart, stop.

Each instance is an OS process (`python -m emulator.worker`) that imports the
deployment's score.py and listens on a Unix socket of its own. A `DeploymentPool`
keeps the instances of one deployment converged on its spec and instance count:
scaling starts or stops instances while the ready ones keep serving, an update
starts a new set and swaps it in only once every new instance is ready, and an
instance that dies is restarted (as Azure's liveness probe would restart it).
What an instance is lives in `emulator.instance`, its process in `emulator.instance_process`,
its probes in `emulator.instance_health`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path

from emulator import instance_health, instance_process, lifecycle
from emulator.instance import (
    SOCKET_NAME_MAX,
    InitFailed,
    Instance,
    InstanceLimits,
    InstanceSpec,
    Probe,
    tail_file,
)
from emulator.logfile import LOG_FILES, RotatingLog
from emulator.upstream import Upstream

log = logging.getLogger(__name__)

_MAX_RESTART_BACKOFF_S = 30.0

# (instance id, event name, message): an instance's life-cycle event (emulator.lifecycle).
EventSink = Callable[[str, str, str], None]
# (instance id, lines): what an instance printed, as its log pump writes it.
OutputSink = Callable[[str, list[bytes]], None]


def _ignore_event(instance_id: str, name: str, message: str) -> None:
    pass


class DeploymentPool:
    """The instances of one deployment and the supervision that keeps them alive."""

    def __init__(
        self,
        spec: InstanceSpec,
        *,
        socket_dir: Path,
        log_path: Path,
        limits: InstanceLimits | None = None,
        on_event: EventSink = _ignore_event,
        on_output: OutputSink | None = None,
    ) -> None:
        self.spec = spec
        self.limits = limits or InstanceLimits()
        self.instances: list[Instance] = []
        self.desired = 0
        self.pending = 0
        # converge() calls under way: instances may be on their way even when none is listed.
        self.converging = 0
        self.liveness = Probe()
        self.readiness = Probe()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._socket_dir = socket_dir
        self._log_path = log_path
        self._on_event = on_event
        self._on_output = on_output
        self._log = RotatingLog(log_path, max_bytes=self.limits.log_bytes, files=LOG_FILES)
        self._ids = itertools.count()
        self._rr = itertools.count()
        self._lock = asyncio.Lock()
        self._watchers: set[asyncio.Task[None]] = set()
        log_path.parent.mkdir(parents=True, exist_ok=True)

    # what the router uses

    def ready_instances(self) -> list[Instance]:
        return [i for i in self.instances if i.ready and not i.retired]

    @property
    def capacity(self) -> int:
        """Requests admitted at once before 429: 2 x max concurrency x instance count (Azure)."""
        return 2 * self.spec.max_concurrency * max(1, self.desired)

    def admit(self) -> bool:
        """Take an admission slot; False when the deployment already has `capacity` pending."""
        if self.pending >= self.capacity:
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending -= 1

    async def acquire(self, deadline: float, exclude: Collection[Instance] = ()) -> Instance | None:
        """A ready instance with a free slot, waiting for one until `deadline` (loop time).

        None when the deployment has no instance that could ever serve (none ready, none
        starting and no converge under way); TimeoutError when the deadline passes while
        waiting.
        """
        loop = asyncio.get_running_loop()
        while True:
            instance = self.pick(exclude)
            if instance is not None and instance.in_flight < self.spec.max_concurrency:
                instance.in_flight += 1
                return instance
            if (
                instance is None
                and not self.converging
                and not any(not i.retired and i not in exclude for i in self.instances)
            ):
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def release(self, instance: Instance) -> None:
        instance.in_flight -= 1
        self._wake(1)

    def _wake(self, count: int | None = None) -> None:
        woken = 0
        while self._waiters and (count is None or woken < count):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1

    def pick(self, exclude: Collection[Instance] = ()) -> Instance | None:
        """The ready instance with the fewest requests in flight (round robin among ties)."""
        ready = [i for i in self.ready_instances() if i not in exclude]
        if not ready:
            return None
        start = next(self._rr) % len(ready)
        rotated = ready[start:] + ready[:start]
        return min(rotated, key=lambda i: i.in_flight)

    # what the control plane uses

    async def converge(self, spec: InstanceSpec, count: int) -> None:
        """Run `count` instances of `spec`; raise InitFailed and keep the old ones on failure."""
        self.converging += 1
        try:
            async with self._lock:
                if spec.fingerprint != self.spec.fingerprint or any(
                    i.spec.fingerprint != spec.fingerprint for i in self.instances
                ):
                    await self._replace(spec, count)
                else:
                    await self._scale(count)
                self.spec = spec
                self.desired = count
        finally:
            self.converging -= 1
            # Requests waiting for the new instances get one, or learn there is none.
            self._wake()

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_instances(list(self.instances))
            self.instances.clear()
            self._log.close()

    def log_tail(self, lines: int) -> str:
        return tail_file(self._log_path, lines)

    def write_log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"{stamp} emulator INFO {message}\n".encode())

    def event(self, instance: Instance, name: str, message: str, *, logged: bool = True) -> None:
        """An instance's life-cycle event: kept, and written to the log when `logged`."""
        if logged:
            self.write_log(message)
        self._on_event(instance.id, name, message)

    def _reporter(self, instance: Instance) -> instance_health.Report:
        return lambda name, message: self.event(instance, name, message)

    # internals

    async def _scale(self, count: int) -> None:
        current = [i for i in self.instances if not i.retired]
        if count > len(current):
            fresh = await self._start_many(self.spec, count - len(current))
            self.instances.extend(fresh)
        elif count < len(current):
            extra = current[count:]
            await self._stop_instances(extra)
            self.instances = [i for i in self.instances if i not in extra]

    async def _replace(self, spec: InstanceSpec, count: int) -> None:
        fresh = await self._start_many(spec, count)
        old = list(self.instances)
        self.instances = fresh
        await self._stop_instances(old)

    async def _start_many(self, spec: InstanceSpec, count: int) -> list[Instance]:
        fresh = [self._new_instance(spec) for _ in range(count)]
        results = await asyncio.gather(*(self._launch(i) for i in fresh), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self._stop_instances(fresh)
            raise failures[0]
        for instance in fresh:
            self._watch(instance)
        return fresh

    def _new_instance(self, spec: InstanceSpec) -> Instance:
        n = next(self._ids)
        instance_id = f"{spec.deployment}-{spec.fingerprint[:4]}-{n}"
        # The emulator's pid at the end ties the socket to one run.
        name = f"{spec.endpoint}-{instance_id}-{os.getpid()}.sock"
        if len(name.encode()) > SOCKET_NAME_MAX:
            tag = hashlib.sha256(f"{spec.endpoint}/{instance_id}".encode()).hexdigest()[:10]
            name = f"{tag}-{os.getpid()}.sock"
        sock = self._socket_dir / name
        return Instance(id=instance_id, spec=spec, socket=sock, upstream=Upstream(str(sock)))

    async def _launch(self, instance: Instance) -> None:
        """Start the instance's process and wait until it is ready (init() finished)."""
        spec = instance.spec
        tee = None
        if self._on_output is not None:
            on_output, instance_id = self._on_output, instance.id
            tee = lambda lines: on_output(instance_id, lines)  # noqa: E731
        process = await instance_process.spawn(instance, self._log, tee)
        instance.started_at = time.time()
        self.event(
            instance,
            lifecycle.STARTED,
            f"instance {instance.id} started (pid {process.pid})",
            logged=False,
        )
        deadline = time.monotonic() + self.liveness.startup_deadline
        while time.monotonic() < deadline:
            if process.returncode is not None:
                await self._drain_log(instance)
                what = (
                    f"instance {instance.id} of deployment '{spec.deployment}' exited with code "
                    f"{process.returncode} before it was ready"
                )
                self.event(instance, lifecycle.INIT_FAILED, what, logged=False)
                raise InitFailed(f"{what}:\n{self.log_tail(15)}")
            if instance.socket.exists() and await instance_health.probe_ok(instance, "/", 2.0):
                instance.ready = instance.launched = True
                self.event(
                    instance, lifecycle.READY, f"instance {instance.id} is ready", logged=False
                )
                self._wake()
                return
            await asyncio.sleep(0.05)
        what = (
            f"instance {instance.id} of deployment '{spec.deployment}' was not ready after "
            f"{self.liveness.startup_deadline:.0f} s"
        )
        self.event(instance, lifecycle.INIT_FAILED, what, logged=False)
        raise InitFailed(what)

    async def _drain_log(self, instance: Instance) -> None:
        await instance_process.drain_log(instance)

    def _watch(self, instance: Instance) -> None:
        for job, name in (
            (self._supervise(instance), "watch"),
            (
                instance_health.liveness(instance, self.liveness, self._reporter(instance)),
                "liveness",
            ),
            (
                instance_health.readiness(
                    instance, self.readiness, self._reporter(instance), self._wake
                ),
                "readiness",
            ),
            (
                instance_health.memory(
                    instance, self.limits.memory_bytes, self._reporter(instance)
                ),
                "memory",
            ),
        ):
            task = asyncio.create_task(job, name=f"{name}-{instance.id}")
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def _supervise(self, instance: Instance) -> None:
        """Restart the instance whenever its process dies while it is still wanted."""
        backoff = 1.0
        while not instance.retired:
            process = instance.process
            if process is None:
                return
            code = await process.wait()
            if instance.retired:
                return
            instance.ready = instance.launched = False
            instance.restarts += 1
            await self._drain_log(instance)
            self.event(
                instance,
                lifecycle.RESTARTED,
                f"instance {instance.id} (pid {process.pid}) exited with code {code}; "
                f"restarting it (restart {instance.restarts})",
            )
            log.warning("instance %s exited with code %s; restarting", instance.id, code)
            while not instance.retired:
                try:
                    await self._launch(instance)
                    backoff = 1.0
                    break
                except InitFailed as exc:
                    self.write_log(f"restart of {instance.id} failed: {exc}")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_RESTART_BACKOFF_S)

    async def _stop_instances(self, instances: list[Instance]) -> None:
        for instance in instances:
            instance.retired = True
            instance.ready = False
        await asyncio.gather(*(self._stop_one(i) for i in instances))

    async def _stop_one(self, instance: Instance) -> None:
        drain_until = time.monotonic() + 10.0
        while instance.in_flight and time.monotonic() < drain_until:
            await asyncio.sleep(0.02)
        await instance_process.terminate(instance)
        # Its last output is written before the deployment's log may be deleted.
        await self._drain_log(instance)
        self.event(instance, lifecycle.STOPPED, f"instance {instance.id} stopped", logged=False)
        await instance.upstream.aclose()
        with contextlib.suppress(FileNotFoundError):
            instance.socket.unlink()
