"""One instance of a deployment: an OS process that serves the user's score.py.

Azure's scoring contract: `AZUREML_MODEL_DIR` names the model's directory, `init()`
runs once before any request, `run(raw_data)` runs per request with the request
body. The instance listens on a Unix socket of its own; the emulator's router
forwards scoring requests to it. Readiness (`GET /`) answers 200 only once `init()`
has finished; liveness is `GET /health`. Logging goes to stderr, which the
supervisor appends to the deployment's log (what getLogs returns).

    python -m emulator.worker --socket S --code-dir D --script score.py --model-dir M \\
        --instance-id I --parent-pid P

An instance never outlives the emulator that started it (pid P), even one killed with -9.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn

from emulator.worker_contract import Reply, ScoringScript, load_script
from emulator.worker_inputs import Call

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EXIT_INIT_FAILED = 3
# What instances say in x-ms-server-version: not azmlinfsrv, but answering as it does.
SERVER_VERSION = "bluegreen-emulator-worker/1"
log = logging.getLogger("azmlinfsrv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--script", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s {args.instance_id} %(levelname)s %(name)s: %(message)s",
    )
    os.environ["AZUREML_MODEL_DIR"] = args.model_dir
    os.environ["AZUREML_ENTRY_SCRIPT"] = args.script
    os.environ["AZUREML_INSTANCE_ID"] = args.instance_id
    os.chdir(args.code_dir)
    sys.path.insert(0, args.code_dir)

    log.info("Starting instance %s (pid %d)", args.instance_id, os.getpid())
    log.info("AZUREML_MODEL_DIR=%s entry script=%s", args.model_dir, args.script)
    try:
        module = load_script(os.path.join(args.code_dir, args.script))
        script = ScoringScript(module, app_root=args.code_dir, server_version=SERVER_VERSION)
        started = time.perf_counter()
        log.info("Invoking user's init function")
        script.init()
        log.info("init() finished in %.0f ms", (time.perf_counter() - started) * 1000)
    except BaseException:  # noqa: BLE001 - any failure of user code is an init failure
        log.error("init() failed, the instance cannot serve:\n%s", traceback.format_exc())
        return EXIT_INIT_FAILED

    app = _ScoringApp(script, max_concurrency=args.max_concurrency)
    # The router keeps its connections open; the instance does not time them out.
    # Bound here rather than by uvicorn, which makes a new socket file 0666: only the
    # emulator's user may connect (the folder is private too).
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket)
    os.chmod(args.socket, 0o600)
    config = uvicorn.Config(
        app,
        fd=listener.fileno(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=3600,
    )
    log.info("Instance %s ready on %s", args.instance_id, args.socket)
    uvicorn.Server(config).run()
    return 0


_PR_SET_PDEATHSIG = 1


def _exit_with_parent(parent: int) -> None:
    """Tie this process's life to `parent`'s, with no window where its death goes unseen.

    The kernel kills us when the parent dies (PR_SET_PDEATHSIG, Linux), and the check after
    it catches a parent that died before that was set: then our parent is no longer
    `parent`. The pid comes from the command line, as reading getppid() here would already
    see init when the emulator died just after starting us. A watch thread covers systems
    without prctl.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        sys.stderr.write(f"parent process {parent} is gone; instance exiting\n")
        os._exit(0)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _ScoringApp:
    """A minimal ASGI app: every request answered as the inference server would."""

    def __init__(self, script: ScoringScript, *, max_concurrency: int) -> None:
        self._script = script
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_concurrency))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        query = scope.get("query_string", b"").decode("latin-1")
        if method == "GET" and path in ("/", "/health"):
            # Readiness and liveness probes: answered on the loop, never queued behind run().
            await _respond(send, self._script.health(Call(method, path, query, headers)))
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        call = Call(method, path, query, headers, bytes(body))
        loop = asyncio.get_running_loop()
        await _respond(send, await loop.run_in_executor(self._pool, self._script.serve, call))


async def _respond(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


if __name__ == "__main__":
    sys.exit(main())
