"""A small, careful HTTP/1.1 load generator on raw asyncio streams.

One request body, a fixed number of concurrent workers, each with its own
keep-alive connection (TCP, TLS or a Unix socket). A worker reconnects only when
the server closes the connection (gunicorn's sync worker answers `Connection:
close`), and that reconnect is part of the request's latency, as it would be for a
real client. Requests that start during the warm-up are left out of the numbers.

Raw streams instead of httpx: the client shares two cores with the servers it
measures, and a request costs it a few tens of microseconds this way instead of
several hundred, so the numbers are about the server, not the client.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class Target:
    """Where to send the request: TCP (`port`, optionally TLS) or a Unix socket (`uds`)."""

    name: str
    body: bytes
    path: str = "/score"
    headers: tuple[tuple[str, str], ...] = ()
    host: str = "127.0.0.1"
    port: int | None = None
    uds: str | None = None
    tls: ssl.SSLContext | None = None

    def request_bytes(self) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host if self.port is None else f'{self.host}:{self.port}'}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.uds is not None:
            return await asyncio.open_unix_connection(self.uds, limit=_READ_LIMIT)
        if self.port is None:
            raise ValueError(f"target {self.name!r} has neither a port nor a Unix socket")
        return await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self.tls,
            server_hostname=self.host if self.tls is not None else None,
            limit=_READ_LIMIT,
        )


class ProtocolError(Exception):
    """The server's answer is not an HTTP/1.1 response this client understands."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    close: bool


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One HTTP/1.x response: status line, headers, then a Content-Length or chunked body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    close = parts[0] == b"HTTP/1.0"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    connection = headers.get("connection", "").lower()
    if connection == "close":
        close = True
    elif connection == "keep-alive":
        close = False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        close = True
    return Response(status, headers, body, close)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def request_once(target: Target, timeout: float = 10.0) -> Response:
    """One request on a fresh connection (for checks before a measurement)."""
    async with asyncio.timeout(timeout):
        reader, writer = await target.connect()
        try:
            writer.write(target.request_bytes())
            await writer.drain()
            return await read_response(reader)
        finally:
            writer.close()


@dataclass
class LoadResult:
    target: str
    concurrency: int
    duration_s: float
    requests: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    statuses: dict[str, int]
    error_kinds: dict[str, int]
    connections_opened: int
    warmup_requests: int
    extra: dict[str, Any] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "latencies_ms"}


def summarize(
    target: str,
    concurrency: int,
    duration_s: float,
    latencies_ms: list[float],
    statuses: Counter[str],
    error_kinds: Counter[str],
    connections: int,
    warmup: int,
) -> LoadResult:
    ms = sorted(latencies_ms)
    ok = len(ms)
    errors = sum(n for s, n in statuses.items() if s != "200") + sum(error_kinds.values())
    return LoadResult(
        target=target,
        concurrency=concurrency,
        duration_s=duration_s,
        requests=ok + errors,
        throughput_rps=ok / duration_s,
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / ok if ok else math.nan,
        max_ms=ms[-1] if ms else math.nan,
        errors=errors,
        statuses=dict(statuses),
        error_kinds=dict(error_kinds),
        connections_opened=connections,
        warmup_requests=warmup,
        latencies_ms=ms,
    )


def pool(results: list[LoadResult]) -> LoadResult:
    """Several slices of the same measurement as one: pooled latencies, summed counts."""
    first = results[0]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    error_kinds: Counter[str] = Counter()
    for r in results:
        latencies.extend(r.latencies_ms)
        statuses.update(r.statuses)
        error_kinds.update(r.error_kinds)
    pooled = summarize(
        first.target,
        first.concurrency,
        sum(r.duration_s for r in results),
        latencies,
        statuses,
        error_kinds,
        sum(r.connections_opened for r in results),
        sum(r.warmup_requests for r in results),
    )
    pooled.extra["slices"] = [
        {"req_per_s": round(r.throughput_rps, 1), "p50_ms": round(r.p50_ms, 3)} for r in results
    ]
    return pooled


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class _Window:
    start: float
    end: float
    max_requests: int
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    warmup: int = 0
    issued: int = 0

    def open(self, now: float) -> bool:
        return now < self.end and self.issued < self.max_requests


async def _worker(target: Target, window: _Window, timeout: float) -> None:
    payload = target.request_bytes()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while window.open(time.perf_counter()):
        window.issued += 1
        started = time.perf_counter()
        counted = started >= window.start
        try:
            async with asyncio.timeout(timeout):
                if writer is None or reader is None:
                    reader, writer = await target.connect()
                    if counted:
                        window.connections += 1
                writer.write(payload)
                response = await read_response(reader)
        except (OSError, EOFError, TimeoutError, ProtocolError, ValueError) as exc:
            if writer is not None:
                writer.close()
            reader = writer = None
            if counted and time.perf_counter() <= window.end:
                window.error_kinds[type(exc).__name__] += 1
            # A refused connection fails at once; do not spin on it.
            await asyncio.sleep(0.01)
            continue
        ended = time.perf_counter()
        if response.close:
            assert writer is not None
            writer.close()
            reader = writer = None
        if not counted:
            window.warmup += 1
            continue
        if ended > window.end:
            continue  # finished after the window closed: neither counted nor an error
        window.statuses[str(response.status)] += 1
        if response.status == 200:
            window.latencies.append(ended - started)
    if writer is not None:
        writer.close()


async def run_load(
    target: Target,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    timeout_s: float = 10.0,
    max_requests: int = 2_000_000,
) -> LoadResult:
    """Drive `concurrency` workers for warm-up + duration; measure the requests of the window.

    Latency percentiles are over successful (200) requests; every other status and
    every transport error counts as an error.
    """
    now = time.perf_counter()
    window = _Window(
        start=now + warmup_s, end=now + warmup_s + duration_s, max_requests=max_requests
    )
    await asyncio.gather(*(_worker(target, window, timeout_s) for _ in range(concurrency)))
    return summarize(
        target.name,
        concurrency,
        duration_s,
        [x * 1000 for x in window.latencies],
        window.statuses,
        window.error_kinds,
        window.connections,
        window.warmup,
    )
