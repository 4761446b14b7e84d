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
import importlib.util
import json
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
from types import ModuleType
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EXIT_INIT_FAILED = 3
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
        script = _load_script(os.path.join(args.code_dir, args.script))
        init = getattr(script, "init", None)
        if init is not None:
            started = time.perf_counter()
            init()
            log.info("init() finished in %.0f ms", (time.perf_counter() - started) * 1000)
        run = script.run
    except BaseException:  # noqa: BLE001 - any failure of user code is an init failure
        log.error("init() failed, the instance cannot serve:\n%s", traceback.format_exc())
        return EXIT_INIT_FAILED

    app = _ScoringApp(run, max_concurrency=args.max_concurrency)
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


def _load_script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("score", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load scoring script {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["score"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError(f"scoring script {path!r} defines no run(raw_data) function")
    return module


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
    """A minimal ASGI app: readiness, liveness and POST /score calling run()."""

    def __init__(self, run: Callable[[Any], Any], *, max_concurrency: int) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_concurrency))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path in ("/", "/health"):
            await _respond(send, 200, b"Healthy", "text/plain")
            return
        if method != "POST" or path != "/score":
            await _respond(send, 404, b"Not found", "text/plain")
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        loop = asyncio.get_running_loop()
        status, payload, ctype = await loop.run_in_executor(self._pool, self._score, bytes(body))
        await _respond(send, status, payload, ctype)

    def _score(self, body: bytes) -> tuple[int, bytes, str]:
        raw: str | bytes
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body
        try:
            output = self._run(raw)
        except Exception as exc:  # noqa: BLE001 - the user's error becomes the response
            log.error("Encountered Exception in run():\n%s", traceback.format_exc())
            reason = f"{type(exc).__name__}: {exc}"
            return 500, json.dumps({"error": reason}).encode(), "application/json"
        return _encode_output(output)


def _encode_output(output: Any) -> tuple[int, bytes, str]:
    # A response object (Flask's Response, AzureML's AMLResponse) carries its own status.
    status = getattr(output, "status_code", None)
    if isinstance(status, int):
        get_data = getattr(output, "get_data", None)
        data = get_data() if callable(get_data) else getattr(output, "data", b"")
        payload = data if isinstance(data, bytes) else str(data).encode()
        ctype = str(getattr(output, "content_type", None) or "application/json")
        return status, payload, ctype
    if isinstance(output, bytes):
        return 200, output, "application/octet-stream"
    try:
        return 200, json.dumps(output).encode(), "application/json"
    except (TypeError, ValueError) as exc:
        log.error("run() returned a value that is not JSON serializable: %s", exc)
        return (
            500,
            json.dumps({"error": f"run() output is not JSON: {exc}"}).encode(),
            ("application/json"),
        )


async def _respond(send: Send, status: int, payload: bytes, ctype: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    sys.exit(main())
