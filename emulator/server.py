"""Running the emulator: state directory, HTTPS listener, lock, and connection facts.

One server per state directory (a file lock guarantees it). On start it writes
`server.json` with its pid and URLs; `status` reads that, checks the process holds
the lock and answers on /health, and adds the ARM token and CA path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import psutil  # type: ignore[import-untyped]
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from emulator import arm, monitor, scoring, unrouted
from emulator.auth import arm_token
from emulator.instances import SOCKET_NAME_MAX
from emulator.latency import check_latency_ms, delayed
from emulator.mirror_sample import MirrorSample, check_capacity
from emulator.privacy import make_private
from emulator.service import Emulator
from emulator.store import Store
from emulator.tls import ensure_tls
from emulator.workspace import LOCATION, RESOURCE_GROUP, WORKSPACE

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = ".emulator"
# sun_path of AF_UNIX is 108 bytes, the terminating NUL included.
_UNIX_PATH_MAX = 107


class NotRunning(Exception):
    """No emulator answers for this state directory."""


class AlreadyRunning(Exception):
    """Another emulator already serves this state directory."""


def state_dir_from(value: str | None) -> Path:
    raw = value or os.environ.get("EMULATOR_STATE_DIR") or DEFAULT_STATE_DIR
    return Path(raw).expanduser().resolve()


@contextlib.contextmanager
def _lock(state_dir: Path) -> Iterator[TextIO]:
    handle = open(state_dir / "server.lock", "a+")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise AlreadyRunning(
            f"an emulator is already running for state directory {state_dir}"
        ) from exc
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _lock_is_held(state_dir: Path) -> bool:
    path = state_dir / "server.lock"
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


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
    with _lock(state_dir):
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
        earlier = [_legacy_socket_dir(state_dir), state_dir / "sockets"]
        if isinstance(last.get("socket_dir"), str):
            earlier.append(Path(last["socket_dir"]))
        killed = _kill_strays(earlier)
        if killed:
            log.warning("killed %d instance process(es) left by an earlier run", killed)
        for folder in earlier:
            _remove_if_ours(folder)
        socket_dir = _socket_dir(state_dir)
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
            routes=[*arm.routes, *scoring.routes, *monitor.routes],
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


def _socket_dir(state_dir: Path) -> Path:
    """A folder of ours alone (0700) for the instances' Unix sockets.

    `sockets` in the state directory when the longest socket path fits AF_UNIX's 108 bytes,
    else a folder with a random name in the temp directory: a predictable name in a shared
    /tmp is one another user can create first, to make the emulator fail or to hijack it.
    """
    preferred = state_dir / "sockets"
    if len(os.fsencode(preferred)) + 1 + SOCKET_NAME_MAX <= _UNIX_PATH_MAX:
        try:
            os.mkdir(preferred, 0o700)
        except FileExistsError:
            log.warning(
                "%s exists and is not a folder of ours; instance sockets go to a private "
                "folder in %s instead",
                preferred,
                tempfile.gettempdir(),
            )
        else:
            return _checked_private(preferred)
    return _checked_private(Path(tempfile.mkdtemp(prefix="bluegreen-")))


def _checked_private(folder: Path) -> Path:
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"socket folder {folder} is not a folder owned by this user")
    os.chmod(folder, 0o700)
    return folder


def _legacy_socket_dir(state_dir: Path) -> Path:
    """Where earlier versions put the sockets (a name anyone could predict)."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"bluegreen-{digest}"


def _remove_if_ours(folder: Path) -> None:
    """Remove a socket folder an earlier run left; never one another user owns."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
        shutil.rmtree(folder, ignore_errors=True)
    else:
        log.warning("leaving %s alone: it is not a folder of ours", folder)


def _kill_strays(socket_dirs: list[Path], timeout: float = 5.0) -> int:
    """Kill this user's instance processes whose socket is in one of `socket_dirs`.

    Instances exit when their emulator dies; these are the ones an earlier run of this
    state directory left anyway (the lock we hold says that run is over).
    """
    folders = {str(d) for d in socket_dirs}
    strays: list[psutil.Process] = []
    for process in psutil.process_iter(["cmdline", "uids"]):
        cmdline = process.info["cmdline"] or []
        uids = process.info["uids"]
        if "emulator.worker" not in cmdline or "--socket" not in cmdline or uids is None:
            continue
        at = cmdline.index("--socket") + 1
        in_folder = at < len(cmdline) and os.path.dirname(cmdline[at]) in folders
        if in_folder and uids.real == os.getuid() and process.pid != os.getpid():
            strays.append(process)
    for process in strays:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(strays, timeout=timeout)
    return len(strays)


@dataclass(frozen=True)
class Status:
    arm_url: str
    metrics_url: str
    ca_cert: str
    token: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    location: str
    pid: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(state_dir: Path, *, timeout: float = 5.0) -> Status:
    """Connection facts of the running emulator; raises NotRunning."""
    info_path = state_dir / "server.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise NotRunning(f"no emulator has run with state directory {state_dir}") from exc
    pid = info.get("pid")
    if not pid or not _lock_is_held(state_dir):
        raise NotRunning(f"the emulator for state directory {state_dir} is not running")
    ca = state_dir / "tls" / "ca.pem"
    try:
        response = httpx.get(f"{info['arm_url']}/health", verify=str(ca), timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise NotRunning(
            f"the emulator (pid {pid}) for {state_dir} does not answer at {info['arm_url']}: {exc}"
        ) from exc
    store = Store(state_dir / "state.db")
    try:
        subscription = store.get_meta("subscription_id") or ""
    finally:
        store.close()
    return Status(
        arm_url=info["arm_url"],
        metrics_url=info["metrics_url"],
        ca_cert=str(ca),
        token=arm_token(state_dir),
        subscription_id=subscription,
        resource_group=RESOURCE_GROUP,
        workspace_name=WORKSPACE,
        location=LOCATION,
        pid=int(pid),
    )


def wait_until_running(state_dir: Path, timeout: float) -> Status:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return status(state_dir, timeout=2.0)
        except NotRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the running emulator; False when none was running."""
    try:
        info = json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError):
        return False
    pid = info.get("pid")
    if not pid or not _lock_is_held(state_dir):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _lock_is_held(state_dir):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.1)
    return True
