"""The watches on a running instance: liveness and readiness probes, and its memory.

Each watch runs as a task for as long as the instance is wanted (until it is retired).
A failing liveness probe or memory over the limit kills the process, and the pool's
supervisor restarts it; a failing readiness probe only takes the instance out of routing.
What happens is written to the deployment's log, and kept as an event, through `report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psutil  # type: ignore[import-untyped]

from emulator import lifecycle
from emulator.instance import Instance, Probe
from emulator.upstream import UpstreamError

log = logging.getLogger(__name__)

# How often an instance's memory is read; an allocation faster than the limit per
# period can overshoot before the kill, as it can before a cgroup's OOM kill reacts.
MEMORY_PERIOD_S = 0.5

# (event name, message): the pool writes the message to the deployment's log and keeps the
# event (emulator.lifecycle).
Report = Callable[[str, str], None]


async def probe_ok(instance: Instance, path: str, timeout: float) -> bool:
    """Whether GET `path` on the instance answers 200 within `timeout` seconds."""
    try:
        answer = await asyncio.wait_for(instance.upstream.request("GET", path), timeout)
    except (UpstreamError, TimeoutError):
        return False
    return answer.status == 200


async def liveness(instance: Instance, probe: Probe, report: Report) -> None:
    """Kill an instance that fails its liveness probe failure_threshold times in a row."""
    failures = 0
    while not instance.retired:
        await asyncio.sleep(probe.period)
        if instance.retired or not instance.launched:
            failures = 0
            continue
        if await probe_ok(instance, "/health", probe.timeout):
            failures = 0
            continue
        failures += 1
        if failures < probe.failure_threshold:
            continue
        failures = 0
        process = instance.process
        if process is None or process.returncode is not None or instance.retired:
            continue
        report(
            lifecycle.LIVENESS_FAILED,
            f"instance {instance.id} (pid {process.pid}) failed its liveness probe "
            f"{probe.failure_threshold} times in a row; replacing it",
        )
        instance.ready = instance.launched = False
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def memory(instance: Instance, limit: int, report: Report) -> None:
    """Kill an instance whose resident memory is over `limit` bytes; the supervisor
    restarts it. Azure's instances run in containers with a memory limit, and one over it
    is OOM-killed and restarted; the emulator's instances share the machine, so it watches.
    """
    while not instance.retired:
        await asyncio.sleep(MEMORY_PERIOD_S)
        process = instance.process
        if process is None or process.returncode is not None or not instance.launched:
            continue
        try:
            used = psutil.Process(process.pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if used <= limit or instance.retired:
            continue
        report(
            lifecycle.OUT_OF_MEMORY,
            f"instance {instance.id} used {used / 2**20:.0f} MiB, over its limit of "
            f"{limit / 2**20:g} MiB; restarted",
        )
        log.warning("instance %s is over its memory limit; restarting it", instance.id)
        instance.ready = instance.launched = False
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def readiness(
    instance: Instance, probe: Probe, report: Report, wake: Callable[[], None]
) -> None:
    """Take an instance out of routing while its readiness probe fails, back when it passes
    (`wake` tells the requests waiting for an instance)."""
    failures = successes = 0
    while not instance.retired:
        await asyncio.sleep(probe.period)
        if instance.retired or not instance.launched:
            failures = successes = 0
            continue
        if await probe_ok(instance, "/", probe.timeout):
            successes, failures = successes + 1, 0
            if not instance.ready and successes >= probe.success_threshold:
                instance.ready = True
                report(lifecycle.READY, f"instance {instance.id} is ready again")
                wake()
        else:
            failures, successes = failures + 1, 0
            if instance.ready and failures >= probe.failure_threshold:
                instance.ready = False
                report(
                    lifecycle.NOT_READY,
                    f"instance {instance.id} failed its readiness probe {failures} times; "
                    "it gets no traffic until it passes again",
                )
