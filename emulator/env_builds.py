"""Deployment environments built into cached virtual environments, with uv.

A deployment whose environment has a conda file runs its instances in a virtual
environment holding that file's packages (emulator/conda_env.py says which) plus what
the emulator's worker needs to serve (uvicorn, at the emulator's own versions), as
Azure's image holds the inference server. The environment is built once per content:
its key is a digest of the requirements and the interpreter, and a built one is kept in
the cache for every later deployment, restart and emulator (uv's own package cache makes
a new build of known packages take seconds).

Builds run as subprocesses, never on the event loop; deployments asking for the same
environment at once wait for one build. A build is made in a folder of its own and
renamed into place when it succeeded, so a crash or a failed build leaves nothing half
made, and two emulators sharing the cache never see each other's partial work.

The cache is `$BLUEGREEN_ENV_CACHE`, else `~/.cache/bluegreen/environments`; delete the
folder (or one environment in it) to make the next deployment build afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from emulator.conda_env import EnvironmentSpec, python_version

# What the worker imports (emulator/worker.py), at the versions the emulator runs.
WORKER_PACKAGES = ("uvicorn", "httptools", "uvloop")
BUILD_TIMEOUT_S = 900.0
_READY = ".bluegreen-ready"
_OUTPUT_TAIL = 40


class BuildFailed(Exception):
    """The environment could not be built; the message ends with the installer's output."""


def default_cache_dir() -> Path:
    configured = os.environ.get("BLUEGREEN_ENV_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "bluegreen" / "environments"


def worker_requirements() -> tuple[str, ...]:
    pins = []
    for name in WORKER_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return tuple(pins)


def environment_key(spec: EnvironmentSpec) -> str:
    """The cache key of an environment: its requirements, the worker's and the interpreter."""
    content = {
        "python": [python_version(), os.path.realpath(sys.executable)],
        "requirements": list(spec.requirements),
        "worker": list(worker_requirements()),
        "layout": 1,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


class EnvironmentBuilds:
    """Built environments in the cache, and the builds under way."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self._running: dict[str, asyncio.Task[Path]] = {}

    def built(self, spec: EnvironmentSpec) -> Path | None:
        """The python of the environment when it is built already, else None."""
        folder = self.cache_dir / environment_key(spec)
        python = folder / "bin" / "python"
        return python if (folder / _READY).is_file() and python.exists() else None

    async def python_for(self, spec: EnvironmentSpec, log: Callable[[str], None]) -> Path:
        """The python of the environment, built first when it is not in the cache."""
        key = environment_key(spec)
        ready = self.built(spec)
        if ready is not None:
            log(
                f"environment {key} is built already (cache {self.cache_dir}): "
                + ", ".join(spec.requirements)
            )
            return ready
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._build(key, spec, log))
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        else:
            log(f"environment {key} is being built for another deployment; waiting for it")
        # Shielded: a deployment that is deleted while waiting does not cancel a build
        # another deployment waits for too.
        return await asyncio.shield(task)

    async def _build(self, key: str, spec: EnvironmentSpec, log: Callable[[str], None]) -> Path:
        uv = _uv()
        final = self.cache_dir / key
        work = self.cache_dir / ".building" / f"{key}-{uuid.uuid4().hex[:8]}"
        work.parent.mkdir(parents=True, exist_ok=True)
        requirements = [*spec.requirements, *worker_requirements()]
        log(f"building environment {key} with uv into {final}")
        for skipped in spec.skipped:
            log(f"  conda package {skipped!r} is a system library: left to the host")
        for line in requirements:
            log(f"  requirement {line}")
        try:
            await _run([uv, "venv", "--relocatable", "--python", sys.executable, str(work)], log)
            listing = work / "bluegreen-requirements.txt"
            listing.write_text("\n".join(requirements) + "\n", encoding="utf-8")
            python = work / "bin" / "python"
            await _run([uv, "pip", "install", "--python", str(python), "-r", str(listing)], log)
            (work / _READY).write_text(json.dumps({"requirements": requirements}) + "\n")
            try:
                work.rename(final)
            except OSError:
                if not (final / _READY).is_file():
                    raise
                # Another emulator built the same environment meanwhile: use that one.
                shutil.rmtree(work, ignore_errors=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log(f"environment {key} is built")
        return final / "bin" / "python"


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise BuildFailed(
            "uv is not installed next to the emulator's python (it is in requirements.txt: "
            "run `make install`)"
        )
    return found


async def _run(command: list[str], log: Callable[[str], None]) -> None:
    """Run an installer step, its output lines logged; BuildFailed with them if it fails."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    assert process.stdout is not None

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            log(f"  {line}")

    try:
        await asyncio.wait_for(asyncio.gather(read(), process.wait()), BUILD_TIMEOUT_S)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if isinstance(exc, TimeoutError):
            raise BuildFailed(
                f"`{Path(command[0]).name} {command[1]}` did not finish within "
                f"{BUILD_TIMEOUT_S:.0f} s"
            ) from None
        raise
    if process.returncode != 0:
        tail = "\n".join(lines[-_OUTPUT_TAIL:])
        raise BuildFailed(
            f"`uv {' '.join(command[1:3])}` exited with {process.returncode}:\n{tail}"
        )
