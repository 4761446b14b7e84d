"""The Log Analytics query API, as `azure.monitor.query.LogsQueryClient` calls it.

    POST /loganalytics/v1/workspaces/{workspaceId}/query   {"query": ..., "timespan": ...}

with the emulator's ARM token (the client's `endpoint` is `{emulator}/loganalytics`). The
workspace id is the emulator's own (`python -m emulator status --json`:
`log_analytics_workspace_id`). The query is the KQL subset of emulator/logs_kql.py over
the tables of emulator/logs_tables.py; anything else is 400 with Log Analytics' error
shape, naming what the emulator does not take.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import re
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import logs_tables
from emulator.auth import UNAUTHORIZED, has_arm_token
from emulator.logs_kql import Column, KqlError, Row, parse
from emulator.service import Emulator
from emulator.store import parse_utc

PREFIX = "/loganalytics"
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_MAX_BODY = 1 << 20


class LogsError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {
            "message": self.message,
            "code": self.code,
            "correlationId": str(uuid.uuid4()),
        }
        if self.inner is not None:
            error["innererror"] = {"code": self.inner, "message": self.message}
        return JSONResponse({"error": error}, status_code=self.status)


def parse_timespan(value: object, now: float) -> tuple[float, float]:
    """(start, end) in epoch seconds of an ISO 8601 duration or interval; everything kept
    when there is none."""
    if value is None or value == "":
        return 0.0, now
    if not isinstance(value, str) or len(value) > 100:
        raise _bad_timespan(value)
    parts = value.split("/")
    if len(parts) == 1:
        return now - _duration(parts[0], value), now
    if len(parts) != 2:
        raise _bad_timespan(value)
    first, second = parts
    if first.upper().startswith("P"):
        end = _instant(second, value)
        return end - _duration(first, value), end
    start = _instant(first, value)
    if second.upper().startswith("P"):
        return start, start + _duration(second, value)
    return start, _instant(second, value)


def _bad_timespan(value: object) -> LogsError:
    return LogsError(
        400,
        "BadArgumentError",
        f"The timespan {json.dumps(value)} is not an ISO 8601 duration or interval such as "
        "PT1H or 2026-12-01T10:00:00Z/2026-12-01T11:00:00Z.",
        "InvalidTimespan",
    )


def _duration(text: str, whole: str) -> float:
    match = _DURATION.match(text)
    if match is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        raise _bad_timespan(whole)
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("d", 0) * 86400
        + parts.get("h", 0) * 3600
        + parts.get("m", 0) * 60
        + parts.get("s", 0)
    )


def _instant(text: str, whole: str) -> float:
    try:
        return parse_utc(text).timestamp()
    except ValueError:
        raise _bad_timespan(whole) from None


def run_query(emulator: Emulator, query: str, timespan: object) -> dict[str, Any]:
    """The answer to one query, as Log Analytics shapes it (raises LogsError)."""
    now = time.time()
    start, end = parse_timespan(timespan, now)
    try:
        plan = parse(query, logs_tables.columns_of, now=dt.datetime.fromtimestamp(now, dt.UTC))
        table = logs_tables.canonical(plan.table)
        found, columns = plan.run(
            logs_tables.rows(emulator, table, start, end), list(logs_tables.COLUMNS[table])
        )
    except KqlError as exc:
        raise LogsError(
            400,
            "BadArgumentError",
            f"The query could not be run by the emulator's Logs API: {exc}.",
            "SyntaxError",
        ) from None
    return {"tables": [_table(found, columns)]}


def _table(found: list[Row], columns: list[Column]) -> dict[str, Any]:
    return {
        "name": "PrimaryResult",
        "columns": [{"name": name, "type": kind} for name, kind in columns],
        "rows": [[_cell(row.get(name)) for name, _ in columns] for row in found],
    }


def _cell(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


async def query(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    try:
        if not has_arm_token(request):
            raise LogsError(401, "AuthorizationRequiredError", UNAUTHORIZED)
        workspace_id = request.path_params["workspace_id"]
        if not hmac.compare_digest(
            workspace_id.lower().encode(), emulator.log_analytics_workspace_id.lower().encode()
        ):
            raise LogsError(
                404,
                "WorkspaceNotFoundError",
                f"The Log Analytics workspace '{workspace_id}' was not found; the emulator's "
                f"is '{emulator.log_analytics_workspace_id}'.",
            )
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise LogsError(413, "PayloadTooLargeError", "The query body is over 1 MiB.")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise LogsError(400, "BadArgumentError", "The body is not JSON.") from None
        text = body.get("query") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise LogsError(400, "BadArgumentError", "The body has no 'query' string.")
        if body.get("workspaces"):
            raise LogsError(
                400,
                "BadArgumentError",
                "The emulator has one Log Analytics workspace: additional workspaces "
                f"{json.dumps(body['workspaces'])} cannot be queried.",
            )
        answer = await asyncio.to_thread(run_query, emulator, text, body.get("timespan"))
    except LogsError as exc:
        return exc.response()
    return JSONResponse(answer)


routes = [
    Route(f"{PREFIX}/v1/workspaces/{{workspace_id}}/query", query, methods=["POST"]),
]
