"""Conditional writes: If-Match on the dashboard's PUTs, and one change at a time per endpoint.

A change is read -> compare -> PUT. Two things keep a racing writer's change from being
lost in between:

- `IfMatchPolicy`, an azure-core policy in every MLClient pipeline (workspace.py). Inside
  `if_match(path)` it keeps the ETag the service answered to the first GET of that resource
  and sends it as `If-Match` on the PUT/PATCH of it, so the service refuses (412) a write
  over a version this dashboard never read. azure-ai-ml 1.35 has no parameter for this:
  `OnlineEndpointOperations.begin_create_or_update` takes only the entity, its REST models
  have no `etag`, and the generated operations no `if_match`; a pipeline policy is the one
  place the request can be given the header. The scope is a contextvar, so the sessions and
  threads of one process never lend each other an ETag; LRO pollers run on their own threads
  (a fresh context) and are never touched. When the service answers no ETag, no If-Match is
  sent and the write is unconditional.
- `one_change_at_a_time`, a process-wide lock per (workspace, endpoint), held by the
  dashboard's own changes from the fresh read until the service accepted the PUT. Between
  the sessions of one dashboard process, the compare after the fresh read is then enough,
  ETag or not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from rollout.errors import Conflict

LOCK_TIMEOUT_S = 120.0


@dataclass
class Condition:
    """One conditional change of one resource: the ETag read, and the If-Match sent."""

    path: str
    etag: str | None = None
    sent: str | None = None
    active: bool = True


_CURRENT: ContextVar[Condition | None] = ContextVar("bluegreen_if_match", default=None)


def _path(url: str) -> str:
    return unquote(urlsplit(url).path).rstrip("/").lower()


class IfMatchPolicy(SansIOHTTPPolicy[Any, Any]):
    """Sends the ETag of the resource's GET as If-Match on its PUT/PATCH, inside `if_match`."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        condition = _CURRENT.get()
        http = request.http_request
        if (
            condition is not None
            and condition.active
            and condition.etag
            and http.method in ("PUT", "PATCH")
            and _path(http.url) == condition.path
        ):
            http.headers["If-Match"] = condition.etag
            condition.sent = condition.etag

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        condition = _CURRENT.get()
        http = request.http_request
        # The first GET wins: it is the version the change is built from, even when the SDK
        # reads the resource again before its PUT.
        if (
            condition is not None
            and condition.active
            and condition.etag is None
            and http.method == "GET"
            and response.http_response.status_code == 200
            and _path(http.url) == condition.path
        ):
            condition.etag = response.http_response.headers.get("ETag")


@contextmanager
def if_match(resource_path: str) -> Iterator[Condition]:
    """Within the block, a PUT/PATCH of `resource_path` carries the ETag of its first GET."""
    condition = Condition(_path(resource_path))
    token = _CURRENT.set(condition)
    try:
        yield condition
    finally:
        condition.active = False
        _CURRENT.reset(token)


_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def one_change_at_a_time(
    workspace: str, endpoint: str, *, timeout: float = LOCK_TIMEOUT_S
) -> Iterator[None]:
    """Hold this process's lock for changes to `endpoint` of `workspace` (or its deployments)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault((workspace, endpoint.lower()), threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise Conflict(
            f"another change to '{endpoint}' from this dashboard has been sending for more "
            f"than {timeout:.0f} s; nothing was sent; try again in a moment."
        )
    try:
        yield
    finally:
        lock.release()
