"""WorkspaceReads' rules on its own: when a read is served from memory, read again in the
background, or waited for; what a change does to reads in flight; what a failure shows.

The workspace is replaced by a loader the test controls (a gate it opens), so that a read
can be held in flight at the moment that matters.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rollout.endpoints import DeploymentView, EndpointHead, EndpointView
from rollout.errors import ServiceError
from rollout.reads import ENDPOINTS, WorkspaceReads
from tests.conftest import wait_until


def _head(name: str, traffic: dict[str, int]) -> EndpointHead:
    return EndpointHead(name, "Succeeded", "key", f"https://x/{name}", traffic, {})


class GatedReads(WorkspaceReads):
    """The list of endpoints is `self.heads` as it was when a read started, answered once
    `self.gate` is open."""

    def __init__(self) -> None:
        super().__init__(ws=None)  # type: ignore[arg-type]
        self.heads: list[EndpointHead] | Exception = [_head("ep", {"blue": 100})]
        self.gate = threading.Event()
        self.gate.set()
        self.loads = 0
        self._loads_lock = threading.Lock()

    def _load_heads(self) -> list[EndpointHead]:
        # What the workspace had when the request reached it, answered when the gate opens.
        with self._loads_lock:
            self.loads += 1
            heads = self.heads
        assert self.gate.wait(10), "the test never opened the gate"
        if isinstance(heads, Exception):
            raise heads
        return list(heads)


def _traffic(reads: WorkspaceReads, *, wait: bool) -> dict[str, int]:
    return reads.endpoints(wait=wait).value[0].traffic


def _landed(reads: GatedReads) -> None:
    """Wait until the read in flight has ended, kept or not."""
    loading = reads._slots[ENDPOINTS].loading
    assert loading is not None
    loading.result(timeout=10)


def _stale(reads: GatedReads) -> None:
    reads.ttl = 0.0


def test_a_read_younger_than_the_ttl_is_served_from_memory() -> None:
    reads = GatedReads()
    first = reads.endpoints(wait=True)
    again = reads.endpoints(wait=True)
    assert reads.loads == 1
    assert again is first


def test_a_stale_read_is_served_at_once_and_read_again_in_the_background() -> None:
    reads = GatedReads()
    reads.endpoints(wait=False)
    _stale(reads)
    reads.gate.clear()
    reads.heads = [_head("ep", {"green": 100})]

    # the gate is shut: a call that waited for the read would not return
    assert _traffic(reads, wait=False) == {"blue": 100}
    wait_until(lambda: reads.loads == 2, timeout=10)
    reads.gate.set()
    wait_until(lambda: _traffic(reads, wait=False) == {"green": 100}, timeout=10)


def test_opening_a_page_waits_for_a_stale_read() -> None:
    reads = GatedReads()
    reads.endpoints(wait=True)
    _stale(reads)
    reads.heads = [_head("ep", {"green": 100})]
    assert _traffic(reads, wait=True) == {"green": 100}


def test_callers_at_the_same_time_share_one_read() -> None:
    reads = GatedReads()
    reads.gate.clear()
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(reads.endpoints(wait=True)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: reads.loads == 1, timeout=10)
    reads.gate.set()
    for t in threads:
        t.join(10)
    assert reads.loads == 1
    assert len(results) == 4


def test_a_read_in_flight_when_a_change_invalidates_is_not_kept() -> None:
    reads = GatedReads()
    reads.endpoints(wait=True)
    _stale(reads)
    reads.gate.clear()
    assert _traffic(reads, wait=False) == {"blue": 100}  # starts a read that predates the change
    wait_until(lambda: reads.loads == 2, timeout=10)

    reads.invalidate("ep")  # the change: blue 0, green 100
    reads.heads = [_head("ep", {"green": 100})]
    reads.gate.set()
    _landed(reads)

    # the read started before the change is not kept: this one waits for its own
    assert _traffic(reads, wait=False) == {"green": 100}
    assert reads.loads == 3


def test_remembering_a_fresh_view_replaces_the_endpoint_and_outranks_reads_in_flight() -> None:
    reads = GatedReads()
    reads.heads = [_head("a-ep", {"x": 100}), _head("ep", {"blue": 100})]
    reads.endpoints(wait=True)
    versions = reads.current([ENDPOINTS])[1]
    _stale(reads)
    reads.gate.clear()
    reads.endpoints(wait=False)  # a read in flight, from before the change
    blue = DeploymentView("blue", "Succeeded", "m:1", "t", 1, 0, 0, None, None)
    green = DeploymentView("green", "Succeeded", "m:2", "t", 1, 100, 0, None, None)
    changed = EndpointView(
        "ep", "Succeeded", "key", "https://x/ep", {"blue": 0, "green": 100}, {}, (blue, green)
    )

    reads.remember(changed)
    reads.gate.set()  # the old read lands now
    _landed(reads)

    heads = reads.endpoints(wait=False).value
    assert [h.name for h in heads] == ["a-ep", "ep"]
    assert heads[1].traffic == {"green": 100}
    assert reads.current([ENDPOINTS])[1] != versions
    assert reads.endpoint("ep", wait=False).value.deployments[1].live == 100


def test_a_refresh_that_brings_the_same_data_keeps_the_version_and_renews_the_time() -> None:
    reads = GatedReads()
    first = reads.endpoints(wait=True)
    _stale(reads)
    again = reads.endpoints(wait=True)
    assert again.versions == first.versions
    assert again.at >= first.at


def test_a_failed_refresh_keeps_the_older_data_and_says_why() -> None:
    reads = GatedReads()
    reads.endpoints(wait=True)
    _stale(reads)
    reads.heads = ServiceError("listing endpoints: the workspace could not be reached")

    shown = reads.endpoints(wait=True)
    assert shown.value[0].traffic == {"blue": 100}
    assert shown.problem is not None and "could not be reached" in shown.problem


def test_a_failed_first_read_is_an_error() -> None:
    reads = GatedReads()
    reads.heads = ServiceError("listing endpoints: not signed in to Azure")
    with pytest.raises(ServiceError, match="not signed in"):
        reads.endpoints(wait=False)


def test_an_endpoint_that_is_not_listed_is_not_found() -> None:
    from rollout.errors import NotFound

    reads = GatedReads()
    with pytest.raises(NotFound, match="'gone-ep' was not found"):
        reads.endpoint("gone-ep", wait=False)


def test_any_other_read_follows_the_same_rules_and_frames_count_as_new() -> None:
    import pandas as pd

    reads = GatedReads()
    frames = iter([pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1]})])
    first = reads.cached(("metrics", "ep"), lambda: next(frames), wait=True)
    assert reads.cached(("metrics", "ep"), lambda: next(frames), wait=True) is first
    _stale(reads)
    again = reads.cached(("metrics", "ep"), lambda: next(frames), wait=True)
    assert again.versions != first.versions  # a frame's == is no truth value: new
