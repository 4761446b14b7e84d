"""What an instance answers: Microsoft's inference server's contract, request by request.

Azure runs a deployment's `score.py` under `azmlinfsrv` (PyPI
`azureml-inference-server-http`, 1.5.1 is the reference read here); this module gives
the same answers on the emulator's own, lighter worker:

- `run()` is called as azmlinfsrv would call it (worker_inputs.py: the body as text,
  inference-schema's arguments, or the Flask request for `@rawhttp`).
- `GET /score` passes the query string as the input; `OPTIONS` is 200; other methods 405.
- What `run()` returns is sent as JSON (200), or as-is when it is a response object
  (`AMLResponse`, Flask's `Response`), whose status and headers are kept.
- Errors are `{"message": ...}` with azmlinfsrv's words and statuses: 400 for input that
  cannot be read, 415 for a schema'd script sent non-JSON, 500 when `run()` raises (its
  traceback goes to the log, never to the client).
- Headers: `x-ms-run-function-failed`, `x-ms-run-fn-exec-ms`, `x-request-id` (the
  client's, or a new one), `x-ms-request-id` and `x-ms-client-request-id`, as azmlinfsrv
  derives them; 431 for ids over 100 characters.
- `GET /swagger.json?version=2|3|3.1` from a `swagger*.json` shipped with the code, or
  generated from the schema decorators (templates from azmlinfsrv, MIT licence).

The script is loaded and checked as azmlinfsrv does (`init()` and `run()` must exist;
`run()` takes no `*args`, `**kwargs` or positional-only parameters); a script that
fails those checks fails the instance's start, as on Azure.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from emulator.worker_inputs import (
    BadInput,
    Call,
    NoInput,
    ScriptError,
    calling_convention,
    inference_schema,
    query_values,
    request_headers,
)

log = logging.getLogger("azmlinfsrv")

HEADER_LIMIT = 100
SWAGGER_VERSIONS = ("2", "3", "3.1")
_ALIASES = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}
_TEMPLATES = Path(__file__).with_name("swagger")
_RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
_INTERNAL = "An unexpected internal error occurred. Check the logs for more info."
_NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again."
)
_NOT_ALLOWED = "The method is not allowed for the requested URL."
_HTML = "text/html; charset=utf-8"
_JSON = "application/json"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def load_script(path: str) -> ModuleType:
    """Import the entry script; a failure is the script's own exception."""
    spec = importlib.util.spec_from_file_location("score", path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"cannot load scoring script {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["score"] = module
    spec.loader.exec_module(module)
    return module


class ScoringScript:
    """A loaded score.py with the calling convention azmlinfsrv would use for it."""

    def __init__(self, module: ModuleType, *, app_root: str, server_version: str) -> None:
        where = getattr(module, "__file__", "score.py")
        if not hasattr(module, "init"):
            raise ScriptError(f"User script at {where} does not have a init() function defined.")
        if not hasattr(module, "run"):
            raise ScriptError(f"User script at {where} does not have a run() function defined.")
        driver = getattr(module, "driver_module", None)
        # SDK-generated driver scripts forward run() to the real one, which is called directly.
        target = driver if isinstance(driver, ModuleType) and hasattr(driver, "run") else module
        self.init: Callable[[], Any] = module.init
        self.run: Callable[..., Any] = target.run
        self.app_root = app_root
        self.server_version = server_version
        self._parse, self._takes_headers, self.kind = calling_convention(self.run)
        log.info("run() takes %s", self.kind)
        self._swagger = {version: self._build_swagger(version) for version in SWAGGER_VERSIONS}

    # -- requests --------------------------------------------------------------------------

    def health(self, call: Call) -> Reply:
        return self._finish(call, lambda: Reply(200, b"Healthy", _HTML))

    def serve(self, call: Call) -> Reply:
        """The answer to any request but the health probe's."""
        # Requests no route takes are answered before azmlinfsrv's hooks: no request ids.
        if call.path == "/score":
            if call.method not in ("GET", "POST", "OPTIONS"):
                return _error(405, _NOT_ALLOWED)
            return self._finish(call, lambda: self._score(call))
        if call.path == "/swagger.json":
            if call.method != "GET":
                return _error(405, _NOT_ALLOWED)
            return self._finish(call, lambda: self._swagger_reply(call))
        return _error(404, _NOT_FOUND)

    def _finish(self, call: Call, answer: Callable[[], Reply]) -> Reply:
        """azmlinfsrv's request-id checks before the route, and its headers after it."""
        request_id = call.header("x-request-id") or str(uuid.uuid4())
        if len(request_id) > HEADER_LIMIT:
            reply = _error(431, f"x-request-id must not exceed {HEADER_LIMIT} characters")
            return self._stamp(reply, "", "", "")
        legacy = call.header("x-ms-request-id") or ""
        client = call.header("x-ms-client-request-id") or ""
        if legacy:
            client = client or legacy
        else:
            legacy = client or request_id
        if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
            reply = _error(
                431,
                f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} "
                "characters",
            )
            return self._stamp(reply, request_id, "", "")
        try:
            reply = answer()
        except Exception:  # noqa: BLE001 - azmlinfsrv's handler of unhandled errors
            log.error("Encountered Exception: %s", traceback.format_exc())
            reply = _error(500, _INTERNAL)
        return self._stamp(reply, request_id, legacy, client)

    def _stamp(self, reply: Reply, request_id: str, legacy: str, client: str) -> Reply:
        if self.server_version:
            reply.headers.append(("x-ms-server-version", self.server_version))
        for name, value in (
            ("x-request-id", request_id),
            ("x-ms-request-id", legacy),
            ("x-ms-client-request-id", client),
        ):
            if value:
                reply.headers.append((name, value))
        return reply

    def _score(self, call: Call) -> Reply:
        try:
            arguments = self._parse(call)
        except NoInput:
            return Reply(200, b"", _HTML, [("x-ms-run-function-failed", "False")])
        except BadInput as exc:
            return _error(exc.status, str(exc))
        if self._takes_headers:
            arguments["request_headers"] = request_headers(call)
        started = time.perf_counter()
        try:
            output = self.run(**arguments)
        except Exception:  # noqa: BLE001 - the user's error is logged, the client gets 500
            log.error("Encountered Exception: %s", traceback.format_exc())
            return _error(500, _RUN_FAILED, run_failed=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
        reply = _response_reply(output)
        if reply is None:
            # Not a response object: sent as JSON (a value json cannot take is a 500), and
            # None as {} (AMLResponse's empty message).
            reply = Reply(200, json.dumps({} if output is None else output).encode(), _JSON)
            reply.headers.append(("x-ms-run-function-failed", "False"))
        reply.headers.append(("x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}"))
        return reply

    # -- swagger ---------------------------------------------------------------------------

    def _swagger_reply(self, call: Call) -> Reply:
        asked = query_values(call.query).get("version", ["2"])[0]
        supported = ", ".join(v for v in SWAGGER_VERSIONS if self._swagger[v] is not None)
        version = _ALIASES.get(asked)
        if version is None:
            return _error(
                404, f"Swagger version [{asked}] is not valid. Supported versions: [{supported}]."
            )
        document = self._swagger[version]
        if document is None:
            return _error(
                404,
                f"Swagger version [{asked}] is not supported for the scoring script. "
                f"Supported swagger versions: [{supported}].",
            )
        return _json_reply(200, document)

    def _build_swagger(self, version: str) -> dict[str, Any] | None:
        shipped = (
            ["swagger.json", "swagger2.json"] if version == "2" else [f"swagger{version}.json"]
        )
        for name in shipped:
            path = Path(self.app_root) / name
            if path.is_file():
                log.info("Loaded user's swagger file for version [%s] from %s", version, path)
                document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                return document
        schema_util = inference_schema()
        aliases = [alias for alias, target in _ALIASES.items() if target == version]
        # An undecorated run() has every version (inference-schema says so for it too).
        if schema_util is not None and not any(
            a in schema_util.get_supported_versions(self.run) for a in aliases
        ):
            return None
        if schema_util is not None and schema_util.is_schema_decorated(self.run):
            inputs = schema_util.get_input_schema(self.run)
            outputs = schema_util.get_output_schema(self.run)
        else:
            inputs = outputs = {"type": "object", "example": {}}
        template = _TEMPLATES / (
            "swagger2_template.json" if version == "2" else "swagger3_template.json"
        )
        text = (
            template.read_text(encoding="utf-8")
            .replace("$SERVICE_NAME$", "ML service")
            .replace("$SERVICE_VERSION$", "1.0")
            .replace("$PATH_PREFIX$", "")
        )
        spec: dict[str, Any] = json.loads(text)
        schemas = spec["definitions"] if version == "2" else spec["components"]["schemas"]
        schemas["ServiceInput"], schemas["ServiceOutput"] = inputs, outputs
        if version == "3.1":
            spec["openapi"] = "3.1.0"
        return spec


# -- answers --------------------------------------------------------------------------------


def _response_reply(output: Any) -> Reply | None:
    """A response object's status, body and headers; None for any other value."""
    status = getattr(output, "status_code", None)
    if not isinstance(status, int):
        return None
    get_data = getattr(output, "get_data", None)
    data = get_data() if callable(get_data) else getattr(output, "data", b"")
    body = data if isinstance(data, bytes) else str(data).encode()
    content_type = str(getattr(output, "content_type", None) or _HTML)
    headers: list[tuple[str, str]] = []
    for name, value in getattr(output, "headers", {}).items():
        if name.lower() not in ("content-type", "content-length"):
            headers.append((name, str(value)))
    log.info("run() output is HTTP Response")
    if status >= 500:
        headers = [(k, v) for k, v in headers if k.lower() != "x-ms-run-function-failed"]
        headers.append(("x-ms-run-function-failed", "True"))
    return Reply(status, body, content_type, headers)


def _json_reply(status: int, value: Any, *, run_failed: bool = False) -> Reply:
    return Reply(
        status,
        json.dumps(value).encode(),
        _JSON,
        [("x-ms-run-function-failed", "True" if run_failed else "False")],
    )


def _error(status: int, message: str, *, run_failed: bool = False) -> Reply:
    return _json_reply(status, {"message": message}, run_failed=run_failed)
