"""The last mirrored requests of each endpoint, with the live and the mirror answer (emulator only).

Azure drops the mirror deployment's answer; the emulator keeps a sample of them so the
two models can be compared on the same live inputs. Per endpoint, a ring buffer
(`collections.deque(maxlen=capacity)`) holds the newest mirrored requests, each with the
request body and, for the live and the mirror deployment, the status the client would
get, the latency and the answer body.

The mirror copy is sent in the background before the live answer is forwarded, so the
two sides finish in either order: `MirrorSample.begin` opens a `Pending` entry when the
mirror copy is sent, and whichever side reports last completes it into the buffer. An
entry is kept only when both answers are known; one whose request or either answer is
over `MAX_BODY_BYTES` is counted as skipped instead. A copy dropped because the mirror
target is saturated never begins an entry.

Memory only: request bodies may be sensitive, so nothing here is written to disk or
logged. Deleting an endpoint clears its buffer (entries still in flight then are dropped).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_CAPACITY = 200
# Worst case per endpoint: capacity x (request + 2 answers) x 64 KiB, about 190 MiB at 1000.
MAX_CAPACITY = 1000
MAX_BODY_BYTES = 64 * 2**10

Body = bytes | memoryview


def check_capacity(flag: str, value: int) -> int:
    """`value` when it is a valid sample size for `flag`; ValueError naming both otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{flag} takes a whole number of requests, not {value!r}")
    if not 0 <= value <= MAX_CAPACITY:
        raise ValueError(f"{flag} is {value}; give 0 to {MAX_CAPACITY} (0 = keep none)")
    return value


@dataclass(frozen=True)
class Answer:
    """One side's answer as the client would have got it."""

    deployment: str
    status: int
    latency_ms: float
    body: bytes

    def as_json(self) -> dict[str, object]:
        return {
            "deployment": self.deployment,
            "statusCode": self.status,
            "latencyMs": round(self.latency_ms, 1),
            "response": self.body.decode("utf-8", errors="replace"),
        }


@dataclass(frozen=True)
class Entry:
    """A mirrored request with both answers."""

    time: datetime
    request: bytes
    live: Answer
    mirror: Answer

    def as_json(self) -> dict[str, object]:
        return {
            "time": _iso_ms(self.time),
            "request": self.request.decode("utf-8", errors="replace"),
            "live": self.live.as_json(),
            "mirror": self.mirror.as_json(),
        }


def _iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Buffer:
    """One endpoint's entries and the count of those skipped for their size."""

    __slots__ = ("entries", "key", "skipped")

    def __init__(self, key: str, capacity: int) -> None:
        self.key = key
        self.entries: deque[Entry] = deque(maxlen=capacity)
        self.skipped = 0


class Pending:
    """A mirrored request waiting for its two answers; the last one to arrive completes it."""

    __slots__ = ("_buffer", "_live", "_mirror", "_request", "_sample", "_time", "_too_large")

    def __init__(self, sample: MirrorSample, buffer: _Buffer, request: bytes) -> None:
        self._sample = sample
        self._buffer = buffer
        self._request = request
        self._time = datetime.now(UTC)
        self._live: Answer | None = None
        self._mirror: Answer | None = None
        self._too_large = False

    def live(self, deployment: str, status: int, latency_ms: float, body: Body) -> None:
        """The live deployment's answer, as forwarded to the client."""
        self._live = self._answer(deployment, status, latency_ms, body)
        self._complete()

    def mirror(self, deployment: str, status: int, latency_ms: float, body: Body) -> None:
        """The mirror deployment's answer, which Azure would drop."""
        self._mirror = self._answer(deployment, status, latency_ms, body)
        self._complete()

    def _answer(self, deployment: str, status: int, latency_ms: float, body: Body) -> Answer:
        if len(body) > MAX_BODY_BYTES:
            # Not copied: an answer may be as large as the response limit (100 MiB).
            self._too_large = True
            return Answer(deployment, status, latency_ms, b"")
        return Answer(deployment, status, latency_ms, bytes(body))

    def _complete(self) -> None:
        if self._live is None or self._mirror is None:
            return
        buffer = self._buffer
        if not self._sample.holds(buffer):
            return  # the endpoint was deleted (or its sample cleared) meanwhile
        if self._too_large:
            buffer.skipped += 1
            return
        buffer.entries.append(Entry(self._time, self._request, self._live, self._mirror))


class MirrorSample:
    """The sample of every endpoint: at most `capacity` entries each (0 keeps none)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._buffers: dict[str, _Buffer] = {}

    def begin(self, endpoint: str, request: bytes) -> Pending | None:
        """An entry for a request about to be mirrored; None when none will be kept."""
        if not self.capacity:
            return None
        key = endpoint.lower()
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = _Buffer(key, self.capacity)
        if len(request) > MAX_BODY_BYTES:
            buffer.skipped += 1
            return None
        return Pending(self, buffer, request)

    def holds(self, buffer: _Buffer) -> bool:
        """Whether `buffer` is still its endpoint's (it is not once the endpoint is deleted)."""
        return self._buffers.get(buffer.key) is buffer

    def entries(self, endpoint: str, top: int | None = None) -> list[Entry]:
        """The newest `top` entries of `endpoint` (all when None), newest first."""
        buffer = self._buffers.get(endpoint.lower())
        if buffer is None:
            return []
        newest = list(reversed(buffer.entries))
        return newest if top is None else newest[:top]

    def skipped(self, endpoint: str) -> int:
        """Mirrored requests of `endpoint` not kept because a body was over the size limit."""
        buffer = self._buffers.get(endpoint.lower())
        return 0 if buffer is None else buffer.skipped

    def clear(self, endpoint: str) -> None:
        self._buffers.pop(endpoint.lower(), None)
