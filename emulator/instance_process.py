"""An instance's OS process: started in its deployment's environment, output to the log, ended.

The process runs `python -m emulator.worker` with the deployment's interpreter (its built
environment's, or the emulator's own), in a session of its own, with the deployment's
environment variables. Its output goes through a pipe to a rotating log by a pump thread
(emulator.logfile); both ends of the pipe are non-inheritable, so no other child holds
the write end open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from emulator.instance import Instance
from emulator.logfile import RotatingLog, pump

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
_STOP_GRACE_S = 5.0
_LOG_DRAIN_S = 2.0


async def spawn(
    instance: Instance, log: RotatingLog, tee: Callable[[list[bytes]], None] | None
) -> asyncio.subprocess.Process:
    """Start the instance's process, its output pumped into `log` (and to `tee`)."""
    spec = instance.spec
    with contextlib.suppress(FileNotFoundError):
        instance.socket.unlink()
    env = dict(os.environ)
    env.update(dict(spec.env))
    env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            spec.python or sys.executable,
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
            # The instance exits when this process dies, even right after this call.
            "--parent-pid",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            env=env,
            cwd=str(_PACKAGE_PARENT),
            start_new_session=True,
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    instance.process = process
    instance.log_pump = threading.Thread(
        target=pump,
        args=(read_end, log),
        kwargs={"tee": tee},
        name=f"log-{instance.id}",
        daemon=True,
    )
    instance.log_pump.start()
    return process


async def terminate(instance: Instance) -> None:
    """SIGTERM, then SIGKILL after a grace period; returns once the process is gone."""
    process = instance.process
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def drain_log(instance: Instance) -> None:
    """Wait until a dead instance's last output is in the log (bounded: a grandchild it
    started may hold the pipe open)."""
    if instance.log_pump is not None:
        await asyncio.to_thread(instance.log_pump.join, _LOG_DRAIN_S)
