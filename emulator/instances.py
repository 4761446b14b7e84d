"""Instance processes of deployments: start, scale, replace, restart, stop.

Each instance is an OS process (`python -m emulator.worker`) that imports the
deployment's score.py and listens on a Unix socket of its own. A `DeploymentPool`
keeps the instances of one deployment converged on its spec and instance count:
scaling starts or stops instances while the ready ones keep serving, an update
starts a new set and swaps it in only once every new instance is ready, and an
instance that dies is restarted (as Azure's liveness probe would restart it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
_READY_TIMEOUT_S = 180.0
_STOP_GRACE_S = 5.0
_MAX_RESTART_BACKOFF_S = 30.0


class InitFailed(Exception):
    """A new instance exited or never became ready; the message holds its last log lines."""


@dataclass(frozen=True)
class InstanceSpec:
    """What an instance runs: the same spec gives interchangeable instances."""

    endpoint: str
    deployment: str
    code_dir: str
    script: str
    model_dir: str
    env: tuple[tuple[str, str], ...] = ()
    max_concurrency: int = 1

    @property
    def fingerprint(self) -> str:
        raw = json.dumps(
            [self.code_dir, self.script, self.model_dir, self.env, self.max_concurrency]
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:8]


@dataclass(eq=False)
class Instance:
    id: str
    spec: InstanceSpec
    socket: Path
    client: httpx.AsyncClient
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    retired: bool = False
    in_flight: int = 0
    restarts: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class DeploymentPool:
    """The instances of one deployment and the supervision that keeps them alive."""

    def __init__(self, spec: InstanceSpec, *, socket_dir: Path, log_path: Path) -> None:
        self.spec = spec
        self.instances: list[Instance] = []
        self._socket_dir = socket_dir
        self._log_path = log_path
        self._ids = itertools.count()
        self._rr = itertools.count()
        self._lock = asyncio.Lock()
        self._watchers: set[asyncio.Task[None]] = set()
        log_path.parent.mkdir(parents=True, exist_ok=True)

    # what the router uses

    def ready_instances(self) -> list[Instance]:
        return [i for i in self.instances if i.ready and not i.retired]

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
        async with self._lock:
            if spec.fingerprint != self.spec.fingerprint or any(
                i.spec.fingerprint != spec.fingerprint for i in self.instances
            ):
                await self._replace(spec, count)
            else:
                await self._scale(count)
            self.spec = spec

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_instances(list(self.instances))
            self.instances.clear()

    def log_tail(self, lines: int) -> str:
        return tail_file(self._log_path, lines)

    def write_log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self._log_path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} emulator INFO {message}\n")

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
        sock = self._socket_dir / f"{spec.endpoint}-{instance_id}-{os.getpid()}.sock"
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        client = httpx.AsyncClient(transport=transport, base_url="http://instance", timeout=None)
        return Instance(id=instance_id, spec=spec, socket=sock, client=client)

    async def _launch(self, instance: Instance) -> None:
        """Start the instance's process and wait until it is ready (init() finished)."""
        spec = instance.spec
        with contextlib.suppress(FileNotFoundError):
            instance.socket.unlink()
        env = dict(os.environ)
        env.update(dict(spec.env))
        env["PYTHONUNBUFFERED"] = "1"
        log_file = open(self._log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
        try:
            instance.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "emulator.worker",
                "--socket",
                str(instance.socket),
                "--code-dir",
                spec.code_dir,
                "--script",
                spec.script,
                "--model-dir",
                spec.model_dir,
                "--instance-id",
                instance.id,
                "--max-concurrency",
                str(spec.max_concurrency),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                cwd=str(_PACKAGE_PARENT),
                start_new_session=True,
            )
        finally:
            log_file.close()
        instance.started_at = time.time()
        process = instance.process
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise InitFailed(
                    f"instance {instance.id} of deployment '{spec.deployment}' exited with code "
                    f"{process.returncode} before it was ready:\n{self.log_tail(15)}"
                )
            if instance.socket.exists():
                try:
                    response = await instance.client.get("/", timeout=2.0)
                    if response.status_code == 200:
                        instance.ready = True
                        return
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.05)
        raise InitFailed(
            f"instance {instance.id} of deployment '{spec.deployment}' was not ready after "
            f"{_READY_TIMEOUT_S:.0f} s"
        )

    def _watch(self, instance: Instance) -> None:
        task = asyncio.create_task(self._supervise(instance), name=f"watch-{instance.id}")
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
            instance.ready = False
            instance.restarts += 1
            self.write_log(
                f"instance {instance.id} (pid {process.pid}) exited with code {code}; "
                f"restarting it (restart {instance.restarts})"
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
        process = instance.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await instance.client.aclose()
        with contextlib.suppress(FileNotFoundError):
            instance.socket.unlink()


def tail_file(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file ('' when it does not exist)."""
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 8192, b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
