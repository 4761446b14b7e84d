"""A small HTTP/1.1 client for the router's calls to instances over their Unix sockets.

The router forwards every scoring request, so this path is hot: a general-purpose
client (httpx) cost more CPU per request than the model itself. Instances are our
own worker processes, which always answer with Content-Length, so a minimal client
with keep-alive connections is enough and several times cheaper.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


class UpstreamError(Exception):
    """The instance could not be reached or broke the connection."""


class NotReached(UpstreamError):
    """The request never reached the instance (nothing listens on its socket)."""


class Broken(UpstreamError):
    """The connection broke after the request was sent, before a full answer."""


class TooLarge(UpstreamError):
    """The answer's body is over the caller's limit; it was not read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the answer has {size} bytes, over the limit of {limit}")
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    # The instance's other headers, to relay (not those of the connection itself).
    headers: tuple[tuple[str, str], ...] = ()


# Headers of the connection, not of the answer: never relayed to the client.
_OWN_HEADERS = frozenset(
    {b"content-length", b"content-type", b"connection", b"keep-alive", b"transfer-encoding"}
    | {b"date", b"server"}
)


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Upstream:
    """Keep-alive connections to one instance's socket."""

    def __init__(self, socket_path: str, *, max_idle: int = 64) -> None:
        self.socket_path = socket_path
        self._idle: list[_Connection] = []
        self._max_idle = max_idle

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        headers: bytes = b"",
        limit: int | None = None,
    ) -> Answer:
        """One request; a stale idle connection is replaced once, transparently.

        `headers` are header lines to send (each "name: value" and CRLF), besides host and
        content-length.

        An answer whose body is over `limit` bytes raises TooLarge without being read
        (its connection is closed), so a huge answer never sits in the router's memory.
        """
        while self._idle and self._idle[-1][0].at_eof():
            self._close(self._idle.pop()[1])  # closed by the instance while idle
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else await self._open()
        try:
            return await self._exchange(connection, f"{method} {path}", headers, body, limit)
        except _Stale:
            if not reused:
                raise Broken("the instance closed the connection without answering") from None
            # An idle keep-alive connection the instance had closed: the request was not
            # read by anyone, so it is sent again on a fresh connection.
            connection = await self._open()
            return await self._exchange(connection, f"{method} {path}", headers, body, limit)

    async def _open(self) -> _Connection:
        try:
            return await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            raise NotReached(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(
        self, connection: _Connection, target: str, headers: bytes, body: bytes, limit: int | None
    ) -> Answer:
        reader, writer = connection
        head = (
            f"{target} HTTP/1.1\r\nhost: instance\r\n".encode()
            + headers
            + f"content-length: {len(body)}\r\n\r\n".encode()
        )
        relayed: list[tuple[str, str]] = []
        keep = False
        try:
            writer.write(head + body if body else head)
            status_line = await reader.readline()
            if not status_line:
                raise _Stale
            status = int(status_line.split(b" ", 2)[1])
            length, content_type, keep = 0, "application/json", True
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise Broken("the instance closed the connection in the headers")
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value.strip())
                elif key == b"content-type":
                    content_type = value.strip().decode("latin-1")
                elif key == b"connection" and value.strip().lower() == b"close":
                    keep = False
                elif key not in _OWN_HEADERS:
                    relayed.append(
                        (name.strip().decode("latin-1"), value.strip().decode("latin-1"))
                    )
            if limit is not None and length > limit:
                raise TooLarge(length, limit)
            payload = await reader.readexactly(length) if length else b""
        except (_Stale, TooLarge):
            self._close(writer)
            raise
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError) as exc:
            self._close(writer)
            raise Broken(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            # Cancelled (a client timeout) mid-exchange: the connection's state is unknown.
            self._close(writer)
            raise
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            self._close(writer)
        return Answer(status, content_type, payload, tuple(relayed))

    @staticmethod
    def _close(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            self._close(writer)


class _Stale(Exception):
    """No byte came back on a connection: closed before our request was read."""
