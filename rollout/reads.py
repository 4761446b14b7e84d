"""What the dashboard has read from a workspace, kept for a few seconds so reruns don't wait.

A Streamlit page reruns on every widget interaction: a slider moved, a preset picked, a
request edited. On Azure every read is a round trip over the WAN (100-400 ms), so a page
that re-read the workspace on each rerun would wait on every click. `WorkspaceReads` keeps
each read (the list of endpoints, one endpoint's deployments, a log tail) with the time it
was made, and decides per read:

- younger than `ttl`: served from memory;
- older, and the caller does not wait (`wait=False`, a rerun after an interaction): served
  from memory while it is read again in the background; the next rerun has the new copy;
- older, and the caller waits (`wait=True`, a page being opened): read again first;
- never read, or dropped (`invalidate`): read first, whatever `wait` says.

Reads that are needed together are made together, on `endpoints.read_pool()`: a page
opens in two round trips (the endpoints, then the deployments of those it shows) whatever
the number of endpoints. A change the dashboard made calls `invalidate` (or `remember`
with what it read back), so the next run shows what the change left; a read that was
already in flight when that happened is not kept, since it may predate the change.
Changes themselves never use this cache: they read the resource fresh before they send
(changes.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from rollout.deploy import list_model_versions
from rollout.endpoints import (
    DeploymentView,
    EndpointHead,
    EndpointView,
    endpoint_view,
    get_logs,
    list_deployments,
    list_endpoint_heads,
    read_pool,
)
from rollout.errors import NotFound, RolloutError, ServiceError
from rollout.workspace import Workspace

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, ...]

TTL_S = 5.0
READ_TIMEOUT_S = 60.0
ENDPOINTS: Key = ("endpoints",)


def deployments_key(endpoint: str) -> Key:
    return ("deployments", endpoint.lower())


def models_key(name: str) -> Key:
    return ("models", name.lower())


def logs_key(endpoint: str, deployment: str, container: str, lines: int) -> Key:
    return ("logs", endpoint.lower(), deployment.lower(), container, str(lines))


@dataclass(frozen=True)
class Read(Generic[T]):
    """A value as read, with when (`at`, epoch seconds) and from which reads (`keys`).

    `versions` change when a read brings a different value; `problem` says why the last
    attempt to read it again failed, while this older copy is still shown.
    """

    value: T
    at: float
    keys: tuple[Key, ...]
    versions: tuple[int, ...]
    problem: str | None = None

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.at)


@dataclass(frozen=True)
class _Pending:
    """A read in flight, and the older copy to show should it fail."""

    future: Future[Read[Any]]
    fallback: Read[Any] | None


@dataclass
class _Slot:
    read: Read[Any] | None = None
    loaded: float = 0.0  # monotonic time the kept read started
    version: int = 0
    generation: int = 0  # bumped by invalidate: loads started before are not kept
    loading: Future[Read[Any]] | None = None
    loading_generation: int = -1
    problem: str | None = None

    def forget(self) -> None:
        """Drop the kept read; a load in flight will not be kept either."""
        self.read = None
        self.generation += 1
        self.problem = None


@dataclass
class WorkspaceReads:
    """The reads of one workspace for one dashboard session."""

    ws: Workspace
    ttl: float = TTL_S
    clock: Callable[[], float] = time.monotonic
    _slots: dict[Key, _Slot] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- what pages ask for ----------------------------------------------------------------

    def endpoints(self, *, wait: bool) -> Read[list[EndpointHead]]:
        """The workspace's endpoints, without their deployments."""
        return self._resolve(self._request(ENDPOINTS, self._load_heads, wait=wait))

    def endpoint(self, name: str, *, wait: bool) -> Read[EndpointView]:
        """One endpoint with its deployments; NotFound when the list has no such endpoint."""
        heads = self.endpoints(wait=wait)
        head = _find(heads.value, name)
        deployments = self._resolve(self._deployments_request(head.name, wait=wait))
        return _combine(endpoint_view(head, deployments.value), heads, deployments)

    def all_endpoints(self, *, wait: bool) -> Read[list[EndpointView]]:
        """Every endpoint with its deployments, the deployments of all read at once.

        An endpoint whose deployments cannot be found any more (deleted since the list was
        read) is left out.
        """
        heads = self.endpoints(wait=wait)
        pending = [(h, self._deployments_request(h.name, wait=wait)) for h in heads.value]
        views: list[EndpointView] = []
        parts: list[Read[Any]] = [heads]
        for head, request in pending:
            try:
                deployments = self._resolve(request)
            except NotFound:
                continue
            views.append(endpoint_view(head, deployments.value))
            parts.append(deployments)
        return _combine(views, *parts)

    def logs(
        self, endpoint: str, deployment: str, *, container: str, lines: int, wait: bool
    ) -> Read[str]:
        """The last `lines` lines of a deployment's log."""
        key = logs_key(endpoint, deployment, container, lines)
        return self._resolve(
            self._request(
                key,
                lambda: get_logs(self.ws, endpoint, deployment, lines=lines, container=container),
                wait=wait,
            )
        )

    def model_versions(self, name: str, *, wait: bool) -> Read[list[str]]:
        """The registered versions of model `name`, newest first."""
        return self._resolve(
            self._request(models_key(name), lambda: list_model_versions(self.ws, name), wait=wait)
        )

    def cached(self, key: Key, load: Callable[[], T], *, wait: bool) -> Read[T]:
        """Any other read (metrics over a window, say) under the same rules: `key` names
        it, `load` makes it. `key` is (kind, endpoint, ...): `invalidate(endpoint)` drops
        it too."""
        return self._resolve(self._request(("other", *key), load, wait=wait))

    def start_cached(self, key: Key, load: Callable[[], Any]) -> None:
        """Start a `cached` read now, when it is missing or stale, without waiting for it:
        what a later interaction will need is then at hand."""
        self._request(("other", *key), load, wait=False)

    # --- keeping it true -------------------------------------------------------------------

    def invalidate(self, endpoint: str | None = None) -> None:
        """Drop what was read of `endpoint` (its deployments, logs, and the list of endpoints
        its traffic is part of), or everything; the next ask reads again first."""
        with self._lock:
            for key, slot in self._slots.items():
                if endpoint is None or key == ENDPOINTS or _about(key, endpoint):
                    slot.forget()

    def drop(self, key: Key) -> None:
        """Drop one read (a log the user asked to refresh); the next ask reads it first."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                slot.forget()

    def remember(self, view: EndpointView) -> None:
        """Keep `view`, just read fresh (after a change), as the endpoint's current state.

        In the list of endpoints only this one is replaced: the others keep the time they
        were read, and are read again when that is older than the TTL.
        """
        now = time.time()
        with self._lock:
            heads = self._slots.get(ENDPOINTS)
            if heads is not None and heads.read is not None:
                listed = [h for h in heads.read.value if h.name.lower() != view.name.lower()]
                value = sorted([*listed, view.head], key=lambda h: h.name)
                self._keep(heads, ENDPOINTS, value, heads.read.at, heads.loaded, ours=False)
            slot = self._slots.setdefault(deployments_key(view.name), _Slot())
            bare = tuple(_bare(d) for d in view.deployments)
            self._keep(slot, deployments_key(view.name), bare, now, self.clock(), ours=False)
            for key, other in self._slots.items():
                if key[0] == "logs" and key[1] == view.name.lower():
                    other.forget()

    def age(self, seconds: float) -> None:
        """Make everything kept `seconds` older, as if read that much earlier (what a pause
        does: for benchmarks and tests of what happens after the TTL)."""
        with self._lock:
            for slot in self._slots.values():
                slot.loaded -= seconds

    def prefetch(self, endpoint: str, *, wait: bool) -> None:
        """Start reading `endpoint`'s deployments now, if `endpoint` will ask for them, so
        that they come back with the list of endpoints rather than after it (a page whose
        endpoint is known from the URL opens in one round trip, not two). A name the list
        turns out not to have costs one wasted read."""
        self._deployments_request(endpoint, wait=wait)

    def current(self, keys: Sequence[Key]) -> tuple[float | None, tuple[int, ...]]:
        """The time of the oldest of `keys`' kept reads (None when one is missing) and their
        versions: what a page compares with what it showed."""
        with self._lock:
            slots = [self._slots.get(k) for k in keys]
            reads = [s.read if s is not None else None for s in slots]
            oldest = None if any(r is None for r in reads) else min(r.at for r in reads if r)
            return oldest, tuple(s.version if s is not None else 0 for s in slots)

    # --- the mechanics ---------------------------------------------------------------------

    def _load_heads(self) -> list[EndpointHead]:
        return list_endpoint_heads(self.ws)

    def _deployments_loader(self, endpoint: str) -> Callable[[], tuple[DeploymentView, ...]]:
        return lambda: list_deployments(self.ws, endpoint)

    def _deployments_request(self, endpoint: str, *, wait: bool) -> Read[Any] | _Pending:
        return self._request(
            deployments_key(endpoint), self._deployments_loader(endpoint), wait=wait
        )

    def _fresh(self, slot: _Slot) -> bool:
        return slot.read is not None and self.clock() - slot.loaded < self.ttl

    def _request(self, key: Key, load: Callable[[], Any], *, wait: bool) -> Read[Any] | _Pending:
        """The kept read when it may be used now, else the future of a read."""
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            if slot.read is not None and (self._fresh(slot) or not wait):
                if not self._fresh(slot):
                    self._start(key, slot, load)
                return _with_problem(slot.read, slot.problem)
            return _Pending(self._start(key, slot, load), slot.read)

    def _start(self, key: Key, slot: _Slot, load: Callable[[], Any]) -> Future[Read[Any]]:
        """A read of `key` in flight for the current generation (one at a time). Lock held."""
        if (
            slot.loading is not None
            and not slot.loading.done()
            and slot.loading_generation == slot.generation
        ):
            return slot.loading
        generation = slot.generation
        future = read_pool().submit(self._load, key, load, generation)
        slot.loading, slot.loading_generation = future, generation
        return future

    def _load(self, key: Key, load: Callable[[], Any], generation: int) -> Read[Any]:
        started, at = self.clock(), time.time()
        try:
            value = load()
        except RolloutError as exc:
            with self._lock:
                slot = self._slots[key]
                if slot.generation == generation:
                    slot.problem = str(exc)
            raise
        except Exception:
            # A background refresh has no one to raise to: leave a trace of the bug.
            log.exception("reading %s failed", "/".join(key))
            raise
        with self._lock:
            slot = self._slots[key]
            if slot.generation != generation:
                return Read(value, at, (key,), (slot.version,))
            return self._keep(slot, key, value, at, started, ours=True)

    def _keep(
        self, slot: _Slot, key: Key, value: Any, at: float, loaded: float, *, ours: bool
    ) -> Read[Any]:
        """Keep `value` as `key`'s read. Lock held. A value that is not from a load of ours
        (`remember`) outranks what is in flight: that may predate it."""
        if slot.read is None or not _same(slot.read.value, value):
            slot.version += 1
        if not ours:
            slot.generation += 1
        slot.read = Read(value, at, (key,), (slot.version,))
        slot.loaded = loaded
        slot.problem = None
        return slot.read

    def _resolve(self, request: Read[Any] | _Pending) -> Read[Any]:
        if isinstance(request, Read):
            return request
        try:
            return request.future.result(timeout=READ_TIMEOUT_S)
        except FutureTimeout:
            problem: RolloutError = ServiceError(
                f"the workspace did not answer within {READ_TIMEOUT_S:.0f} s; check the "
                "connection and Reload"
            )
        except RolloutError as exc:
            problem = exc
        # A page being opened shows what it had, saying why it is not newer; with nothing
        # to show, the page shows the error.
        if request.fallback is None:
            raise problem
        return _with_problem(request.fallback, str(problem))


def _about(key: Key, endpoint: str) -> bool:
    """Whether `key` reads something of `endpoint` (its deployments, logs, other reads)."""
    name = endpoint.lower()
    return key[1:2] == (name,) or (key[0] == "other" and key[2:3] == (name,))


def _same(kept: Any, value: Any) -> bool:
    """Whether a read brought what was kept; values whose == is not a truth value (frames
    of metrics) count as new."""
    try:
        return bool(kept == value)
    except (TypeError, ValueError):
        return False


def _find(heads: Sequence[EndpointHead], name: str) -> EndpointHead:
    for head in heads:
        if head.name.lower() == name.lower():
            return head
    raise NotFound(f"endpoint '{name}' was not found in the workspace")


def _bare(deployment: DeploymentView) -> DeploymentView:
    """As `list_deployments` returns it: the shares are the endpoint's, not kept here."""
    return replace(deployment, live=0, mirror=0)


def _with_problem(read: Read[T], problem: str | None) -> Read[T]:
    if problem == read.problem:
        return read
    return Read(read.value, read.at, read.keys, read.versions, problem)


def _combine(value: T, *parts: Read[Any]) -> Read[T]:
    problems = [p.problem for p in parts if p.problem]
    return Read(
        value,
        min(p.at for p in parts),
        tuple(k for p in parts for k in p.keys),
        tuple(v for p in parts for v in p.versions),
        "; ".join(dict.fromkeys(problems)) or None,
    )
