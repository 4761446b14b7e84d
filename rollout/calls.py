"""What a workspace's clients send: a count of HTTP requests and the time they took.

`CallLog` is an azure-core policy in every pipeline of a Workspace's MLClient (ARM) and of
its MetricsClient, placed per retry so that it counts requests as they go on the wire. The
dashboard shows it beside "read N s ago", and tests use it to prove that a widget
interaction sends nothing. `http_session` is the one requests session every client of a
workspace shares, with a connection pool as large as the pool of reading threads, so that
parallel reads reuse their connections (a new TLS connection to Azure costs two more
round trips) instead of each opening and dropping its own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

_STARTED = "bluegreen_call_started"


@dataclass(frozen=True)
class CallCount:
    """Requests sent so far, the seconds they took in all, and the most that were ever in
    flight at once."""

    requests: int
    seconds: float
    peak: int


class CallLog(SansIOHTTPPolicy[Any, Any]):
    """Counts the HTTP requests of the pipelines it is in, and how long each took."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._seconds = 0.0
        self._in_flight = 0
        self._peak = 0

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context[_STARTED] = time.perf_counter()
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        self._took(request)

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        self._took(request)

    def _took(self, request: PipelineRequest[Any]) -> None:
        started = request.context.get(_STARTED)
        if started is not None:
            with self._lock:
                self._seconds += time.perf_counter() - started
                self._in_flight -= 1

    @property
    def count(self) -> CallCount:
        with self._lock:
            return CallCount(self._requests, self._seconds, self._peak)

    def reset_peak(self) -> None:
        """Start counting the most in flight at once from now."""
        with self._lock:
            self._peak = self._in_flight


def http_session(pool_size: int) -> requests.Session:
    """A requests session for azure-core's transport, with `pool_size` connections per host.

    Configured as azure-core configures the sessions it makes itself: urllib3's own retries
    off (the pipeline's retry policy retries), and no redirects followed by urllib3.
    """
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=pool_size,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session
